"""Exception classes: one per kind of problem, each message naming the fix."""

from __future__ import annotations


class AekitError(Exception):
    """Base class of every error aekit raises on purpose."""


class ConfigError(AekitError, ValueError):
    """A configuration value or argument is invalid."""


class SpecError(AekitError, ValueError):
    """A model_fn returned an EstimatorSpec that does not fit its mode."""


class InputError(AekitError, ValueError):
    """An input function produced data the Estimator cannot use."""


class CheckpointError(AekitError, RuntimeError):
    """A checkpoint cannot be written or read."""


class NanLossError(AekitError, RuntimeError):
    """Training produced a NaN or infinite loss."""


class DistributedError(AekitError, RuntimeError):
    """A process of a distributed job failed or could not reach the others."""


class StorageError(AekitError, OSError):
    """A file cannot be written: the disk is full or the directory read-only."""


class CheckpointWriteError(CheckpointError, StorageError):
    """A checkpoint cannot be written; the earlier checkpoints are untouched."""


class RunLockedError(AekitError, RuntimeError):
    """Another process is training into the same model_dir."""
