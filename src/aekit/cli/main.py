"""`aekit`: parse the command line, call one library function, report errors in one line."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, NoReturn

from aekit import __version__
from aekit.errors import AekitError


def _int_list(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(",", " ").split()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a list of integers like 128,64,32"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("give at least one integer")
    return values


class _Formatter(argparse.HelpFormatter):
    """argparse's help, with "(default: ...)" after every option that has a default."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        text = action.help or ""
        hidden = action.default is None or action.default is False
        shown = not hidden and action.default != argparse.SUPPRESS and action.option_strings
        if shown and "default" not in text:
            text += " (default: %(default)s)"
        return text


class _Parser(argparse.ArgumentParser):
    """argparse, reporting a bad flag in the one line every other aekit error has."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"aekit: error: {message}; see `{self.prog} --help`\n")


def _flag(parser: argparse._ActionsContainer, name: str, **kwargs: Any) -> None:
    """An option spelled --with-dashes, also accepted as --with_underscores (the seeds' form)."""
    spellings = [f"--{name}"] + ([f"--{name.replace('-', '_')}"] if "-" in name else [])
    parser.add_argument(*spellings, dest=name.replace("-", "_"), **kwargs)


def _shown(value: Any) -> str:
    if value is None:
        return "none"
    if isinstance(value, list | tuple):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _model_defaults(key: str) -> str:
    """ "(default: ...)" of a training setting: one value, or the models of each value."""
    from aekit.cli import registry, settings

    models: dict[str, list[str]] = {}
    for name in registry.names():
        defaults = settings.model_settings(name)
        if key in defaults:
            models.setdefault(_shown(defaults[key]), []).append(name)
    if not models:
        return ""
    if len(models) == 1 and len(next(iter(models.values()))) == len(registry.names()):
        return f"(default: {next(iter(models))})"
    return "(default: " + "; ".join(f"{v} for {', '.join(n)}" for v, n in models.items()) + ")"


def _setting(parser: argparse._ActionsContainer, name: str, help: str = "", **kw: Any) -> None:
    """A training setting's flag, its help ending in the models' defaults."""
    text = " ".join(t for t in (help, _model_defaults(name.replace("-", "_"))) if t)
    _flag(parser, name, help=text.replace("%", "%%"), **kw)


def _parser() -> argparse.ArgumentParser:
    from aekit.cli import registry

    parser = _Parser(
        prog="aekit", description="Autoencoders with an Estimator API.", formatter_class=_Formatter
    )
    parser.add_argument("--version", action="version", version=f"aekit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every detail")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser(
        "train", help="train a model (resumes a run in --model-dir)", formatter_class=_Formatter
    )
    train.add_argument("model", nargs="?", help=f"one of: {', '.join(registry.names())}")
    _flag(train, "model-dir", help="where the run lives (default: runs/MODEL)")
    _flag(train, "config", help="TOML or YAML file of settings; flags override it")
    _setting(
        train,
        "dataset",
        help="mnist, fashion_mnist, kmnist, digits, or a .npz/.npy/.csv/folder path",
    )
    _flag(
        train,
        "data-dir",
        help="directory holding the data set's files (default: $AEKIT_DATA_DIR/DATASET or "
        "~/.cache/aekit/DATASET, downloaded there if missing)",
    )
    _setting(train, "epochs", type=int)
    _setting(train, "batch-size", type=int)
    _setting(train, "learning-rate", type=float)
    _setting(train, "weight-decay", type=float)
    dropout = train.add_mutually_exclusive_group()
    _setting(
        dropout,
        "dropout",
        type=float,
        help="probability of dropping a unit (fully_connected keeps 1 - this: --keep-prob)",
    )
    _setting(
        dropout,
        "keep-prob",
        type=float,
        help="probability of keeping a unit, seed 000's form of --dropout",
    )
    _setting(
        train, "noise-factor", type=float, help="Gaussian input noise: a denoising autoencoder"
    )
    _setting(
        train,
        "hidden-units",
        type=_int_list,
        help="e.g. 128,64,32; auto: 128,64,32 on images, sized from the features on a table",
    )
    _setting(train, "num-filters", type=_int_list, help="e.g. 16,8,8")
    _setting(train, "downsample", choices=["max_pool", "strided"])
    _setting(train, "activation", help="relu, elu, leaky_relu, gelu, tanh or sigmoid")
    _setting(train, "save-images", help="write a PNG of reconstructions per epoch and a GIF here")
    _flag(train, "preset", help="named settings, e.g. seed_002 (the stacked model of seed 002)")
    _setting(train, "noise", choices=["masking", "gaussian", "salt_and_pepper"])
    _setting(train, "pretrain-epochs", type=int, help="epochs of pretraining per layer")
    _setting(train, "pretrain-learning-rate", type=float)
    _setting(train, "dense-units", type=int)
    _setting(train, "n-classes", type=int)
    _setting(train, "latent-dim", type=int, help="size of the code z")
    _setting(train, "encoder", choices=["fully_connected", "convolutional"])
    _setting(train, "decoder", choices=["bernoulli", "gaussian"], help="likelihood")
    _setting(train, "beta", type=float, help="weight of the KL term")
    _setting(
        train,
        "exclude-classes",
        type=_int_list,
        help="leave these labels out of training and evaluation (e.g. 9, for `aekit score`)",
    )
    _setting(
        train,
        "scaling",
        choices=["auto", "none", "standard", "robust", "minmax"],
        help="fully_connected on a table: scale each feature, reconstruct linearly, score "
        "squared errors; auto: standard when the values are not pixels in [0, 1]",
    )
    _setting(
        train,
        "label-column",
        help="the labels' CSV column (header name or index) or .npz array; on a table, rows "
        "with a label other than 0 are anomalies, left out of training",
    )
    _setting(
        train,
        "binarize",
        choices=["dynamic", "fixed"],
        help="0/1 pixels drawn with their intensity as p: anew every batch, or once; the "
        "test images are drawn once (seed 0)",
    )
    _setting(train, "seed", type=int)
    _setting(train, "device", help="auto, cpu, cuda, cuda:N")
    _flag(train, "log-every", type=int, help="log every N steps (default: min(100, an epoch))")
    _setting(train, "clip-grad-norm", type=float, help="clip the gradients' global norm to this")

    for name, text in (
        ("evaluate", "metrics of the latest checkpoint on the test set"),
        ("reconstruct", "PNG grid of test images and their reconstructions"),
        ("embed", "projector run (and optional 2-D plot) of the test images' embedding"),
        ("export", "TorchScript and ONNX files of encoder, decoder and model"),
    ):
        sub = commands.add_parser(name, help=text, formatter_class=_Formatter)
        _flag(sub, "model-dir", required=True)
        if name != "export":
            _data_flags(sub)
        if name in ("reconstruct", "embed"):
            _flag(
                sub,
                "images",
                type=int,
                default=10 if name == "reconstruct" else 500,
                help="how many test images",
            )
            _flag(sub, "output", help="output file (default inside the model dir)")
        if name == "evaluate":
            _flag(sub, "linear-probe", action="store_true", help="also fit a linear classifier")
        if name == "embed":
            _flag(sub, "plot", choices=["pca", "tsne"], help="also write a 2-D scatter PNG")
        if name == "export":
            _flag(sub, "output", help="output directory (default MODEL_DIR/export)")
            _flag(
                sub,
                "format",
                nargs="+",
                choices=["torchscript", "onnx"],
                default=["torchscript", "onnx"],
                help="file formats to write",
            )
    sample = commands.add_parser(
        "sample",
        help="PNG grid of images generated by a variational model",
        formatter_class=_Formatter,
    )
    _flag(sample, "model-dir", required=True)
    _flag(sample, "images", type=int, default=64, help="how many images to generate")
    _flag(sample, "output", help="PNG file (default MODEL_DIR/samples.png); manifold.png beside it")
    _flag(sample, "seed", type=int, default=0, help="random seed of the codes drawn")
    _flag(sample, "manifold-size", type=int, default=20, help="images per side (2-D codes)")

    likelihood = commands.add_parser(
        "likelihood",
        help="test log-likelihood of a variational model, importance-weighted (nats)",
        formatter_class=_Formatter,
    )
    _flag(likelihood, "model-dir", required=True)
    _data_flags(likelihood)
    _flag(likelihood, "samples", type=int, default=5000, help="codes drawn per image (k)")
    _flag(likelihood, "images", type=int, help="score only the first N test images (default all)")
    _flag(likelihood, "seed", type=int, default=0, help="random seed of the codes drawn")

    score = commands.add_parser(
        "score",
        help="anomaly scores (reconstruction errors) of a data set",
        formatter_class=_Formatter,
    )
    _flag(score, "model-dir", required=True)
    _flag(
        score,
        "percentile",
        type=float,
        default=99.0,
        help="threshold: this percentile of the training scores",
    )
    _flag(
        score,
        "code-weight",
        type=float,
        default=0.0,
        help="weight of the code's Mahalanobis distance in the score, against 1 for the "
        "reconstruction error, each in units of its training mean (0: the error alone)",
    )
    _flag(score, "dataset", help="data set to score (default: the run's test split, all classes)")
    _flag(
        score,
        "data-dir",
        help="directory holding --dataset's files; without --dataset, where the run's own "
        "data now are (default: the saved one)",
    )
    _flag(score, "output", help="output directory (default MODEL_DIR/scores)")
    return parser


def _data_flags(parser: argparse.ArgumentParser) -> None:
    """--dataset and --data-dir of a command that reads a trained run's data."""
    _flag(
        parser,
        "dataset",
        help="read this data set instead of the run's, of the same example shape "
        "(default: the saved one)",
    )
    _flag(
        parser,
        "data-dir",
        help="directory holding the data set's files, e.g. when they moved since training "
        "(default: the saved one)",
    )


def _train(args: argparse.Namespace) -> None:
    from aekit.cli import commands, settings
    from aekit.estimator import distributed

    named = args.model or args.preset
    if named is None and args.config and args.model_dir is None:  # the config file names it
        named = settings.load_config_file(args.config).get("model")
    model_dir = args.model_dir or f"runs/{named if isinstance(named, str) else 'model'}"
    given = {
        key: getattr(args, key)
        for key in (
            "dataset", "data_dir", "epochs", "batch_size", "learning_rate", "weight_decay",
            "dropout", "keep_prob", "noise_factor", "hidden_units", "num_filters", "downsample",
            "activation", "save_images", "seed", "device", "log_every", "noise", "pretrain_epochs",
            "pretrain_learning_rate", "dense_units", "n_classes", "latent_dim", "encoder",
            "decoder", "beta", "exclude_classes", "clip_grad_norm", "binarize", "scaling",
            "label_column",
        )
    }  # fmt: skip
    resolved = settings.resolve(args.model, model_dir, given, args.config, args.preset)
    result = commands.train(resolved, model_dir)
    _print_metrics(result)
    if distributed.is_chief():
        print(f"model dir: {model_dir}")


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
    from aekit.estimator import distributed

    if distributed.is_chief():  # under torchrun every rank has the same figures
        print(" ".join(f"{k}={v:.5g}" for k, v in result.items()))


def _print_score(report: Any) -> None:
    print(report.summary())
    print(report.csv)
    print(report.histogram)


def _run(args: argparse.Namespace) -> None:
    from aekit.cli import analysis, commands
    from aekit.estimator import distributed

    actions: dict[str, Callable[[], Any]] = {
        "train": lambda: _train(args),
        "evaluate": lambda: _print_metrics(
            commands.evaluate(args.model_dir, args.linear_probe, args.dataset, args.data_dir)
        ),
        "reconstruct": lambda: print(
            commands.reconstruct(
                args.model_dir, args.images, args.output, args.dataset, args.data_dir
            )
        ),
        "embed": lambda: print(
            *commands.embed(
                args.model_dir, args.images, args.plot, args.output, args.dataset, args.data_dir
            ),
            sep="\n",
        ),
        "export": lambda: print(
            *commands.export(args.model_dir, args.output, args.format), sep="\n"
        ),
        "sample": lambda: print(
            *analysis.sample(
                args.model_dir, args.images, args.output, args.seed, args.manifold_size
            ),
            sep="\n",
        ),
        "likelihood": lambda: _print_metrics(
            analysis.likelihood(
                args.model_dir, args.samples, args.images, args.seed, args.dataset, args.data_dir
            )
        ),
        "score": lambda: _print_score(
            analysis.score(
                args.model_dir,
                args.percentile,
                args.dataset,
                args.data_dir,
                args.output,
                args.code_weight,
            )
        ),
    }
    if args.command in ("train", "evaluate") or not distributed.launched():
        actions[args.command]()
    elif distributed.is_chief():  # under torchrun: files to write, nothing to share
        with distributed.alone():
            actions[args.command]()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
        _check_train_has_a_model(args, parser)
    except SystemExit as exc:  # --help, --version, or a bad flag already reported in one line
        return exc.code if isinstance(exc.code, int) else 2
    try:
        logging.basicConfig(
            level=logging.DEBUG if args.verbose else logging.INFO,
            format="%(levelname).1s %(message)s" if args.verbose else "%(message)s",
        )
        _run(args)
    except AekitError as exc:
        print(f"aekit: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("aekit: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`aekit ... | head`): nothing left to say
        # Point stdout at /dev/null so that the interpreter's final flush cannot fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
