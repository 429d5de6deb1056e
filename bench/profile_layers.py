#!/usr/bin/env python3
"""Where the time goes: ResNet-18 layer by layer, beamlet against the fastest other engines.

beamlet's side is build/bench_cpu_ops: every op call of a step at the model's shapes, timed
through the public bl_op_* API on the oneDNN backend. The other side is each engine's own
profiler on the same model: ONNX Runtime's per-node profile (enable_profiling) and OpenVINO's
(PERF_COUNT, get_profiling_info) on the exported ONNX file for inference, PyTorch's profiler
(eager, per aten op and input shape) for training. ONNX node names follow torchvision's modules
(/layer1/layer1.0/conv1/Conv), so each node is charged to its layer: a convolution with its
fused bias, residual add and ReLU, as beamlet's folded-BN convolution computes them; reorders
go to the layer they feed. Training rows group calls by shape, since PyTorch's profiler
reports per op and shape: each convolution shape forward and backward, batch norm with its
ReLU and residual add per activation shape, the small layers, the optimizer.

Every row gives FLOPs (2 per multiply-add), the least bytes the layer must move in f32 (read
each input once, write each output once), beamlet's milliseconds, the best f32 engine's, their
ratio, and both as a share of the CPU's measured f32 peak. The machine is shared: rounds
alternate beamlet and the engines, and each keeps its best round (per-call medians within a
round). Prints the tables and saves bench/results/layers-<date>.json.

    .venv/bin/python bench/profile_layers.py [--workloads=TAG,...] [--threads=2] [--rounds=2]
        [--iters=20] [--min-seconds=0.3] [--torch-layout=channels_last] [--build=build] [--out=FILE]
"""
import argparse
import datetime
import json
import os
import re
import shlex
import subprocess
import sys
from collections import defaultdict

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import compare_cpu  # noqa: E402  (runner, workers, machine description, peaks)
import cpu_engines  # noqa: E402

WORKLOADS = compare_cpu.WORKLOADS
INFER_ENGINES = [("onnxruntime", "f32"), ("openvino", "f32"), ("openvino", "bf16")]


# ---- beamlet's side ------------------------------------------------------------------------------

def beamlet_ops(args, runner, tag):
    """bench_cpu_ops's distinct calls (JSON lines) and its summary."""
    cmd = [os.path.join(args.build, "bench_cpu_ops"), f"--workload={tag}", f"--threads={runner.threads}",
           f"--min-seconds={args.min_seconds}"]
    p = runner.popen(cmd, stdout=subprocess.PIPE, text=True)
    calls, summary = [], None
    for line in p.stdout:
        if line.startswith("{"):
            d = json.loads(line)
            if "op" in d:
                d["layers"] = d["layers"].split(",")
                calls.append(d)
            elif d.get("summary"):
                summary = d
    if p.wait() != 0:
        sys.exit(f"profile_layers: {shlex.join(cmd)} failed with status {p.returncode}")
    return calls, summary


def keep_best_calls(best, calls):
    """Per distinct call, the lowest per-round median over the rounds so far."""
    for c in calls:
        key = (c["op"], json.dumps(c.get("x")), json.dumps(c.get("w")), c.get("stride"), c.get("residual"),
               c.get("relu"), c.get("bias"))
        if key not in best or c["ms_median"] < best[key]["ms_median"]:
            best[key] = c
    return best


# ---- the engines' side -----------------------------------------------------------------------------

def onnx_layer(node):
    """The torchvision layer an ONNX Runtime or OpenVINO node belongs to (see the module doc)."""
    m = re.search(r"/layer\d/(layer\d\.\d)/([^/]*)", node)
    if m:
        block, part = m.group(1), m.group(2)
        if part.startswith("downsample"):
            return block + ".downsample.0"
        if part.startswith(("conv2", "Add", "relu_1")):
            return block + ".conv2"
        if part.startswith(("conv1", "relu")):
            return block + ".conv1"
        return "other"
    for marker, layer in (("/conv1/", "conv1"), ("/relu/", "conv1"), ("/maxpool/", "maxpool"),
                          ("/avgpool/", "avgpool"), ("/Flatten", "avgpool"), ("/fc/", "fc")):
        if marker in node:
            return layer
    return "other"


