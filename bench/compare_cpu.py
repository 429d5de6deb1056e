#!/usr/bin/env python3
"""beamlet's CPU backend against today's CPU engines on the same machine, in one run.

Engines: beamlet (build/bench_cpu, f32, and bf16 for inference: --precision=bf16 runs its
convolutions in bf16 with f32 accumulation, on CPUs with AVX512-BF16 or AMX), PyTorch eager (NCHW and channels-last), torch.compile,
ONNX Runtime and OpenVINO (inference only), each in f32 and bf16 where it offers bf16, on
CIFAR ResNet-18 inference at batch 64, ResNet-18 224x224 inference at batch 16 and 1, and CIFAR
ResNet-18 training at batch 128 (SGD, Nesterov momentum). Every engine runs with the same thread
count on the same cores, bound alike (--pin). The development machine is shared, so the run
alternates engines in rounds (the order rotates each round), keeps each engine's best round,
and records the load: uptime, and for every timed run how many cores other processes used
meanwhile. Prints each engine's images/s and beamlet over the best other engine, measures
time to first prediction (process start to logits of one 224x224 image) for beamlet and
PyTorch, and the CPU's f32 and bf16 peaks (bench_cpu_ops --peak), and saves
bench/results/cpu-<date>.json.

    .venv/bin/python bench/compare_cpu.py [--threads=2] [--rounds=3] [--min-seconds=2]
        [--workloads=TAG,...] [--engines=NAME,...] [--precisions=f32,bf16] [--first-rounds=7]
        [--pin=cores|none] [--build=build] [--out=FILE]

Needs the benchmark venv (scripts/setup.sh --bench) and a build (bench_cpu, bench_cpu_ops).
"""
import argparse
import datetime
import importlib.util
import json
import os
import platform
import resource
import shlex
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import cpu_engines  # noqa: E402  (the engine workers; also run as their own processes)

WORKLOADS = ["cifar_resnet18_infer_b64", "imagenet_resnet18_infer_b16", "imagenet_resnet18_infer_b1",
             "cifar_resnet18_train_b128"]
ALL_ENGINES = ("beamlet",) + cpu_engines.ENGINES
LABELS = {"beamlet": "beamlet", "pytorch_eager_nchw": "PyTorch eager NCHW",
          "pytorch_eager_channels_last": "PyTorch eager channels-last", "torch_compile": "torch.compile",
          "onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


# ---- the machine and its load ------------------------------------------------------------------

def run_text(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def machine():
    lscpu = {}
    for line in run_text(["lscpu"]).splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            lscpu[k.strip()] = v.strip()
    flags = set(lscpu.get("Flags", "").split())
    mem_kb = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kb = int(line.split()[1])
    return {"cpu": lscpu.get("Model name", platform.processor()), "logical_cpus": os.cpu_count(),
            "threads_per_core": lscpu.get("Thread(s) per core"), "hypervisor": lscpu.get("Hypervisor vendor"),
            "l2": lscpu.get("L2 cache"), "l3": lscpu.get("L3 cache"), "memory_gib": round(mem_kb / 2**20, 1),
            "isa": sorted(flags & {"avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx512_bf16",
                                   "amx_bf16", "amx_tile", "avx512_fp16"}),
            "kernel": platform.release()}


def load_now():
    return {"uptime": run_text(["uptime"]), "load_average": [round(x, 2) for x in os.getloadavg()]}


# ---- running things alike ----------------------------------------------------------------------

class Runner:
    """Starts every process with the same cores, thread count and binding."""

    def __init__(self, args):
        allowed = sorted(os.sched_getaffinity(0))
        if args.threads > len(allowed):
            sys.exit(f"compare_cpu: --threads={args.threads} but only {len(allowed)} CPUs are available")
        self.cpus = allowed[:args.threads]
        self.threads = args.threads
        self.pin = args.pin
        self.env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), BEAMLET_NUM_THREADS=str(args.threads),
                        CUDA_VISIBLE_DEVICES="", PYTHONUNBUFFERED="1")
        if args.pin == "cores":
            # OpenMP engines (beamlet, PyTorch, inductor's code) bind one thread per core;
            # ONNX Runtime and OpenVINO get the same through their own options (cpu_engines.py).
            self.env.update(OMP_PROC_BIND="close", OMP_PLACES="cores")

    def describe(self):
        how = ("one thread per core: OMP_PROC_BIND=close OMP_PLACES=cores (beamlet, PyTorch, torch.compile), "
               "ONNX Runtime session.intra_op_thread_affinities, OpenVINO ENABLE_CPU_PINNING"
               if self.pin == "cores" else "not bound (the OS schedules threads within the cpu set)")
        return {"count": self.threads, "cpus": self.cpus, "binding": how,
                "per_engine": {"beamlet": "BEAMLET_NUM_THREADS / bl_cpu_set_num_threads (OpenMP)",
                               "pytorch": "torch.set_num_threads (OpenMP)",
                               "onnxruntime": "intra_op_num_threads, inter_op_num_threads=1, sequential",
                               "openvino": "INFERENCE_NUM_THREADS, NUM_STREAMS=1 (TBB)"}}

    def popen(self, cmd, **kw):
        cpus = set(self.cpus)
        return subprocess.Popen(cmd, env=self.env, preexec_fn=lambda: os.sched_setaffinity(0, cpus), **kw)


