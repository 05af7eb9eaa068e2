"""MkDocs hook: the page `reference/cli.md`, generated when the site is built.

Nothing on that page is written by hand. `aekit train`'s options come from the settings'
declarations (`aekit.cli.settings.SETTINGS`: check, help, defaults per model, resumable,
flag or file only), the other commands' from the parser `aekit.cli.main._parser()` builds.
A new setting or option shows up on the page by being declared; `tests/test_docs.py` checks
that every setting does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mkdocs.config.defaults import MkDocsConfig
    from mkdocs.structure.files import Files

    from aekit.checks import Check
    from aekit.cli.settings import Setting

ROOT = Path(__file__).resolve().parents[2]
PAGE = "reference/cli.md"
# The checkout's own source, documented even where another aekit is installed.
if str(ROOT / "src") not in sys.path:
    sys.path.insert(0, str(ROOT / "src"))


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Add the generated page to the site's files (replacing a file of that name, if any)."""
    from mkdocs.structure.files import File

    existing = files.get_file_from_path(PAGE)
    if existing is not None:
        files.remove(existing)
    files.append(File.generated(config, PAGE, content=cli_reference()))
    return files


def describe(check: Check | None) -> str:
    """What a check accepts, in a few words."""
    from aekit import checks

    if check is None:
        return "text"
    if isinstance(check, checks.OrAuto):
        return f"`auto` or {describe(check.inner)}"
    if isinstance(check, checks.Optional):
        return f"{describe(check.inner)} or `none`"
    if isinstance(check, checks.Integer):
        if check.why:
            return f"integer ≥ {check.least}, at most {check.why}"
        most = "" if check.below == 2**31 else f", at most {check.below - 1:,}"
        return f"integer ≥ {check.least}{most}"
    if isinstance(check, checks.Number):
        low = "> 0" if check.positive else "≥ 0"
        return f"number {low}" + ("" if check.most is None else f", ≤ {check.most:g}")
    if check.choices:
        return "one of " + ", ".join(f"`{c}`" for c in check.choices)
    words = {
        checks.Text: "text",
        checks.Flag: "true or false",
        checks.Sizes: "positive integers, comma-separated",
        checks.Labels: "class labels, comma-separated",
        checks.Rates: "a positive number, or one per layer comma-separated",
        checks.Device: "`auto`, `cpu`, `cuda`, `cuda:N` or `mps`",
    }
    return next((w for kind, w in words.items() if isinstance(check, kind)), "a value")