def engine_layers(profile):
    """Sums an ONNX Runtime / OpenVINO node profile per layer (ms per inference)."""
    per = defaultdict(float)
    kernels = defaultdict(set)
    for n in profile["nodes"]:
        layer = onnx_layer(n["node"])
        per[layer] += n["ms"]
        if n["ms"] > 0:
            kernels[layer].add(n.get("exec_type") or n.get("type"))
    return dict(per), {k: sorted(v) for k, v in kernels.items()}


# ---- tables --------------------------------------------------------------------------------------

def shape_text(c):
    x, y = c.get("x"), c.get("y")
    if c["op"].startswith("conv2d"):
        w = c["w"]
        epi = "".join(s for s, on in (("+bias", c.get("bias")), ("+res", c.get("residual")), ("+relu", c.get("relu")))
                      if on)
        return f"{x[1]}x{x[2]}x{x[3]}->{y[1]}x{y[2]}x{y[3]} {w[2]}x{w[3]}/{c['stride']}{epi}"
    if c["op"].startswith("maxpool"):
        return f"{x[1]}x{x[2]}x{x[3]}->{y[1]}x{y[2]}x{y[3]} {c['kernel']}x{c['kernel']}/{c['stride']}"
    if c["op"].startswith("linear"):
        return f"{x[1]}->{y[1]}"
    return "x".join(str(v) for v in x[1:]) if x else ""


def infer_table(calls, eng, peak):
    """One row per layer instance, in model order."""
    by_layer = {}
    for c in calls:
        for layer in c["layers"]:
            by_layer[layer] = c
    order = sorted(by_layer, key=layer_order)
    rows = []
    for layer in order + ["other"]:
        c = by_layer.get(layer)
        ms = {f"{e}_{p}": eng[(e, p)]["layers"].get(layer) for (e, p) in eng}
        row = {"layer": layer, "shape": shape_text(c) if c else "reorders, output copies",
               "gflop": c["gflop"] if c else 0.0, "mb": c["mb"] if c else 0.0,
               "beamlet_ms": c["ms_median"] if c else 0.0, "beamlet_op": c["op"] if c else None,
               "engines_ms": ms}
        rows.append(finish_row(row, peak))
    return rows


def finish_row(row, peak):
    f32 = {k: v for k, v in row["engines_ms"].items() if k.endswith("_f32") and v}
    if f32:
        k = min(f32, key=f32.get)
        row["best_engine"], row["best_engine_ms"] = k, f32[k]
        row["ratio"] = row["beamlet_ms"] / f32[k] if f32[k] > 0 else None
    else:
        row["best_engine"], row["best_engine_ms"], row["ratio"] = None, None, None
    g = row["gflop"]
    row["beamlet_pct_of_peak"] = 100 * g / (row["beamlet_ms"] / 1e3) / peak if g and row["beamlet_ms"] else None
    be = row["best_engine_ms"]
    row["best_engine_pct_of_peak"] = 100 * g / (be / 1e3) / peak if g and be else None
    return row


def layer_order(name):
    if name == "conv1":
        return (0, 0, 0, "")
    if name == "maxpool":
        return (0, 1, 0, "")
    m = re.match(r"layer(\d)\.(\d)\.(.*)", name)
    if m:
        part = {"conv1": 0, "downsample.0": 1, "conv2": 2}.get(m.group(3), 3)
        return (int(m.group(1)), int(m.group(2)), part, "")
    return (9, {"avgpool": 0, "fc": 1}.get(name, 2), 0, name)


def torch_ms(ops, names, first_shape=None, shape_index=0, extra=None):
    """PyTorch's ms per step of the ops named `names` whose input `shape_index` is first_shape
    (and, with extra=(i, shape), whose input i is that shape)."""
    total = 0.0
    for o in ops:
        if o["name"] not in names:
            continue
        shp = o["input_shapes"]
        if first_shape is not None and (len(shp) <= shape_index or shp[shape_index] != first_shape):
            continue
        if extra and (len(shp) <= extra[0] or shp[extra[0]] != extra[1]):
            continue
        total += o["ms_per_step"]
    return total


SMALL_LAYERS_TORCH = ["aten::max_pool2d", "aten::adaptive_avg_pool2d", "aten::linear", "aten::cross_entropy_loss",
                      "autograd::engine::evaluate_function: MaxPool2DWithIndicesBackward0",
                      "autograd::engine::evaluate_function: MeanBackward1",
                      "autograd::engine::evaluate_function: AddmmBackward0",
                      "autograd::engine::evaluate_function: TBackward0",
                      "autograd::engine::evaluate_function: NllLossBackward0",
                      "autograd::engine::evaluate_function: LogSoftmaxBackward0"]


