"""`aekit`: parse the command line, call one library function, report errors in one line.

`aekit train`'s flags are derived from the settings' declarations (aekit.cli.settings);
the other commands' options are declared in COMMANDS below, beside the function each
command calls.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NoReturn

from aekit import __version__
from aekit.checks import MAX_CODE_WEIGHT, Check, Integer, Number, Optional, shown
from aekit.cli.limits import MAX_SAMPLES
from aekit.errors import AekitError, ConfigError


class _Formatter(argparse.HelpFormatter):
    """argparse's help, with "(default: ...)" after every option that has a default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        hidden = action.default is None or action.default is False
        shown_ = not hidden and action.default != argparse.SUPPRESS and action.option_strings
        if shown_ and "default" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse, reporting a bad flag in the one line every other aekit error has."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"aekit: error: {message}; see `{self.prog} --help`\n")


def _typed(check: Check, flag: str) -> Callable[[str], Any]:
    """An argparse type: the word read as `check` reads it, then checked (bounds included)."""

    def read(text: str) -> Any:
        try:
            return check(flag, check.parse(text))
        except (ValueError, ConfigError) as exc:
            if isinstance(exc, ConfigError):
                raise argparse.ArgumentTypeError(str(exc)) from None
            raise argparse.ArgumentTypeError(f"cannot read {shown(text)}") from None

    read.__name__ = flag  # argparse names the type in some messages
    return read


def _flag(parser: argparse._ActionsContainer, name: str, **kwargs: Any) -> None:
    """An option spelled --with-dashes, also accepted as --with_underscores (the seeds' form)."""
    dashed = name.replace("_", "-")
    spellings = [f"--{dashed}"] + ([f"--{name}"] if "_" in name else [])
    parser.add_argument(*spellings, dest=name, **kwargs)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model_defaults(name: str) -> str:
    """ "(default: ...)" of a training setting: one value, or the models of each value."""
    from aekit.cli import registry
    from aekit.cli.settings import BY_NAME

    setting = BY_NAME[name]
    models: dict[str, list[str]] = {}
    for model in registry.names():
        if setting.takes(model):
            models.setdefault(_shown(setting.default_for(model)), []).append(model)
    if not models or "default" in setting.help or set(models) == {"none"}:
        return ""  # the help says it, or there is nothing to say
    if len(models) == 1 and len(next(iter(models.values()))) == len(registry.names()):
        return f"(default: {next(iter(models))})"
    return "(default: " + "; ".join(f"{v} for {', '.join(n)}" for v, n in models.items()) + ")"


def _train_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """`aekit train`: a flag for every declared setting that has one."""
    from aekit.cli import launch, registry
    from aekit.cli.settings import SETTINGS

    train = commands.add_parser(
        "train", help="train a model (resumes a run in --model-dir)", formatter_class=_Formatter
    )
    train.add_argument("model", nargs="?", help=registry.models_help().replace("%", "%%"))
    _flag(train, "model_dir", help="where the run lives (default: runs/MODEL)")
    _flag(train, "config", help="TOML or YAML file of settings; flags override it")
    _flag(train, "preset", help="named settings, e.g. seed_002 (the stacked model of seed 002)")
    # How the command runs, not a setting of the run: a run resumes on any number of processes.
    _flag(train, "nproc_per_node", type=_typed(launch.PROCESSES, launch.FLAG), help=launch.HELP)
    groups: dict[str, argparse._ActionsContainer] = {}
    for setting in SETTINGS:
        if not setting.flag:
            continue
        where: argparse._ActionsContainer = train
        if setting.exclusive:  # one group for settings that exclude each other
            key = "/".join(sorted((setting.name, *setting.exclusive)))
            if key not in groups:
                groups[key] = train.add_mutually_exclusive_group()
            where = groups[key]
        text = " ".join(t for t in (setting.help, _model_defaults(setting.name)) if t)
        flag = f"--{setting.name.replace('_', '-')}"
        _flag(
            where,
            setting.name,
            type=_typed(setting.check, flag),
            choices=setting.check.choices,
            help=text.replace("%", "%%"),
        )


def _data_options(scored: bool = False) -> tuple[Option, ...]:
    """--dataset and --data-dir of a command that reads a trained run's data."""
    if scored:
        return (
            Option(
                "dataset", help="data set to score (default: the run's test split, all classes)"
            ),
            Option(
                "data_dir",
                help="directory holding --dataset's files; without --dataset, "
                "where the run's own data now are (default: the saved one)",
            ),
        )
    return (
        Option(
            "dataset",
            help="read this data set instead of the run's, of the same example "
            "shape (default: the saved one)",
        ),
        Option(
            "data_dir",
            help="directory holding the data set's files, e.g. when they moved "
            "since training (default: the saved one)",
        ),
    )


