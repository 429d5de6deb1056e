"""Accelerator strings checked on the submitting machine.

Beam passes an `accelerator` resource hint and Dataflow's
`--dataflow_service_options=worker_accelerator=...` through as opaque text: a typo (a GPU
type that does not exist, `count` spelled `cnt`, a TPU without a topology, a flag Beam does
not have) surfaces only on the service, minutes after submission, or never, when Beam
silently discards an unknown flag. The checks here run before a pipeline is built and refuse
with the position in the text and what was expected there.

Grammar (Dataflow's): fields separated by ';'
    GPU: type:<nvidia-...>;count:<n>[;install-nvidia-driver[:<version>]][;use_nvidia_mps]
    TPU: type:<tpu-...>;topology:<AxB[xC]>
"""
import logging
import re

# Dataflow's accelerator types (its GPU and TPU documentation, checked 2026-12). A type added
# since can be allowed with known_types_only=False (the examples' --allow_unknown_accelerator).
GPU_TYPES = ("nvidia-tesla-t4", "nvidia-tesla-p4", "nvidia-tesla-p100", "nvidia-tesla-v100", "nvidia-tesla-a100",
             "nvidia-a100-80gb", "nvidia-l4", "nvidia-h100-80gb", "nvidia-h100-mega-80gb", "nvidia-h200-141gb",
             "nvidia-b200")
TPU_TYPES = {"tpu-v5-lite-podslice": 2, "tpu-v5p-slice": 3, "tpu-v6e-slice": 2}  # topology dimensions

# What get_resource_hints() asks for when a device needs an accelerator and none was given.
DEFAULT_HINTS = {
    "gpu": "type:nvidia-l4;count:1;install-nvidia-driver",
    "tpu": "type:tpu-v5-lite-podslice;topology:1x1",
}

_log = logging.getLogger(__name__)


class AcceleratorError(ValueError):
    """A malformed or inconsistent accelerator string, found before submission."""


# The device resolver's names (include/beamlet/tensor.h, BL_DEVICE_NAMES) by the accelerator a
# worker needs for them. The resolver decides everything else, on the worker; this is only what
# a resource hint needs to know on the submitting machine, which may have no accelerator at all
# (tests/test_handler.py checks the table against the header's list).
DEVICE_KINDS = {"auto": "auto", "cpu": "cpu", "cpu_ref": "cpu", "xla:cpu": "cpu", "gpu": "gpu", "cuda": "gpu",
                "xla:cuda": "gpu", "tpu": "tpu"}
_INDEXED = ("gpu", "cuda", "xla:cuda", "tpu")  # the accelerator names, which take ":N"


def device_kind(device):
    """"cpu", "gpu", "tpu" or "auto" for a beamlet device name (None: "cpu"); AcceleratorError
    for a name the device resolver does not know."""
    d = "cpu" if device is None else device
    name, _, index = d.rpartition(":")
    if name in _INDEXED and index.isdigit():
        d = name
    if d not in DEVICE_KINDS:
        raise AcceleratorError(f"unknown device '{device}' (valid: {', '.join(DEVICE_KINDS)}, and "
                               f"{', '.join(n + ':N' for n in _INDEXED)})")
    return DEVICE_KINDS[d]


def _fail(text, pos, why):
    raise AcceleratorError(f"accelerator '{text}' at position {pos + 1}: {why}")