def train_table(calls, tprof, peak, layout):
    """Rows grouped by shape: PyTorch's profiler reports per op and input shape."""
    ops = tprof["ops"]
    rows = []
    eng = f"pytorch_eager_{layout}_f32"

    def row(layer, shape, gflop, mb, bms, tms, layers):
        return finish_row({"layer": layer, "shape": shape, "gflop": gflop, "mb": mb, "beamlet_ms": bms,
                           "engines_ms": {eng: tms}, "layers": layers}, peak)

    convs = [c for c in calls if c["op"] == "conv2d_forward"]
    for c in convs:
        same = lambda o: [d for d in calls if d["op"] == o and d["x"] == c["x"] and d["w"] == c["w"]]  # noqa: E731
        bwd = same("conv2d_backward_data") + same("conv2d_backward_filter")
        n = c["count"]
        label = c["layers"][0] + (f" +{n - 1}" if n > 1 else "")
        rows.append(row(label + " fwd", shape_text(c), n * c["gflop"], n * c["mb"], n * c["ms_median"],
                        torch_ms(ops, ["aten::convolution"], c["x"], 0, (1, c["w"])), c["layers"]))
        rows.append(row(label + " bwd", shape_text(c), sum(d["count"] * d["gflop"] for d in bwd),
                        sum(d["count"] * d["mb"] for d in bwd), sum(d["count"] * d["ms_median"] for d in bwd),
                        torch_ms(ops, ["aten::convolution_backward"], c["y"], 0, (2, c["w"])), c["layers"]))
    shapes = []
    for c in calls:
        if c["op"] == "batchnorm_forward_train" and c["x"] not in shapes:
            shapes.append(c["x"])
    for x in shapes:
        label = "x".join(str(v) for v in x[1:])
        fw = [c for c in calls if c["op"] == "batchnorm_forward_train" and c["x"] == x]
        bw = [c for c in calls if c["op"] in ("batchnorm_backward", "add") and c["x"] == x]
        layers = sorted({layer for c in fw for layer in c["layers"]}, key=layer_order)
        rows.append(row(f"bn+relu+add fwd @{label}", f"{sum(c['count'] for c in fw)} batch norms",
                        0.0, sum(c["count"] * c["mb"] for c in fw), sum(c["count"] * c["ms_median"] for c in fw),
                        torch_ms(ops, ["aten::native_batch_norm", "aten::relu_", "aten::add_"], x), layers))
        rows.append(row(f"bn+relu bwd, grad adds @{label}",
                        f"{sum(c['count'] for c in bw)} calls", 0.0, sum(c["count"] * c["mb"] for c in bw),
                        sum(c["count"] * c["ms_median"] for c in bw),
                        torch_ms(ops, ["aten::native_batch_norm_backward", "aten::threshold_backward", "aten::add"], x),
                        layers))
    small = [c for c in calls if c["op"].startswith(("maxpool", "global_avgpool", "linear", "softmax"))]
    rows.append(row("pools, fc, loss (fwd+bwd)", "", sum(c["count"] * c["gflop"] for c in small),
                    sum(c["count"] * c["mb"] for c in small), sum(c["count"] * c["ms_median"] for c in small),
                    torch_ms(ops, SMALL_LAYERS_TORCH), [c["layers"][0] for c in small]))
    sgd = [c for c in calls if c["op"] == "sgd_update"]
    rows.append(row("optimizer (SGD, Nesterov)", f"{sgd[0]['x'][0]} parameters" if sgd else "", 0.0,
                    sum(c["mb"] for c in sgd), sum(c["ms_median"] for c in sgd),
                    torch_ms(ops, ["Optimizer.step#SGD.step", "Optimizer.zero_grad#SGD.zero_grad"]), ["optimizer"]))
    mapped = sum(r["engines_ms"][eng] or 0 for r in rows)
    rows.append(row("other (PyTorch: autograd, copies, framework)", "", 0.0, 0.0, 0.0,
                    max(0.0, tprof["wall_ms_per_step"] - mapped), []))
    return rows


