"""Training configs and results, training one config, and the sweep grid.

A TrainingConfig is a dict with the fields of beamlet's bl_training_config (beamlet/ml.h):
experiment_id, model, width, learning_rate, schedule, batch_size, epochs, optimizer, momentum,
weight_decay, label_smoothing, seed, device, allow_cpu_fallback, precision, dataset, data_dir,
output_dir, train_limit, test_limit, stop_after_epochs, quiet. It crosses into C as JSON, where unknown
fields are errors and every value is validated, so a config trains here exactly as it would in
`beamlet train`. A TrainingResult comes back as a dict (experiment_id, model, learning_rate,
batch_size, accuracy, loss, epochs, wall_time_s, images_per_s, device, checkpoint_path,
weights_path, resumed).
"""
import ctypes
import json

from beamlet import _native


def _to_json(config):
    if isinstance(config, (bytes, str)):
        return config.encode() if isinstance(config, str) else config
    if not isinstance(config, dict):
        raise TypeError(f"a training config is a dict or a JSON string, not {type(config).__name__}")
    return json.dumps(config).encode()


def default_config():
    """The defaults: ResNet-18 width 64, SGD Nesterov 0.9, one-cycle max LR 0.1, weight decay 5e-4,
    batch 512, 15 epochs, Fashion-MNIST, device auto, f32."""
    lib = _native.lib()
    return json.loads(_native.call_returning_string(lib.bl_capi_training_config_default))


def training_config(base=None, **fields):
    """A complete, validated config: `base` (a dict, or None for the defaults) updated with
    `fields`. Raises InvalidArgumentError/FormatError naming the bad field."""
    config = dict(base or {})
    config.update(fields)
    lib = _native.lib()
    return json.loads(_native.call_returning_string(lib.bl_capi_training_config_normalize, _to_json(config)))


def train(config):
    """Trains one config with a checkpoint every epoch in <output_dir>/<experiment_id>/,
    resuming from the checkpoint when it exists and was written for the same config; returns
    the TrainingResult dict (weights_path is "" until the last epoch is done)."""
    lib = _native.lib()
    return json.loads(_native.call_returning_string(lib.bl_capi_train, _to_json(config)))


def sweep_grid(base=None, learning_rates=None, batch_sizes=None, models=None):
    """The proposal's grid: learning rates x batch sizes x models around `base`, each config with
    an experiment id like "resnet18-lr0.01-bs32". An axis left None takes its default:
    (0.01, 0.001, 0.0001) x (16, 32, 64) x (resnet18, resnet34) = 18 configs."""
    def array(ctype, values):
        if values is None:
            return None, 0
        values = list(values)
        return (ctype * len(values))(*values), len(values)
    lrs, n_lr = array(ctypes.c_float, learning_rates)
    bss, n_bs = array(ctypes.c_int, batch_sizes)
    names, n_m = array(ctypes.c_char_p, None if models is None else [m.encode() for m in models])
    lib = _native.lib()
    text = _native.call_returning_string(lib.bl_capi_sweep_grid, _to_json(base or {}), lrs, n_lr, bss, n_bs,
                                         names, n_m)
    return json.loads(text)
