"""The `aekit` command line."""