def print_table(title, rows, totals):
    print(f"\n{title}")
    print(f"  {'layer':34s} {'shape':34s} {'GFLOP':>7s} {'MB':>7s} {'beamlet':>8s} {'best':>8s} {'ratio':>6s} "
          f"{'bl%pk':>6s} {'be%pk':>6s}  best engine")
    for r in rows:
        def f(v, w=8, d=2):
            return f"{v:{w}.{d}f}" if isinstance(v, (int, float)) else f"{'-':>{w}s}"
        print(f"  {r['layer'][:34]:34s} {r['shape'][:34]:34s} {f(r['gflop'], 7, 3)} {f(r['mb'], 7, 1)} "
              f"{f(r['beamlet_ms'])} {f(r['best_engine_ms'])} {f(r['ratio'], 6)} {f(r['beamlet_pct_of_peak'], 6, 0)} "
              f"{f(r['best_engine_pct_of_peak'], 6, 0)}  {r['best_engine'] or ''}")
    for k, v in totals.items():
        print(f"  {k}: {v if not isinstance(v, float) else round(v, 2)}")


# ---- the run -----------------------------------------------------------------------------------

def profile_workload(args, runner, tag, versions):
    w = cpu_engines.parse_workload(tag)
    bench = os.path.join(args.build, "bench_cpu")
    workers = {}
    if w["train"]:
        engine = f"pytorch_eager_{args.torch_layout}"
        workers[engine] = compare_cpu.Worker(runner, engine, tag, ["f32"], None)
    else:
        onnx = compare_cpu.onnx_for(args, runner, w)
        for engine in ("onnxruntime", "openvino"):
            precs = [p for (e, p) in INFER_ENGINES if e == engine]
            workers[engine] = compare_cpu.Worker(runner, engine, tag, precs, onnx)
    best_calls, step_ms, eng, tprof = {}, [], {}, None
    try:
        for engine, wk in workers.items():
            versions.setdefault(engine, wk.ready()["versions"])
        for r in range(args.rounds):
            calls, summary = beamlet_ops(args, runner, tag)
            keep_best_calls(best_calls, calls)
            res, _, others = compare_cpu.last_json_line(
                runner, [bench, f"--threads={runner.threads}", f"--min-seconds={args.min_seconds * 4}", f"--only={tag}"],
                "bench_cpu")
            step_ms.append(res["ms_per_step"])
            print(f"  round {r + 1} {tag}: beamlet ops sum {summary['step_ms_sum_of_medians']:.1f} ms, step "
                  f"{res['ms_per_step']:.1f} ms (others used {others:.2f} cores)", file=sys.stderr)
            if w["train"]:
                engine = f"pytorch_eager_{args.torch_layout}"
                timed = workers[engine].ask(f"run f32 {args.min_seconds * 4}")
                prof = workers[engine].ask(f"profile f32 {max(2, args.iters // 5)}", "@profile")
                prof["wall_ms_per_step"] = prof.get("wall_ms_per_step", timed["ms_per_step"])
                if tprof is None or prof["wall_ms_per_step"] < tprof["wall_ms_per_step"]:
                    prof["step_ms_unprofiled"] = timed["ms_per_step"]
                    tprof = prof
                print(f"  round {r + 1} {tag}: {engine} step {timed['ms_per_step']:.1f} ms, profiled "
                      f"{prof['wall_ms_per_step']:.1f} ms", file=sys.stderr)
            else:
                for engine, prec in INFER_ENGINES:
                    timed = workers[engine].ask(f"run {prec} {args.min_seconds * 4}")
                    prof = workers[engine].ask(f"profile {prec} {args.iters}", "@profile")
                    layers, kernels = engine_layers(prof)
                    cur = eng.get((engine, prec))
                    if cur is None:
                        eng[(engine, prec)] = cur = {"layers": layers, "kernels": kernels, "step_ms": []}
                    else:  # best round per layer
                        for k, v in layers.items():
                            cur["layers"][k] = min(v, cur["layers"].get(k, v))
                    cur["step_ms"].append(timed["ms_per_step"])
                    print(f"  round {r + 1} {tag}: {engine} {prec} step {timed['ms_per_step']:.1f} ms, nodes sum "
                          f"{sum(layers.values()):.1f} ms", file=sys.stderr)
    finally:
        for wk in workers.values():
            wk.close()
    calls = sorted(best_calls.values(), key=lambda c: layer_order(c["layers"][0]))
    peak = args.peak["f32"]
    beamlet_sum = sum(c["count"] * c["ms_median"] for c in calls)
    totals = {"beamlet_step_ms_best_round": min(step_ms), "beamlet_sum_of_op_medians_ms": beamlet_sum,
              "beamlet_op_coverage_of_step": beamlet_sum / min(step_ms)}
    if w["train"]:
        rows = train_table(calls, tprof, peak, args.torch_layout)
        totals.update({f"pytorch_eager_{args.torch_layout}_step_ms_unprofiled": tprof["step_ms_unprofiled"],
                       f"pytorch_eager_{args.torch_layout}_step_ms_profiled": tprof["wall_ms_per_step"]})
    else:
        rows = infer_table(calls, eng, peak)
        for (e, p), d in eng.items():
            totals[f"{e}_{p}_step_ms_best_round"] = min(d["step_ms"])
            totals[f"{e}_{p}_sum_of_nodes_ms"] = sum(d["layers"].values())
    return {"workload": tag, "batch": w["batch"], "train": w["train"], "rows": rows, "totals": totals,
            "beamlet_calls": calls,
            "engine_kernels": {f"{e}_{p}": d["kernels"] for (e, p), d in eng.items()}}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--models", default=None)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--iters", type=int, default=20, help="profiled inferences per round (training: a fifth)")
    ap.add_argument("--min-seconds", type=float, default=0.3, help="bench_cpu_ops seconds per distinct call")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--torch-layout", choices=["nchw", "channels_last"], default="channels_last",
                    help="PyTorch eager layout profiled for training")
    ap.add_argument("--pin", choices=["cores", "none"], default="cores")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.models = args.models or os.path.join(args.build, "bench_models")
    for tool in ("bench_cpu", "bench_cpu_ops"):
        if not os.access(os.path.join(args.build, tool), os.X_OK):
            sys.exit(f"profile_layers: {args.build}/{tool} not found; build first")
    runner = compare_cpu.Runner(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = compare_cpu.load_now()
    peaks = [compare_cpu.measure_peaks(args, runner)]
    args.peak = {"f32": peaks[0]["f32_gflops"], "bf16": peaks[0]["bf16_gflops"]}
    versions = {"beamlet": compare_cpu.run_text(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
                "beamlet_onednn": "libdnnl " + (compare_cpu.run_text(["dpkg-query", "-W", "-f=${Version}", "libdnnl2"]) or "?")}
    results = [profile_workload(args, runner, tag, versions) for tag in args.workloads.split(",") if tag]
    peaks.append(compare_cpu.measure_peaks(args, runner))
    if max(p["f32_gflops"] for p in peaks) > args.peak["f32"]:
        # Rows use the best peak seen: the start one may read low under load.
        args.peak = {"f32": max(p["f32_gflops"] for p in peaks),
                     "bf16": max((p["bf16_gflops"] or 0) for p in peaks) or None}
        for res in results:
            for r in res["rows"]:
                finish_row(r, args.peak["f32"])
    report = {"date": started.isoformat(timespec="seconds"),
              "command": shlex.join([os.path.relpath(sys.executable, ROOT)] + sys.argv),
              "machine": compare_cpu.machine(), "load_start": load_start, "load_end": compare_cpu.load_now(),
              "threads": runner.describe(), "versions": versions, "rounds": args.rounds,
              "peak_gflops": {"f32": args.peak["f32"], "bf16": args.peak["bf16"], "runs": peaks,
                              "measured_by": "bench_cpu_ops --peak, best of the start and end of the run"},
              "note": "ms are per step (inference: one batch; training: one SGD step), medians within a round, "
                      "best round. beamlet's ops run alone with warm caches; totals set their sum against "
                      "bench_cpu's whole step. mb = least f32 traffic. ratio = beamlet / best f32 engine. "
                      "pct_of_peak = GFLOP/s over the measured f32 peak.",
              "results": results}
    for res in results:
        print_table(f"{res['workload']}: ms per step, peak f32 {args.peak['f32']:.0f} GFLOP/s", res["rows"],
                    res["totals"])
    out = args.out or os.path.join(HERE, "results", f"layers-{started.strftime('%Y-%m-%d')}.json")
    with open(out + ".tmp", "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(out + ".tmp", out)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