@dataclass(frozen=True)
class Option:
    """A flag of a command other than train; `check` bounds it as it is read."""

    name: str
    check: Check | None = None
    help: str = ""
    default: Any = None
    extra: dict[str, Any] = field(default_factory=dict)  # argparse's other arguments


@dataclass(frozen=True)
class Command:
    """A sub-command: its help, its options (besides --model-dir) and what it runs."""

    help: str
    options: tuple[Option, ...]
    run: Callable[[argparse.Namespace], None]


IMAGES_MOST = 100_000  # pictures of more are refused by their pixel count anyway
SEED = Integer(0, below=2**32)


def _commands() -> dict[str, Command]:
    # The commands' modules load when one runs: `aekit --help` reads no torch.
    analysis, commands = _module("analysis"), _module("commands")

    def images(default: int | None, text: str) -> Option:
        count = Integer(1, below=IMAGES_MOST + 1)
        return Option("images", count if default else Optional(count), text, default)

    return {
        "evaluate": Command(
            "metrics of the latest checkpoint on the test set",
            (
                *_data_options(),
                Option(
                    "linear_probe",
                    help="also fit a linear classifier",
                    extra={"action": "store_true"},
                ),
            ),
            lambda a: _print_metrics(
                commands.evaluate(a.model_dir, a.linear_probe, a.dataset, a.data_dir)
            ),
        ),
        "reconstruct": Command(
            "PNG grid of test images and their reconstructions",
            (
                *_data_options(),
                images(10, "how many test images"),
                Option("output", help="output file (default inside the model dir)"),
            ),
            lambda a: print(
                commands.reconstruct(a.model_dir, a.images, a.output, a.dataset, a.data_dir)
            ),
        ),
        "embed": Command(
            "projector run (and optional 2-D plot) of the test images' embedding",
            (
                *_data_options(),
                images(500, "how many test images"),
                Option("output", help="output file (default inside the model dir)"),
                Option(
                    "plot", help="also write a 2-D scatter PNG", extra={"choices": ["pca", "tsne"]}
                ),
            ),
            lambda a: print(
                *commands.embed(a.model_dir, a.images, a.plot, a.output, a.dataset, a.data_dir),
                sep="\n",
            ),
        ),
        "export": Command(
            "TorchScript and ONNX files of encoder, decoder and model",
            (
                Option("output", help="output directory (default MODEL_DIR/export)"),
                Option(
                    "format",
                    help="file formats to write",
                    default=["torchscript", "onnx"],
                    extra={"nargs": "+", "choices": ["torchscript", "onnx"]},
                ),
            ),
            lambda a: print(*commands.export(a.model_dir, a.output, a.format), sep="\n"),
        ),
        "sample": Command(
            "PNG grid of images generated by a variational model",
            (
                images(64, "how many images to generate"),
                Option(
                    "output",
                    help="PNG file (default MODEL_DIR/samples.png); manifold.png beside it",
                ),
                Option("seed", SEED, "random seed of the codes drawn", 0),
                Option("manifold_size", Integer(2, below=1001), "images per side (2-D codes)", 20),
            ),
            lambda a: print(
                *analysis.sample(a.model_dir, a.images, a.output, a.seed, a.manifold_size),
                sep="\n",
            ),
        ),
        "likelihood": Command(
            "test log-likelihood of a variational model, importance-weighted (nats)",
            (
                *_data_options(),
                Option(
                    "samples",
                    Integer(1, below=MAX_SAMPLES + 1),
                    "codes drawn per image (k)",
                    5000,
                ),
                images(None, "score only the first N test images (default all)"),
                Option("seed", SEED, "random seed of the codes drawn", 0),
            ),
            lambda a: _print_metrics(
                analysis.likelihood(a.model_dir, a.samples, a.images, a.seed, a.dataset, a.data_dir)
            ),
        ),
        "score": Command(
            "anomaly scores of a data set (reconstruction errors, and on a table the codes' "
            "distances)",
            (
                Option(
                    "percentile",
                    Number(positive=True, most=100),
                    "threshold: this percentile of the training scores",
                    99.0,
                ),
                Option(
                    "code_weight",
                    Optional(Number(most=MAX_CODE_WEIGHT)),
                    "weight of the code's Mahalanobis "
                    "distance in the score, against 1 for the reconstruction error, each in "
                    "units of its training mean (default: 0.5 on a table, as the outlier "
                    "detector scores; 0, the error alone, on images)",
                ),
                Option(
                    "neighbors",
                    Optional(Integer(0)),
                    "on a table, the score adds the row's mean distance to this many nearest "
                    "other training rows (default 2, as the outlier detector scores); on "
                    "images, the code's to this many nearest training codes (default 0, none)",
                ),
                *_data_options(scored=True),
                Option("output", help="output directory (default MODEL_DIR/scores)"),
            ),
            lambda a: _print_score(
                analysis.score(
                    a.model_dir,
                    a.percentile,
                    a.dataset,
                    a.data_dir,
                    a.output,
                    a.code_weight,
                    a.neighbors,
                )
            ),
        ),
    }


