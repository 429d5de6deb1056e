"""Command-line flags for the training examples, in Beam's --name=value style: one flag per
TrainingConfig field (as the C programs register them), the sweep grid's axes, and the rule
that a sweep refuses the single-run flags its grid would silently override."""
import argparse

from beamlet.training import default_config, sweep_grid, training_config

SINGLE_RUN_FLAGS = {"learning_rate": "learning_rates", "batch_size": "batch_sizes", "model": "models",
                    "experiment_id": None}


def _bool(text):
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def add_config_flags(parser, defaults=None):
    """--<field> for every TrainingConfig field, defaulting to `defaults` (the library's
    defaults updated with it). A flag not given stays None, so callers can tell."""
    values = default_config()
    values.update(defaults or {})
    for name, value in values.items():
        if isinstance(value, bool):  # --quiet alone means --quiet=true, as in the C programs
            parser.add_argument(f"--{name}", type=_bool, nargs="?", const=True, default=None,
                                help=f"TrainingConfig.{name} (default: {str(value).lower()})")
        else:
            parser.add_argument(f"--{name}", type=type(value), default=None,
                                help=f"TrainingConfig.{name} (default: {value})")
    return values


def config_from_args(args, defaults):
    """The validated config: defaults, then every config flag that was given."""
    given = {k: getattr(args, k) for k in defaults if getattr(args, k, None) is not None}
    return training_config(defaults, **given)


def add_grid_flags(parser):
    parser.add_argument("--learning_rates", default="0.01,0.001,0.0001", help="grid axis: learning rates")
    parser.add_argument("--batch_sizes", default="16,32,64", help="grid axis: batch sizes")
    parser.add_argument("--models", default="resnet18,resnet34", help="grid axis: models")


def grid_from_args(args, base):
    """The sweep's configs. A single-run flag (--learning_rate, ...) would be overridden by the
    grid without a word, so it is refused with the flag to use instead."""
    for single, plural in SINGLE_RUN_FLAGS.items():
        value = getattr(args, single, None)
        if value is not None:
            if plural is None:
                raise ValueError(f"--{single}={value} names a single run; a sweep names each config itself "
                                 "(<model>-lr<rate>-bs<batch>, e.g. resnet18-lr0.01-bs32)")
            raise ValueError(f"--{single}={value} sets a single run; a sweep takes its values from --{plural} "
                             f"(e.g. --{plural}={value})")

    def split(flag, text, kind):
        items = [t for t in text.split(",")]
        if not items or any(not t for t in items):
            raise ValueError(f"--{flag}={text}: expected comma-separated values")
        try:
            return [kind(t) for t in items]
        except ValueError:
            raise ValueError(f"--{flag}={text}: not all values are {kind.__name__}s") from None
    return sweep_grid(base, split("learning_rates", args.learning_rates, float),
                      split("batch_sizes", args.batch_sizes, int), split("models", args.models, str))
