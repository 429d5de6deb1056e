#!/usr/bin/env python3
"""beamlet's CPU backend against PyTorch eager on the same machine, in one run.

Runs bench_cpu (beamlet) and the same workloads in PyTorch with the same thread count, each
in its own process, alternating beamlet / PyTorch (NCHW) / PyTorch (channels-last) for
`--rounds` rounds and keeping each side's best, because the development machine is shared and
its load changes by the minute. Ratios are beamlet over the faster PyTorch layout. Also
measures time to first prediction (process start to first logits, including the imports)
and peak RSS for one 224x224 image, and the CPU's f32 FMA peak, to say how far each result is
from it. Prints a table and saves bench/results/cpu-<date>.json.

    /usr/bin/python3 bench/compare_cpu.py [--build=build] [--threads=N] [--rounds=2]
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

WORKLOADS = [  # (name, batch, train)
    ("cifar_resnet18_infer", 1, False),
    ("cifar_resnet18_infer", 64, False),
    ("imagenet_resnet18_infer", 1, False),
    ("imagenet_resnet18_infer", 16, False),
    ("cifar_resnet18_train", 128, True),
]


# ---- the PyTorch side (run in a child process: `compare_cpu.py --torch-worker ...`) ----------

def torch_model(name):
    import torch
    import torchvision
    if name.startswith("cifar"):
        m = torchvision.models.resnet18(num_classes=10)
        # The CIFAR stem beamlet's BL_RESNET_STEM_CIFAR builds: 3x3/1 convolution, no max-pool.
        m.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = torch.nn.Identity()
        return m, 32, 10
    return torchvision.models.resnet18(num_classes=1000), 224, 1000


def torch_worker(args):
    import torch
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    m, hw, classes = torch_model(args.workload)
    x = torch.randn(args.batch, 3, hw, hw)
    if args.channels_last:
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if args.train:
        m.train()
        opt = torch.optim.SGD(m.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4, nesterov=True)
        y = torch.arange(args.batch) % classes

        def step():
            opt.zero_grad(set_to_none=True)
            loss = torch.nn.functional.cross_entropy(m(x), y)
            loss.backward()
            opt.step()
    else:
        m.eval()

        def step():
            with torch.inference_mode():
                m(x)
    for _ in range(2):
        step()
    iters, start, cpu_start = 0, time.perf_counter(), time.process_time()
    while True:
        step()
        iters += 1
        elapsed = time.perf_counter() - start
        if iters >= 3 and elapsed >= args.min_seconds:
            break
    per = elapsed / iters
    cpu_per = (time.process_time() - cpu_start) / iters
    print(json.dumps({"impl": "pytorch", "layout": "channels_last" if args.channels_last else "nchw",
                      "workload": args.workload, "batch": args.batch, "threads": args.threads,
                      "iters": iters, "ms_per_step": 1e3 * per, "img_per_s": args.batch / per,
                      "cpu_ms_per_step": 1e3 * cpu_per, "img_per_cpu_s": args.batch / cpu_per}), flush=True)


def torch_first(args):
    """Process start to the first prediction: imports, model build, one 224x224 image."""
    import resource
    import torch
    import torchvision
    torch.set_num_threads(args.threads)
    m = torchvision.models.resnet18(num_classes=1000).eval()
    x = torch.randn(1, 3, 224, 224)
    with torch.inference_mode():
        best = int(m(x).argmax())
    print(json.dumps({"impl": "pytorch", "workload": "first_prediction", "class": best,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0}), flush=True)


# ---- the driver ------------------------------------------------------------------------------

def run_json(cmd, env=None):
    """Runs cmd, returns (last JSON line, seconds from spawn to that line)."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    line, t_line = None, None
    for raw in p.stdout:
        if raw.startswith("{"):
            line, t_line = json.loads(raw), time.perf_counter() - t0
    if p.wait() != 0:
        sys.exit(f"compare_cpu: {' '.join(cmd)} failed with status {p.returncode}")
    return line, t_line


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for l in out.splitlines():
            if l.startswith("Model name:"):
                return l.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def versions():
    import torch
    import torchvision
    git = subprocess.run(["git", "-C", ROOT, "describe", "--always", "--dirty"], capture_output=True,
                         text=True).stdout.strip()
    return {"beamlet": git, "torch": torch.__version__, "torchvision": torchvision.__version__,
            "torch_mkldnn": torch.backends.mkldnn.is_available(), "python": platform.python_version(),
            "onednn": "libdnnl " + (subprocess.run(["dpkg-query", "-W", "-f=${Version}", "libdnnl2"],
                                                 capture_output=True, text=True).stdout or "?")}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--min-seconds", type=float, default=3.0)
    ap.add_argument("--only", default=None, help="substring of workload_bN to run, or first_prediction")
    ap.add_argument("--metric", choices=["wall", "cpu"], default=None,
                    help="throughput from wall time or, for one thread on a shared machine, from CPU "
                         "time (default: cpu for --threads=1, else wall)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--first-rounds", type=int, default=5,
                    help="process launches per side for time to first prediction, best kept (a VM's "
                         "first launch after a pause is often 2-3x slower for both sides)")
    ap.add_argument("--ghz", type=float, default=3.7,
                    help="clock for the nominal peak (AMD EPYC Zen 4: 3.7 GHz boost)")
    ap.add_argument("--flops-per-cycle", type=float, default=32.0,
                    help="f32 FLOPs per cycle per core (Zen 4: two 256-bit FMA pipes = 32)")
    # Worker modes (internal).
    ap.add_argument("--torch-worker", action="store_true")
    ap.add_argument("--torch-first", action="store_true")
    ap.add_argument("--workload")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--train", action="store_true")
    ap.add_argument("--channels-last", action="store_true")
    args = ap.parse_args()
    if args.torch_worker:
        return torch_worker(args)
    if args.torch_first:
        return torch_first(args)

    metric = args.metric or ("cpu" if args.threads == 1 else "wall")
    key = "img_per_cpu_s" if metric == "cpu" else "img_per_s"
    bench = os.path.join(args.build, "bench_cpu")
    py = sys.executable
    me = os.path.abspath(__file__)
    t = args.threads
    env = dict(os.environ, BEAMLET_NUM_THREADS=str(t), OMP_NUM_THREADS=str(t))
    load_start = os.getloadavg()
    started = datetime.datetime.now(datetime.timezone.utc)

    # The nominal peak (cores x clock x FLOPs/cycle) is the yardstick; the measured FMA loop is
    # recorded beside it but reads low whenever the shared machine is busy.
    measured_peak = max(run_json([bench, "--peak", f"--threads={t}"], env)[0]["gflops"] for _ in range(3))
    peak = t * args.ghz * args.flops_per_cycle
    rows = []
    for name, batch, train in WORKLOADS:
        tag = f"{name}_b{batch}"
        if args.only and args.only not in tag:
            continue
        best = {}
        for r in range(args.rounds):
            runs = {
                "beamlet": [bench, f"--threads={t}", f"--min-seconds={args.min_seconds}", f"--only={tag}"],
                "pytorch_nchw": [py, me, "--torch-worker", f"--workload={name}", f"--batch={batch}",
                                 f"--threads={t}", f"--min-seconds={args.min_seconds}"] + (["--train"] if train else []),
            }
            runs["pytorch_channels_last"] = runs["pytorch_nchw"] + ["--channels-last"]
            for impl, cmd in runs.items():
                res, _ = run_json(cmd, env)
                print(f"  round {r + 1} {tag:30s} {impl:22s} {res['img_per_s']:9.1f} img/s wall "
                      f"{res['img_per_cpu_s']:9.1f} img/cpu-s", file=sys.stderr)
                if impl not in best or res[key] > best[impl][key]:
                    best[impl] = res
        b = best["beamlet"]
        torch_best = max(best["pytorch_nchw"][key], best["pytorch_channels_last"][key])
        rows.append({"workload": name, "batch": batch, "train": train, "metric": key,
                     "beamlet_img_per_s": b[key],
                     "pytorch_nchw_img_per_s": best["pytorch_nchw"][key],
                     "pytorch_channels_last_img_per_s": best["pytorch_channels_last"][key],
                     "ratio_vs_best_pytorch": b[key] / torch_best,
                     "beamlet_wall_img_per_s": b["img_per_s"],
                     "pytorch_best_wall_img_per_s": max(best["pytorch_nchw"]["img_per_s"],
                                                        best["pytorch_channels_last"]["img_per_s"]),
                     "gflop_per_img": b["gflop_per_img"], "beamlet_gflops": b[key] * b["gflop_per_img"],
                     "beamlet_pct_of_peak": 100.0 * b[key] * b["gflop_per_img"] / peak,
                     "pytorch_best_pct_of_peak": 100.0 * torch_best * b["gflop_per_img"] / peak,
                     "new_primitives_in_timed_steps": b["new_primitives_in_timed_steps"]})

    first = {}
    if not args.only or args.only == "first_prediction":
        launches = {"beamlet": [], "pytorch": []}
        for r in range(args.first_rounds):
            for impl, cmd in (("beamlet", [bench, "--first"]), ("pytorch", [py, me, "--torch-first", f"--threads={t}"])):
                res, secs = run_json(cmd, env)
                res["seconds_to_first_prediction"] = secs
                launches[impl].append(secs)
                if impl not in first or secs < first[impl]["seconds_to_first_prediction"]:
                    first[impl] = res
        for impl, secs in launches.items():
            first[impl]["all_launches_s"] = secs
            first[impl]["median_s"] = statistics.median(secs)
        first["speedup"] = first["pytorch"]["seconds_to_first_prediction"] / first["beamlet"]["seconds_to_first_prediction"]
        first["speedup_of_medians"] = first["pytorch"]["median_s"] / first["beamlet"]["median_s"]
        first["memory_ratio"] = first["pytorch"]["peak_rss_mb"] / first["beamlet"]["peak_rss_mb"]

    report = {"date": started.isoformat(timespec="seconds"),
              "machine": {"cpu": cpu_model(), "logical_cpus": os.cpu_count(), "kernel": platform.release()},
              "versions": versions(), "threads": t, "rounds": args.rounds,
              "metric": f"{key}: images per {'CPU-second of the process (all threads)' if metric == 'cpu' else 'second of wall time'}, best of the rounds",
              "load_average_start": load_start, "load_average_end": os.getloadavg(),
              "peak_f32_gflops_nominal": peak,
              "peak_nominal_basis": f"{t} cores x {args.ghz} GHz x {args.flops_per_cycle:g} FLOP/cycle",
              "peak_f32_gflops_measured": measured_peak,
              "flops_note": "FLOPs = 2 x multiply-adds of convolutions and classifier (the quoted 0.56 / 1.82 "
                            "'GFLOPs' of CIFAR / ImageNet ResNet-18 are multiply-adds); training = 3 x forward",
              "results": rows, "first_prediction": first}
    print(f"\nbeamlet vs PyTorch {report['versions']['torch']} eager, {t} threads, {key}, {report['machine']['cpu']}, "
          f"f32 peak {peak:.0f} GFLOP/s nominal ({measured_peak:.0f} measured), load {load_start[0]:.1f} -> {report['load_average_end'][0]:.1f}")
    print(f"{'workload':26s} {'batch':>5s} {'beamlet':>9s} {'pt nchw':>9s} {'pt cl':>9s} {'ratio':>6s} "
          f"{'bl %peak':>8s} {'pt %peak':>8s}")
    for r in rows:
        print(f"{r['workload']:26s} {r['batch']:5d} {r['beamlet_img_per_s']:9.1f} {r['pytorch_nchw_img_per_s']:9.1f} "
              f"{r['pytorch_channels_last_img_per_s']:9.1f} {r['ratio_vs_best_pytorch']:6.2f} "
              f"{r['beamlet_pct_of_peak']:7.1f}% {r['pytorch_best_pct_of_peak']:7.1f}%")
    if first:
        print(f"first prediction (224x224, process start to logits): beamlet "
              f"{first['beamlet']['seconds_to_first_prediction']:.3f} s, PyTorch "
              f"{first['pytorch']['seconds_to_first_prediction']:.3f} s ({first['speedup']:.1f}x; medians "
              f"{first['beamlet']['median_s']:.3f} vs {first['pytorch']['median_s']:.3f} s, "
              f"{first['speedup_of_medians']:.1f}x); peak RSS "
              f"{first['beamlet']['peak_rss_mb']:.0f} MB vs {first['pytorch']['peak_rss_mb']:.0f} MB")
    out = args.out or os.path.join(HERE, "results", f"cpu-{started.strftime('%Y-%m-%d')}.json")
    tmp = out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(report, f, indent=1)
        f.write("\n")
    os.replace(tmp, out)
    print(f"saved {out}")


if __name__ == "__main__":
    main()
