#!/usr/bin/env python3
"""The CPU engines beamlet is measured against, each served from its own long-lived process.

Engines: PyTorch eager (NCHW or channels-last), torch.compile (inductor), ONNX Runtime and
OpenVINO, on ResNet-18 workloads named as bench_cpu names them
(<cifar|imagenet>_resnet18_<infer|train>_b<N>). The driver (compare_cpu.py, profile_layers.py)
starts one worker per engine and workload; a worker builds its model once per precision
(f32, bf16), warms it up, and then answers commands on stdin, so rounds can alternate between
engines without paying imports, ONNX loading or torch.compile again:

    run PRECISION MIN_SECONDS   -> "@result {json}"   timed steps, like bench_cpu's loop
    profile PRECISION ITERS     -> "@profile {json}"  per-node/per-op times (the engine's profiler)
    quit

Lines the driver reads start with "@"; everything else a library prints is ignored. The ONNX
model comes from the same torchvision model, exported by `export_onnx` (opset 17, f32).

    .venv/bin/python bench/cpu_engines.py --engine=openvino --workload=cifar_resnet18_infer_b64 \\
        --precisions=f32,bf16 --threads=2 [--onnx=FILE]      (normally started by the drivers)
"""
import argparse
import json
import os
import re
import statistics
import sys
import time

ENGINES = ("pytorch_eager_nchw", "pytorch_eager_channels_last", "torch_compile", "onnxruntime", "openvino")
# Precisions each engine can run; beamlet's CPU backend is f32 only.
PRECISIONS = {"beamlet": ("f32", "bf16"), "pytorch_eager_nchw": ("f32", "bf16"), "pytorch_eager_channels_last": ("f32", "bf16"),
              "torch_compile": ("f32", "bf16"), "onnxruntime": ("f32",), "openvino": ("f32", "bf16")}
INFERENCE_ONLY = ("onnxruntime", "openvino")


def parse_workload(tag):
    """cifar_resnet18_train_b128 -> dict(stem, hw, classes, batch, train)."""
    m = re.fullmatch(r"(cifar|imagenet)_resnet18_(infer|train)_b(\d+)", tag)
    if not m or int(m.group(3)) < 1:
        raise ValueError(f"workload {tag!r}: expected <cifar|imagenet>_resnet18_<infer|train>_b<N>")
    cifar = m.group(1) == "cifar"
    return {"tag": tag, "stem": m.group(1), "hw": 32 if cifar else 224, "classes": 10 if cifar else 1000,
            "batch": int(m.group(3)), "train": m.group(2) == "train"}


def gflop_per_image(w):
    """FLOPs of one image (2 per multiply-add of the convolutions and the classifier, as bench_cpu
    counts them); a training step counts 3x the forward."""
    h, c, macs = w["hw"], 64, 0
    if w["stem"] == "imagenet":
        h = (h + 6 - 7) // 2 + 1
        macs += h * h * 64 * 3 * 49
        h = (h + 2 - 3) // 2 + 1
    else:
        macs += h * h * 64 * 3 * 9
    for stage in range(4):
        k = 64 << stage
        for block in range(2):
            stride = 2 if stage > 0 and block == 0 else 1
            ho = (h - 1) // stride + 1
            macs += ho * ho * k * c * 9 + ho * ho * k * k * 9 + (ho * ho * k * c if stride != 1 or c != k else 0)
            h, c = ho, k
    macs += 512 * w["classes"]
    return 2 * macs * (3 if w["train"] else 1) / 1e9


def torchvision_model(stem, classes):
    """torchvision's ResNet-18; the CIFAR stem is beamlet's BL_RESNET_STEM_CIFAR (3x3/1, no max-pool)."""
    import torch
    import torchvision
    torch.manual_seed(0)
    m = torchvision.models.resnet18(num_classes=classes)
    if stem == "cifar":
        m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = torch.nn.Identity()
    return m


def export_onnx(stem, classes, path):
    """Exports the eval-mode torchvision model to ONNX (opset 17, f32, dynamic batch) with the
    TorchScript exporter, whose node names follow the module names (/layer1/layer1.0/conv1/Conv),
    which profile_layers.py maps back to layers. Batch norms fold into the convolutions."""
    import torch
    m = torchvision_model(stem, classes).eval()
    hw = 32 if stem == "cifar" else 224
    tmp = path + ".tmp"
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, not gone
        torch.onnx.export(m, (torch.randn(1, 3, hw, hw),), tmp, opset_version=17, dynamo=False,
                          input_names=["x"], output_names=["logits"],
                          dynamic_axes={"x": {0: "n"}, "logits": {0: "n"}})
    os.replace(tmp, path)
    return path