def read_tagged(proc, tag, what):
    """Reads the worker's stdout up to its next line starting with `tag`; dies if it exits."""
    for line in proc.stdout:
        if line.startswith(tag + " "):
            return json.loads(line[len(tag) + 1:])
        if line.startswith("@error"):
            sys.exit(f"compare_cpu: {what}: {line.strip()}")
    proc.wait()
    sys.exit(f"compare_cpu: {what} exited with status {proc.returncode} before answering")


def last_json_line(runner, cmd, what):
    """Runs cmd to completion; returns (its last JSON line, seconds from spawn to that line,
    cores other processes used meanwhile)."""
    busy0, _ = cpu_engines.cpu_jiffies()
    child0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    p = runner.popen(cmd, stdout=subprocess.PIPE, text=True)
    res, t_line = None, None
    for line in p.stdout:
        if line.startswith("{") or line.startswith("@result "):
            res, t_line = json.loads(line[line.index("{"):]), time.perf_counter() - t0
    if p.wait() != 0 or res is None:
        sys.exit(f"compare_cpu: {what}: {shlex.join(cmd)} failed with status {p.returncode}")
    wall = time.perf_counter() - t0
    child1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    busy1, _ = cpu_engines.cpu_jiffies()
    own = (child1.ru_utime + child1.ru_stime) - (child0.ru_utime + child0.ru_stime)
    others = max(0.0, ((busy1 - busy0) / os.sysconf("SC_CLK_TCK") - own) / wall)
    return res, t_line, others


class Worker:
    """One engine's long-lived process for one workload (cpu_engines.py)."""

    def __init__(self, runner, engine, workload, precisions, onnx):
        cmd = [sys.executable, os.path.join(HERE, "cpu_engines.py"), f"--engine={engine}",
               f"--workload={workload}", f"--precisions={','.join(precisions)}", f"--threads={runner.threads}",
               f"--pin={runner.pin}"]
        if onnx:
            cmd.append(f"--onnx={onnx}")
        self.name = f"{engine} {workload}"
        self.proc = runner.popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def ready(self):
        return read_tagged(self.proc, "@ready", self.name)

    def ask(self, command, tag="@result"):
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return read_tagged(self.proc, tag, self.name)

    def close(self):
        try:
            self.proc.stdin.write("quit\n")
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        self.proc.wait()


# ---- the comparison ----------------------------------------------------------------------------

def onnx_for(args, runner, w):
    os.makedirs(args.models, exist_ok=True)
    path = os.path.join(args.models, f"{w['stem']}_resnet18_opset17_f32.onnx")
    if not os.path.exists(path):
        print(f"exporting {path}", file=sys.stderr)
        p = runner.popen([sys.executable, os.path.join(HERE, "cpu_engines.py"), f"--workload={w['tag']}",
                          f"--export-onnx={path}"])
        if p.wait() != 0:
            sys.exit(f"compare_cpu: exporting {path} failed")
    return path