def _value(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def setting_default(setting: Setting, models: list[str]) -> str:
    """A setting's default: one value, or each value with the models that take it."""
    by_value: dict[str, list[str]] = {}
    for model in models:
        if setting.takes(model):
            by_value.setdefault(_value(setting.default_for(model)), []).append(model)
    if not by_value:
        return "—"
    if len(by_value) == 1 and len(next(iter(by_value.values()))) == len(models):
        return f"`{next(iter(by_value))}`"
    return "<br>".join(f"`{v}`: {', '.join(names)}" for v, names in by_value.items())


def _cell(text: str) -> str:
    """Text fit for a table cell: one line, pipes escaped."""
    return " ".join(text.replace("%%", "%").split()).replace("|", "\\|")


def _table(header: Iterable[str], rows: Iterable[Iterable[str]]) -> list[str]:
    head = list(header)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return [*lines, ""]


def _check_of(action: argparse.Action) -> Check | None:
    """The check behind an option's argparse type (`aekit.cli.main._typed` closes over it)."""
    from aekit.checks import Check

    for cell in getattr(action.type, "__closure__", None) or ():
        if isinstance(cell.cell_contents, Check):
            return cell.cell_contents
    return None


def _spellings(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"`{action.dest.upper()}`"
    # every --with-dashes flag is also spelled --with_underscores: the page shows the first
    shown = [s for s in action.option_strings if not (s.startswith("--") and "_" in s)]
    return " ".join(f"`{s}`" for s in shown or action.option_strings)


def _accepts(action: argparse.Action) -> str:
    if action.nargs == 0:
        return "no value"
    if not action.option_strings and action.type is None:
        return "a name"
    if action.choices is not None and not isinstance(action.choices, dict):
        words = ", ".join(f"`{c}`" for c in action.choices)
        return f"one or more of {words}" if action.nargs == "+" else f"one of {words}"
    return describe(_check_of(action))


def _option_rows(parser: argparse.ArgumentParser, skip: set[str]) -> list[list[str]]:
    rows = []
    for action in parser._actions:
        if action.dest in skip or isinstance(action, argparse._HelpAction):
            continue
        default = action.default
        hidden = default is None or default is False or default == argparse.SUPPRESS
        shown = "required" if action.required else "" if hidden else default
        rows.append(
            [
                _spellings(action),
                _accepts(action),
                f"`{_value(shown)}`" if shown not in ("", "required") else str(shown),
                action.help or "",
            ]
        )
    return rows


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _command_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return {a.dest: a.help or "" for a in action._choices_actions}
    return {}


def _train_section(train: argparse.ArgumentParser, help_: str) -> list[str]:
    from aekit.cli import registry
    from aekit.cli.settings import SETTINGS

    models = registry.names()
    settings = {s.name for s in SETTINGS if s.flag}  # the MODEL argument is no flag
    lines = [
        "## aekit train",
        "",
        f"{help_[:1].upper()}{help_[1:]}.",
        "",
        "```text",
        "aekit train [MODEL] [--model-dir DIR] [--config FILE] [--preset NAME] [SETTINGS...]",
        "```",
        "",
        "Models: "
        + ", ".join(f"`{m}`" for m in models)
        + ". Presets: "
        + ", ".join(f"`{p}`" for p in registry.PRESETS)
        + ".",
        "",
        "### How the command runs",
        "",
        *_table(["option", "accepts", "default", ""], _option_rows(train, settings)),
        "### Settings",
        "",
        "Each setting is a flag and a key of the same name in a `--config` file (TOML or YAML, "
        "underscores); flags override the file. A run saves its settings in "
        "`MODEL_DIR/hparams.json`; resuming it may change only the settings marked resumable.",
        "",
    ]
    flags = {a.dest: a for a in train._actions}
    rows = []
    for setting in SETTINGS:
        if not setting.flag:
            continue
        action = flags[setting.name]
        rows.append(
            [
                f"{_spellings(action)}<br>key `{setting.name}`",
                describe(setting.check),
                setting_default(setting, models),
                "yes" if setting.resumable else "",
                setting.help,
            ]
        )
    lines += _table(["flag / config key", "accepts", "default", "resumable", ""], rows)
    lines += [
        "### Settings kept in files only",
        "",
        "These have no flag: a config file may give them, and a run records them in "
        "`hparams.json`.",
        "",
        *_table(
            ["config key", "accepts", "default", ""],
            (
                [f"`{s.name}`", describe(s.check), setting_default(s, models), s.help]
                for s in SETTINGS
                if not s.flag
            ),
        ),
    ]
    return lines


def cli_reference() -> str:
    """The command line reference page, in Markdown."""
    from aekit.cli.main import _parser

    parser = _parser()
    commands = _subparsers(parser)
    helps = _command_help(parser)
    lines = [
        "# Command line reference",
        "",
        "<!-- Generated by docs/hooks/cli_reference.py from aekit.cli.settings and "
        "aekit.cli.main when the site is built; do not edit. -->",
        "",
        "Generated from the settings' declarations and the command line parser when this "
        "site was built. A guide to the commands is on the [command line](../guide/cli.md) "
        "page.",
        "",
        "```text",
        "aekit [-h] [--version] [-v] COMMAND ...",
        "```",
        "",
        "Every flag spelled with dashes is also accepted with underscores (`--model_dir`).",
        "",
        *_table(["option", "accepts", "default", ""], _option_rows(parser, {"command"})),
        *_table(["command", ""], ([f"[`{n}`](#aekit-{n})", helps.get(n, "")] for n in commands)),
    ]
    for name, sub in commands.items():
        if name == "train":
            lines += _train_section(sub, helps.get(name, ""))
            continue
        text = helps.get(name, "")
        lines += [
            f"## aekit {name}",
            "",
            f"{text[:1].upper()}{text[1:]}.",
            "",
            "```text",
            f"aekit {name} --model-dir DIR [OPTIONS...]",
            "```",
            "",
            *_table(["option", "accepts", "default", ""], _option_rows(sub, set())),
        ]
    return "\n".join(lines)


if __name__ == "__main__":
    print(cli_reference())