def versions(engine):
    """The versions an engine's results depend on, read from the libraries themselves."""
    v = {"python": sys.version.split()[0]}
    if engine.startswith(("pytorch", "torch")):
        import torch
        import torchvision
        v["torch"] = torch.__version__
        v["torchvision"] = torchvision.__version__
        found = re.search(r"MKL-DNN v([\d.]+)", torch.__config__.show())
        v["torch_onednn"] = found.group(1) if found else "?"
    elif engine == "onnxruntime":
        import onnx
        import onnxruntime
        v["onnxruntime"] = onnxruntime.__version__
        v["onnx"] = onnx.__version__
    elif engine == "openvino":
        import openvino
        v["openvino"] = openvino.get_version()
    return v


# ---- engines: prepare(precision) builds and warms a model; step() runs one timed unit -------

class TorchEngine:
    """PyTorch eager or torch.compile. Inference: model.eval() under torch.inference_mode(); bf16
    inference converts model and input to bf16 (oneDNN's AVX512-BF16 kernels). Training: SGD with
    Nesterov momentum, as bench_cpu; bf16 training is autocast (f32 master weights)."""

    def __init__(self, engine, w, threads):
        import torch
        torch.set_num_threads(threads)
        self.torch, self.engine, self.w = torch, engine, w
        self.channels_last = engine != "pytorch_eager_nchw"  # torch.compile: channels-last too
        self.steps, self.ran = {}, {}

    def prepare(self, precision):
        torch, w = self.torch, self.w
        m = torchvision_model(w["stem"], w["classes"])
        x = torch.randn(w["batch"], 3, w["hw"], w["hw"])
        bf16 = precision == "bf16"
        if self.channels_last:
            m = m.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        if w["train"]:
            m.train()
            opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
            y = torch.arange(w["batch"]) % w["classes"]
            fwd = torch.compile(m) if self.engine == "torch_compile" else m

            def step():
                opt.zero_grad(set_to_none=True)
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                    logits = fwd(x)
                    loss = torch.nn.functional.cross_entropy(logits, y)
                loss.backward()
                opt.step()
                return logits
        else:
            m.eval()
            if bf16:
                m, x = m.to(torch.bfloat16), x.to(torch.bfloat16)
            if self.engine == "torch_compile":
                # Freezing folds weights and lets inductor prepack them for oneDNN: PyTorch's
                # documented setting for CPU inference.
                import torch._inductor.config
                torch._inductor.config.freezing = True
                with torch.inference_mode():
                    fwd = torch.compile(m)
            else:
                fwd = m

            def step():
                with torch.inference_mode():
                    return fwd(x)
        t0 = time.perf_counter()
        for _ in range(2):
            logits = step()
        setup_s = time.perf_counter() - t0
        self.steps[precision] = step
        # The logits' dtype is the precision the last layers computed in (bf16 only when the
        # model was converted or autocast reached its convolutions and classifier).
        ran = {torch.float32: "f32", torch.bfloat16: "bf16"}.get(logits.dtype, str(logits.dtype))
        self.ran[precision] = {"precision_ran": ran + (" (autocast, f32 master weights)" if ran == "bf16" and w["train"] else ""),
                               "layout": "channels_last" if self.channels_last else "nchw",
                               "first_steps_s": setup_s}
        if self.engine == "torch_compile":
            self.ran[precision]["compile"] = "inductor" + (", freezing" if not w["train"] else "")
        return self.ran[precision]

    def step(self, precision):
        self.steps[precision]()

    def profile(self, precision, iters):
        """Per-op CPU time of the top-level aten ops, keyed by name and input shapes, per step."""
        from torch.profiler import ProfilerActivity, profile
        step = self.steps[precision]
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            t0 = time.perf_counter()
            for _ in range(iters):
                step()
            wall = time.perf_counter() - t0
        rows = []
        for e in prof.key_averages(group_by_input_shape=True):
            rows.append({"name": e.key, "input_shapes": e.input_shapes, "count_per_step": e.count / iters,
                         "ms_per_step": e.cpu_time_total / 1e3 / iters,
                         "self_ms_per_step": e.self_cpu_time_total / 1e3 / iters})
        return {"ops": rows, "iters": iters, "wall_ms_per_step": 1e3 * wall / iters}