def measure_workload(args, runner, tag, versions):
    w = cpu_engines.parse_workload(tag)
    bench = os.path.join(args.build, "bench_cpu")
    entries, workers, ready = [], {}, {}
    for engine in args.engines:
        if w["train"] and engine in cpu_engines.INFERENCE_ONLY:
            continue
        precs = [p for p in cpu_engines.PRECISIONS[engine] if p in args.precisions]
        if engine == "beamlet" and w["train"]:
            precs = [p for p in precs if p == "f32"]  # beamlet's bf16 is inference-only
        if not precs:
            continue
        entries += [(engine, p) for p in precs]
        if engine != "beamlet":
            onnx = onnx_for(args, runner, w) if engine in cpu_engines.INFERENCE_ONLY else None
            workers[engine] = Worker(runner, engine, tag, precs, onnx)
    try:
        for engine, wk in workers.items():  # they prepare concurrently; nothing is timed yet
            ready[engine] = wk.ready()
            versions.setdefault(engine, ready[engine]["versions"])
            print(f"  ready: {tag} {engine}", file=sys.stderr)
        runs = {e: [] for e in entries}
        for r in range(args.rounds):
            k = r % len(entries)
            for engine, prec in entries[k:] + entries[:k]:
                if engine == "beamlet":
                    res, _, others = last_json_line(runner, [bench, f"--threads={runner.threads}",
                                                             f"--min-seconds={args.min_seconds}", f"--only={tag}",
                                                             f"--precision={prec}"],
                                                    "bench_cpu")
                    res.setdefault("precision", "f32")  # what bench_cpu says it ran
                    res.update(others_cores=others, load1=os.getloadavg()[0])
                else:
                    res = workers[engine].ask(f"run {prec} {args.min_seconds}")
                runs[(engine, prec)].append(res)
                print(f"  round {r + 1} {tag:28s} {engine:28s} {prec:4s} {res['img_per_s']:8.1f} img/s  "
                      f"(others used {res['others_cores']:.2f} cores, load {res['load1']:.1f})", file=sys.stderr)
    finally:
        for wk in workers.values():
            wk.close()
    return summarize(args, w, entries, runs, ready)


def summarize(args, w, entries, runs, ready):
    key = args.key
    gflop_per_img = cpu_engines.gflop_per_image(w)
    out = {"workload": w["tag"], "batch": w["batch"], "train": w["train"], "gflop_per_img": gflop_per_img,
           "engines": {}}
    best = {}
    for engine, prec in entries:
        rs = runs[(engine, prec)]
        b = max(rs, key=lambda r: r[key])
        best[(engine, prec)] = b[key]
        rec = {"img_per_s": b[key], "ms_per_step": b["ms_per_step"], "img_per_s_all_rounds": [r[key] for r in rs],
               "others_cores_in_best_round": round(b["others_cores"], 3),
               "others_cores_all_rounds": [round(r["others_cores"], 3) for r in rs]}
        if engine == "beamlet":
            rec["precision_ran"] = b["precision"]
            rec["new_primitives_in_timed_steps"] = b.get("new_primitives_in_timed_steps")
        else:
            rec.update(ready[engine]["precisions"][prec])
        rec["gflops"] = b[key] * gflop_per_img
        out["engines"].setdefault(engine, {})[prec] = rec
    bl = best.get(("beamlet", "f32"))
    for prec in ("f32", "bf16"):
        others = [(v, e) for (e, p), v in best.items() if e != "beamlet" and p == prec]
        if others:
            v, e = max(others)
            out[f"best_other_{prec}"] = {"engine": e, "img_per_s": v}
            if bl:
                out[f"beamlet_f32_over_best_other_{prec}"] = bl / v
            if prec != "f32" and best.get(("beamlet", prec)):
                out[f"beamlet_{prec}_over_best_other_{prec}"] = best[("beamlet", prec)] / v
    return out