def validate_accelerator(text, device=None, known_types_only=True):
    """Checks one accelerator string; returns it unchanged when it is well formed and fits
    `device` (a beamlet device name, or None for no device check). Raises AcceleratorError."""
    if not isinstance(text, str) or not text:
        raise AcceleratorError(f"accelerator must be a non-empty string, got {text!r}")
    fields, pos = {}, 0
    for part in text.split(";"):
        if not part:
            _fail(text, pos, "empty field (two ';' in a row, or a trailing ';')")
        name, _, value = part.partition(":")
        if name in fields:
            _fail(text, pos, f"'{name}' given twice")
        if name in ("type", "count", "topology") and not value:
            _fail(text, pos, f"'{name}' needs a value ({name}:...)")
        if name not in ("type", "count", "topology", "install-nvidia-driver", "use_nvidia_mps"):
            _fail(text, pos, f"unknown field '{part}' (valid: type:<name>, count:<n>, topology:<AxB>, "
                             "install-nvidia-driver, use_nvidia_mps)")
        fields[name] = (value, pos + len(name) + 1)
        pos += len(part) + 1
    if "type" not in fields:
        _fail(text, 0, "no type:<name> (e.g. type:nvidia-l4 or type:tpu-v5-lite-podslice)")
    kind_name, type_pos = fields["type"]
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", kind_name):
        _fail(text, type_pos, f"type '{kind_name}' may hold lower-case letters, digits and '-'")
    is_tpu = kind_name.startswith("tpu-")
    if not is_tpu and not kind_name.startswith("nvidia-"):
        _fail(text, type_pos, f"type '{kind_name}' is neither a GPU (nvidia-...) nor a TPU (tpu-...)")
    known = TPU_TYPES if is_tpu else GPU_TYPES
    if known_types_only and kind_name not in known:
        _fail(text, type_pos, f"unknown {'TPU' if is_tpu else 'GPU'} type '{kind_name}' (known: "
                              f"{', '.join(known)}; a newer one: pass known_types_only=False)")
    if is_tpu:
        for gpu_only in ("count", "install-nvidia-driver", "use_nvidia_mps"):
            if gpu_only in fields:
                _fail(text, fields[gpu_only][1] - len(gpu_only) - 1,
                      f"'{gpu_only}' is for GPUs; a TPU's size is its topology:<AxB>")
        if "topology" not in fields:
            _fail(text, 0, "a TPU needs topology:<AxB> (e.g. topology:1x1 for one chip)")
        topo, topo_pos = fields["topology"]
        dims = topo.split("x")
        if not all(re.fullmatch(r"[1-9][0-9]*", d) for d in dims):
            _fail(text, topo_pos, f"topology '{topo}' is not AxB (positive integers joined by 'x')")
        want = TPU_TYPES.get(kind_name)
        if want and len(dims) != want:
            _fail(text, topo_pos, f"{kind_name} takes a {want}-dimensional topology "
                                  f"({'AxB' if want == 2 else 'AxBxC'}), got '{topo}'")
    else:
        if "topology" in fields:
            _fail(text, fields["topology"][1] - 9, "'topology' is for TPUs; a GPU takes count:<n>")
        if "count" not in fields:
            _fail(text, 0, "a GPU needs count:<n> (e.g. count:1)")
        count, count_pos = fields["count"]
        if not re.fullmatch(r"[1-9][0-9]*", count) or int(count) > 16:
            _fail(text, count_pos, f"count '{count}' is not a whole number from 1 to 16")
        driver = fields.get("install-nvidia-driver")
        if driver and driver[0] and not re.fullmatch(r"[A-Za-z0-9._-]+", driver[0]):
            _fail(text, driver[1], f"driver version '{driver[0]}' may hold letters, digits, '.', '_' and '-'")
        if "use_nvidia_mps" in fields and fields["use_nvidia_mps"][0]:
            _fail(text, fields["use_nvidia_mps"][1], "use_nvidia_mps takes no value")
        if "install-nvidia-driver" not in fields:
            _log.warning("accelerator '%s' has no install-nvidia-driver: Dataflow installs no GPU driver "
                         "unless the worker image brings one", text)
    kind = device_kind(device) if device is not None else None
    accel = "tpu" if is_tpu else "gpu"
    if kind == "cpu":
        raise AcceleratorError(f"accelerator '{text}' asks for a {accel.upper()}, but device '{device}' runs on "
                               "the CPU: the worker would rent an accelerator it never uses (drop the hint, or "
                               f"use device='{accel}')")
    if kind in ("gpu", "tpu") and kind != accel:
        raise AcceleratorError(f"accelerator '{text}' asks for a {accel.upper()}, but device '{device}' needs a "
                               f"{kind.upper()}")
    return text


def resource_hints(device, accelerator=None, known_types_only=True):
    """The resource hints a step on `device` needs: {'accelerator': ...} for GPU and TPU
    devices (the given accelerator after validation, else DEFAULT_HINTS), {} for the CPU."""
    if accelerator is not None:
        return {"accelerator": validate_accelerator(accelerator, device, known_types_only)}
    kind = device_kind(device)
    return {"accelerator": DEFAULT_HINTS[kind]} if kind in DEFAULT_HINTS else {}


def validate_pipeline_options(options, device=None, known_types_only=True):
    """Checks the accelerator strings in Beam pipeline options before submission: every
    `--resource_hints=accelerator=...` and `--dataflow_service_options=worker_accelerator=...`
    (for `device`, when given), and flags that look like an accelerator but that Beam does not
    have (it drops unknown flags with only a warning). `options` is a PipelineOptions."""
    from apache_beam.options.pipeline_options import GoogleCloudOptions, StandardOptions
    for hint in options.view_as(StandardOptions).resource_hints or []:
        name, _, value = hint.partition("=")
        if name == "accelerator":
            validate_accelerator(value, device, known_types_only)
    for opt in options.view_as(GoogleCloudOptions).dataflow_service_options or []:
        name, _, value = opt.partition("=")
        if name == "worker_accelerator":
            try:
                validate_accelerator(value, device, known_types_only)
            except AcceleratorError as e:
                raise AcceleratorError(f"--dataflow_service_options=worker_accelerator: {e}") from None
    unknown = options.get_all_options(retain_unknown_options=True)
    for flag in ("worker_accelerator", "accelerator", "worker_accelerators"):
        if flag in unknown and flag not in options.get_all_options():
            raise AcceleratorError(
                f"--{flag} is not a Beam pipeline option (Beam would drop it with a warning): say "
                "--dataflow_service_options=worker_accelerator=type:...;count:... for the workers, or "
                "--resource_hints=accelerator=type:...;count:... for the steps")