class OnnxRuntimeEngine:
    """ONNX Runtime's CPU execution provider, all graph optimizations, sequential execution.
    Runs the f32 model: its x86 CPU provider has no bf16 convolution kernels."""

    def __init__(self, w, threads, onnx_path, pin):
        import numpy as np
        self.np, self.w, self.threads, self.path, self.pin = np, w, threads, onnx_path, pin
        self.sessions, self.ran = {}, {}
        self.x = np.random.default_rng(0).standard_normal((w["batch"], 3, w["hw"], w["hw"]), dtype=np.float32)

    def _session(self, profiling=False):
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.pin and self.threads > 1:
            # The caller's thread is worker 0 (pinned by the driver's affinity); ORT's own
            # threads get the remaining cores, one each (1-based logical processor ids).
            cpus = sorted(os.sched_getaffinity(0))
            so.add_session_config_entry("session.intra_op_thread_affinities",
                                        ";".join(str(c + 1) for c in cpus[1:self.threads]))
        if profiling:
            so.enable_profiling = True
            so.profile_file_prefix = f"/tmp/bench_ort_profile_{os.getpid()}"
        return ort.InferenceSession(self.path, so, providers=["CPUExecutionProvider"])

    def prepare(self, precision):
        if precision != "f32":
            raise ValueError("onnxruntime runs f32 only here")
        s = self._session()
        t0 = time.perf_counter()
        for _ in range(2):
            s.run(None, {"x": self.x})
        self.sessions[precision] = s
        self.ran[precision] = {"precision_ran": "f32", "providers": s.get_providers(),
                               "first_steps_s": time.perf_counter() - t0}
        return self.ran[precision]

    def step(self, precision):
        self.sessions[precision].run(None, {"x": self.x})

    def profile(self, precision, iters):
        s = self._session(profiling=True)
        for _ in range(3):
            s.run(None, {"x": self.x})
        runs_before = 3
        for _ in range(iters):
            s.run(None, {"x": self.x})
        path = s.end_profiling()
        with open(path) as f:
            events = json.load(f)
        os.unlink(path)
        per_node = {}
        for e in events:
            if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
                name = e["name"][: -len("_kernel_time")]
                per_node.setdefault(name, {"op": e["args"].get("op_name", "?"), "us": []})["us"].append(e["dur"])
        nodes = []
        for name, d in per_node.items():
            timed = d["us"][runs_before:] or d["us"]  # drop the warm-up runs
            nodes.append({"node": name, "type": d["op"], "ms": statistics.median(timed) / 1e3,
                          "ms_mean": statistics.fmean(timed) / 1e3})
        return {"nodes": nodes, "iters": iters}


class OpenVinoEngine:
    """OpenVINO's CPU plugin on the same ONNX file, reshaped to the static batch, one stream,
    INFERENCE_PRECISION_HINT f32 or bf16 (left alone, it picks bf16 on CPUs with AVX512-BF16).
    The precision it really ran is read back from the compiled model's execution graph."""

    def __init__(self, w, threads, onnx_path, pin):
        import numpy as np
        import openvino as ov
        self.ov, self.w, self.threads, self.pin = ov, w, threads, pin
        self.core = ov.Core()
        self.model = self.core.read_model(onnx_path)
        self.model.reshape({"x": [w["batch"], 3, w["hw"], w["hw"]]})
        self.x = np.random.default_rng(0).standard_normal((w["batch"], 3, w["hw"], w["hw"]), dtype=np.float32)
        self.requests, self.ran = {}, {}

    def _compile(self, precision, perf_count=False):
        cfg = {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1, "INFERENCE_PRECISION_HINT": precision,
               "ENABLE_CPU_PINNING": self.pin, "PERF_COUNT": perf_count}
        return self.core.compile_model(self.model, "CPU", cfg)

    def prepare(self, precision):
        cm = self._compile(precision)
        kernels = {}
        for op in cm.get_runtime_model().get_ordered_ops():
            info = op.get_rt_info()
            if info["layerType"].astype(str) == "Convolution":
                key = f"{info['primitiveType'].astype(str)} ({info['runtimePrecision'].astype(str)})"
                kernels[key] = kernels.get(key, 0) + 1
        r = cm.create_infer_request()
        t0 = time.perf_counter()
        for _ in range(2):
            r.infer({0: self.x})
        self.requests[precision] = r
        precisions = {k.rsplit("(", 1)[1].rstrip(")") for k in kernels}
        self.ran[precision] = {"precision_ran": "+".join(sorted(precisions)), "convolution_kernels": kernels,
                               "hint_read_back": cm.get_property("INFERENCE_PRECISION_HINT").to_string(),
                               "first_steps_s": time.perf_counter() - t0}
        return self.ran[precision]

    def step(self, precision):
        self.requests[precision].infer({0: self.x})

    def profile(self, precision, iters):
        r = self._compile(precision, perf_count=True).create_infer_request()
        for _ in range(3):
            r.infer({0: self.x})
        times = {}
        for _ in range(iters):
            r.infer({0: self.x})
            for p in r.get_profiling_info():
                d = times.setdefault(p.node_name, {"type": p.node_type, "exec": p.exec_type, "us": []})
                d["us"].append(p.real_time.total_seconds() * 1e6)
        nodes = [{"node": n, "type": d["type"], "exec_type": d["exec"], "ms": statistics.median(d["us"]) / 1e3,
                  "ms_mean": statistics.fmean(d["us"]) / 1e3} for n, d in times.items()]
        return {"nodes": nodes, "iters": iters}