def first_prediction(args, runner):
    """Process start to logits for one 224x224 image, alternating beamlet and PyTorch launches."""
    bench = os.path.join(args.build, "bench_cpu")
    cmds = {"beamlet": [bench, "--first"],
            "pytorch": [sys.executable, os.path.join(HERE, "cpu_engines.py"), "--engine=pytorch_first_prediction",
                        f"--threads={runner.threads}"]}
    launches = {k: [] for k in cmds}
    best = {}
    for r in range(args.first_rounds):
        for impl in (("beamlet", "pytorch") if r % 2 == 0 else ("pytorch", "beamlet")):
            res, secs, others = last_json_line(runner, cmds[impl], f"first prediction ({impl})")
            res["seconds_to_first_prediction"] = secs
            res["others_cores"] = others
            launches[impl].append(round(secs, 4))
            if impl not in best or secs < best[impl]["seconds_to_first_prediction"]:
                best[impl] = res
            print(f"  first prediction {impl:8s} {secs:.3f} s (others used {others:.2f} cores)", file=sys.stderr)
    for impl, secs in launches.items():
        best[impl]["all_launches_s"] = secs
        best[impl]["median_s"] = statistics.median(secs)
    best["speedup_best"] = best["pytorch"]["seconds_to_first_prediction"] / best["beamlet"]["seconds_to_first_prediction"]
    best["speedup_of_medians"] = best["pytorch"]["median_s"] / best["beamlet"]["median_s"]
    best["memory_ratio"] = best["pytorch"]["peak_rss_mb"] / best["beamlet"]["peak_rss_mb"]
    return best


def measure_peaks(args, runner):
    res, _, others = last_json_line(runner, [os.path.join(args.build, "bench_cpu_ops"), "--peak",
                                             f"--threads={runner.threads}"], "bench_cpu_ops --peak")
    res["others_cores"] = others
    return res


# ---- printing ----------------------------------------------------------------------------------

def fmt(v, width=8):
    return f"{v:{width}.1f}" if isinstance(v, (int, float)) else f"{'-':>{width}s}"