class _module:
    """A command module of `aekit.cli`, imported when one of its names is first read."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __getattr__(self, attribute: str) -> Any:
        return getattr(importlib.import_module(f"aekit.cli.{self.name}"), attribute)


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="aekit", description="Autoencoders with an Estimator API.", formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"aekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every detail")
    commands = parser.add_subparsers(dest="command", required=True)
    _train_parser(commands)
    for name, command in _commands().items():
        sub = commands.add_parser(name, help=command.help, formatter_class=_Formatter)
        _flag(sub, "model_dir", required=True)
        for option in command.options:
            typed = {}
            if option.check is not None:
                typed["type"] = _typed(option.check, f"--{option.name.replace('_', '-')}")
            _flag(
                sub, option.name, default=option.default, help=option.help, **typed, **option.extra
            )
    return parser


def _train(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from aekit.cli import config, launch, training
    from aekit.cli.settings import SETTINGS
    from aekit.estimator.job import launched_as_chief

    named = args.model or args.preset
    if named is None and args.config and args.model_dir is None:  # the config file names it
        named = config.load_config_file(args.config).get("model")
    model_dir = args.model_dir or f"runs/{named if isinstance(named, str) else 'model'}"
    given = {s.name: getattr(args, s.name) for s in SETTINGS if s.flag}
    resolved = config.resolve(args.model, model_dir, given, args.config, args.preset)
    if args.nproc_per_node is not None:  # a bad setting was refused above, once
        status = launch.train_on(args.nproc_per_node, argv, args.verbose)
        if status is not None:  # else one process: this one trains
            return status
    result = training.train(resolved, model_dir)
    _print_metrics(result)
    if launched_as_chief():
        print(f"model dir: {model_dir}")
    return 0


def _check_train_has_a_model(args: argparse.Namespace, parser: argparse.ArgumentParser) -> None:
    """A usage error, as argparse's, when `train` has no model and no run to resume."""
    from aekit.cli import registry

    if args.command == "train" and not (args.model or args.preset or args.config or args.model_dir):
        _subparser(parser, "train").error(
            f"the following arguments are required: model (one of {', '.join(registry.names())})"
        )


def _subparser(parser: argparse.ArgumentParser, name: str) -> argparse.ArgumentParser:
    """The sub-command parser `name` of `parser`."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[name]
            return found
    raise LookupError(name)


def _print_metrics(result: dict[str, float]) -> None:
    from aekit.estimator.job import launched_as_chief

    if launched_as_chief():  # under torchrun every rank has the same figures
        print(" ".join(f"{k}={v:.5g}" for k, v in result.items()))


def _print_score(report: Any) -> None:
    print(report.summary())
    print(report.csv)
    print(report.histogram)


def _run(args: argparse.Namespace, argv: Sequence[str]) -> int:
    from aekit.estimator import cpu
    from aekit.estimator.job import launched_as_chief

    cpu.announce_thread_changes()  # a user at the command line is told why training slows
    # Under torchrun the other commands have files to write and nothing to share: rank 0
    # runs them alone (their estimators do not join the job), the other ranks do nothing.
    if args.command == "train":
        return _train(args, argv)
    if args.command == "evaluate" or launched_as_chief():
        _commands()[args.command].run(args)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        _check_train_has_a_model(args, parser)
    except SystemExit as exc:  # --help, --version, or a bad flag already reported in one line
        return exc.code if isinstance(exc.code, int) else 2
    from aekit.estimator.job import launched_as_chief

    # The other ranks of a job would repeat rank 0's lines; their warnings still show.
    quiet = logging.INFO if launched_as_chief() else logging.WARNING
    try:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else quiet,
            format="%(levelname).1s %(message)s" if args.verbose else "%(message)s",
        )
        status = _run(args, sys.argv[1:] if argv is None else argv)
    except AekitError as exc:
        from aekit.cli.launch import report

        report(f"aekit: error: {exc}")  # once for a job of several processes
        return 2
    except KeyboardInterrupt:
        print("aekit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`aekit ... | head`): nothing left to say
        # Point stdout at /dev/null so that the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return status


if __name__ == "__main__":
    sys.exit(main())