# ---- the worker loop ----------------------------------------------------------------------------

def cpu_jiffies():
    """(busy, steal) jiffies of the whole machine from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + (v[4] if len(v) > 4 else 0)
    steal = v[7] if len(v) > 7 else 0
    return sum(v[:8]) - idle - steal, steal


def timed_run(engine, precision, w, min_seconds):
    """bench_cpu's loop: two warm-up steps, then steps until min_seconds and 3 steps have passed.
    Also measures what else ran on the machine meanwhile: other processes' CPU use, in cores."""
    for _ in range(2):
        engine.step(precision)
    hz = os.sysconf("SC_CLK_TCK")
    busy0, steal0 = cpu_jiffies()
    iters, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        engine.step(precision)
        iters += 1
        elapsed = time.perf_counter() - start
        if iters >= 3 and elapsed >= min_seconds:
            break
    cpu = time.process_time() - cpu_start
    busy1, steal1 = cpu_jiffies()
    per = elapsed / iters
    return {"precision": precision, "iters": iters, "ms_per_step": 1e3 * per, "img_per_s": w["batch"] / per,
            "cpu_ms_per_step": 1e3 * cpu / iters, "img_per_cpu_s": w["batch"] * iters / cpu if cpu > 0 else None,
            "others_cores": max(0.0, ((busy1 - busy0) / hz - cpu) / elapsed),
            "steal_cores": (steal1 - steal0) / hz / elapsed, "load1": os.getloadavg()[0]}


def serve(args):
    w = parse_workload(args.workload)
    if w["train"] and args.engine in INFERENCE_ONLY:
        sys.exit(f"cpu_engines: {args.engine} is measured for inference only")
    pin = args.pin == "cores"
    if args.engine == "onnxruntime":
        engine = OnnxRuntimeEngine(w, args.threads, args.onnx, pin)
    elif args.engine == "openvino":
        engine = OpenVinoEngine(w, args.threads, args.onnx, pin)
    else:
        engine = TorchEngine(args.engine, w, args.threads)
    ready = {"engine": args.engine, "workload": w["tag"], "versions": versions(args.engine), "precisions": {}}
    for p in args.precisions.split(","):
        ready["precisions"][p] = engine.prepare(p)
    print("@ready " + json.dumps(ready), flush=True)
    for line in sys.stdin:
        cmd = line.split()
        if not cmd:
            continue
        if cmd[0] == "quit":
            break
        if cmd[0] == "run":
            res = timed_run(engine, cmd[1], w, float(cmd[2]))
            res.update(engine="%s" % args.engine, workload=w["tag"], batch=w["batch"], threads=args.threads)
            print("@result " + json.dumps(res), flush=True)
        elif cmd[0] == "profile":
            res = engine.profile(cmd[1], int(cmd[2]))
            res.update(engine=args.engine, workload=w["tag"], precision=cmd[1])
            print("@profile " + json.dumps(res), flush=True)
        else:
            print("@error " + json.dumps({"unknown command": line.strip()}), flush=True)


def first_prediction(args):
    """PyTorch's time to first prediction: imports, build resnet18(), one 224x224 image. The
    driver times the process from spawn to this line."""
    import resource
    import torch
    import torchvision
    torch.set_num_threads(args.threads)
    m = torchvision.models.resnet18(num_classes=1000).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        best = int(m(x).argmax())
    print("@result " + json.dumps({"engine": "pytorch", "workload": "first_prediction", "class": best,
                                   "torch": torch.__version__,
                                   "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}),
          flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--engine", choices=ENGINES + ("pytorch_first_prediction",))
    ap.add_argument("--workload")
    ap.add_argument("--precisions", default="f32")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--pin", choices=["cores", "none"], default="cores")
    ap.add_argument("--onnx", help="the exported model (onnxruntime, openvino)")
    ap.add_argument("--export-onnx", metavar="FILE", help="export the workload's model to FILE and exit")
    args = ap.parse_args()
    if args.export_onnx:
        w = parse_workload(args.workload)
        export_onnx(w["stem"], w["classes"], args.export_onnx)
        return
    if args.engine == "pytorch_first_prediction":
        return first_prediction(args)
    if not args.engine or not args.workload:
        ap.error("--engine and --workload are required")
    serve(args)


if __name__ == "__main__":
    main()