def print_report(report):
    pk = report["peak_gflops"]
    print(f"\nbeamlet against today's CPU engines: {report['threads']['count']} threads on cpus "
          f"{report['threads']['cpus']}, {report['machine']['cpu']}, images/s (wall), best of "
          f"{report['rounds']} rounds")
    print(f"measured peak: f32 {pk['f32']:.0f} GFLOP/s, bf16 {pk['bf16'] or 0:.0f} GFLOP/s; load "
          f"{report['load_start']['load_average']} -> {report['load_end']['load_average']}")
    for r in report["results"]:
        print(f"\n{r['workload']} (batch {r['batch']}, {r['gflop_per_img']:.2f} GFLOP/img)")
        print(f"  {'engine':30s} {'f32':>8s} {'bf16':>8s} {'%peak':>6s}  precision ran (f32 / bf16), "
              f"others' cores in best round")
        for engine, precs in r["engines"].items():
            f, b = precs.get("f32", {}), precs.get("bf16", {})
            pct = f.get("pct_of_peak")
            ran = " / ".join(p.get("precision_ran", "-") for p in (f, b) if p)
            others = " / ".join(f"{p['others_cores_in_best_round']:.2f}" for p in (f, b) if p)
            print(f"  {LABELS[engine]:30s} {fmt(f.get('img_per_s'))} {fmt(b.get('img_per_s'))} "
                  f"{fmt(pct, 5)}%  {ran}; {others}")
        for ours, prec in (("f32", "f32"), ("f32", "bf16"), ("bf16", "bf16")):
            if f"beamlet_{ours}_over_best_other_{prec}" in r:
                bo = r[f"best_other_{prec}"]
                print(f"  beamlet {ours} / best other {prec}: {r[f'beamlet_{ours}_over_best_other_{prec}']:.2f}x "
                      f"({LABELS[bo['engine']]}, {bo['img_per_s']:.1f} img/s)")
    fp = report.get("first_prediction")
    if fp:
        print(f"\nfirst prediction (224x224, process start to logits): beamlet "
              f"{fp['beamlet']['seconds_to_first_prediction']:.3f} s best / {fp['beamlet']['median_s']:.3f} s median, "
              f"PyTorch {fp['pytorch']['seconds_to_first_prediction']:.3f} / {fp['pytorch']['median_s']:.3f} s: "
              f"{fp['speedup_best']:.1f}x best, {fp['speedup_of_medians']:.1f}x medians; peak RSS "
              f"{fp['beamlet']['peak_rss_mb']:.0f} MB vs {fp['pytorch']['peak_rss_mb']:.0f} MB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--models", default=None, help="where the exported ONNX files go (default BUILD/bench_models)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--min-seconds", type=float, default=2.0, help="timed seconds per engine per round")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--engines", default=",".join(ALL_ENGINES))
    ap.add_argument("--precisions", default="f32,bf16")
    ap.add_argument("--pin", choices=["cores", "none"], default="cores")
    ap.add_argument("--metric", choices=["wall", "cpu"], default="wall",
                    help="throughput per second of wall time, or per CPU-second of the process")
    ap.add_argument("--first-rounds", type=int, default=7,
                    help="launches per side for time to first prediction (0: skip)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    args.models = args.models or os.path.join(args.build, "bench_models")
    args.engines = [e for e in args.engines.split(",") if e]
    args.precisions = [p for p in args.precisions.split(",") if p]
    args.key = "img_per_cpu_s" if args.metric == "cpu" else "img_per_s"
    for e in args.engines:
        if e not in ALL_ENGINES:
            ap.error(f"--engines: unknown engine {e!r} (known: {', '.join(ALL_ENGINES)})")
    for tool in ("bench_cpu", "bench_cpu_ops"):
        if not os.access(os.path.join(args.build, tool), os.X_OK):
            sys.exit(f"compare_cpu: {args.build}/{tool} not found; build first (cmake --build {args.build})")
    missing = [m for m in ("torch", "torchvision", "onnx", "onnxruntime", "openvino")
               if importlib.util.find_spec(m) is None]
    if missing:
        sys.exit(f"compare_cpu: {sys.executable} lacks {', '.join(missing)}; run scripts/setup.sh --bench and "
                 f"use .venv/bin/python")

    runner = Runner(args)
    started = datetime.datetime.now(datetime.timezone.utc)
    load_start = load_now()
    peaks = [measure_peaks(args, runner)]
    versions = {"beamlet": run_text(["git", "-C", ROOT, "describe", "--always", "--dirty"]),
                "beamlet_onednn": "libdnnl " + (run_text(["dpkg-query", "-W", "-f=${Version}", "libdnnl2"]) or "?")}
    results = []
    for tag in [t for t in args.workloads.split(",") if t]:
        results.append(measure_workload(args, runner, tag, versions))
    first = first_prediction(args, runner) if args.first_rounds > 0 else None
    peaks.append(measure_peaks(args, runner))
    peak = {"f32": max(p["f32_gflops"] for p in peaks), "bf16": max((p["bf16_gflops"] or 0) for p in peaks) or None,
            "measured_by": "bench_cpu_ops --peak (AVX-512 FMA loop; vdpbf16ps loop), best of the start and end "
                           "of the run", "runs": peaks}
    # % of peak against the best peak seen in the run (the start one may read low under load).
    for r in results:
        for engine, precs in r["engines"].items():
            for prec, rec in precs.items():
                if rec.get("gflops") and peak.get(prec):
                    rec["pct_of_peak"] = 100.0 * rec["gflops"] / peak[prec]
    report = {"date": started.isoformat(timespec="seconds"),
              "command": shlex.join([os.path.relpath(sys.executable, ROOT)] + sys.argv),
              "machine": machine(), "load_start": load_start, "load_end": load_now(),
              "note": "Shared development machine: engines alternate in rounds and each keeps its best round; "
                      "others_cores is the CPU other processes used during a timed run (in cores).",
              "threads": runner.describe(), "versions": versions, "rounds": args.rounds,
              "min_seconds": args.min_seconds,
              "metric": f"{args.key}: images per {'CPU-second of the process' if args.metric == 'cpu' else 'second of wall time'}, best of the rounds",
              "flops_note": "FLOPs = 2 x multiply-adds of convolutions and classifier; training = 3 x forward. "
                            "pct_of_peak uses the f32 peak for f32 runs and the bf16 peak for bf16 runs.",
              "peak_gflops": peak, "results": results, "first_prediction": first}
    print_report(report)
    out = args.out or os.path.join(HERE, "results", f"cpu-{started.strftime('%Y-%m-%d')}.json")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(tmp, out)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
