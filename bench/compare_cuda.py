#!/usr/bin/env python3
"""Runs bench_cuda's workloads in PyTorch on the same GPU, in the same run, and prints ratios.

    python3 bench/compare_cuda.py --bench=build-gpu/bench_cuda      # runs bench_cuda first
    python3 bench/compare_cuda.py --beamlet=bench_beamlet.json       # uses its JSON

PyTorch variants per workload: eager bf16 autocast channels-last (the training target's
baseline), torch.compile of the same (the inference target's baseline) and eager f32
channels-last with TF32 off (like for like with beamlet's f32). Ratios are beamlet's graph
replay over PyTorch's throughput (for batch 1: PyTorch's latency over beamlet's). The result
(both sides, versions, GPU, driver, date) goes to bench/results/ as JSON.
"""
import argparse
import contextlib
import datetime
import json
import os
import subprocess
import sys
import time

# PyTorch is imported in main(), after the flags: `--help` and `--list` work without it (the
# GPU check's dry run reads them on machines without PyTorch).
torch = nn = torchvision = None

WORKLOADS = [
    # name, training, stem, classes, image size, batch
    ("cifar_resnet18_train_b512", True, "cifar", 10, 32, 512),
    ("cifar_resnet18_infer_b1", False, "cifar", 10, 32, 1),
    ("cifar_resnet18_infer_b64", False, "cifar", 10, 32, 64),
    ("cifar_resnet18_infer_b256", False, "cifar", 10, 32, 256),
    ("imagenet_resnet18_infer_b64", False, "imagenet", 1000, 224, 64),
    ("imagenet_resnet18_infer_b256", False, "imagenet", 1000, 224, 256),
]
VARIANTS = ["eager_bf16_cl", "compile_bf16_cl", "eager_f32_cl"]
TARGETS = {  # issue 4: beamlet / PyTorch at least
    "cifar_resnet18_train_b512": ("eager_bf16_cl", 1.5),
    "cifar_resnet18_infer_b256": ("compile_bf16_cl", 1.2),
    "cifar_resnet18_infer_b1": ("eager_bf16_cl", 2.0),
}


def make_model(stem, classes):
    m = torchvision.models.resnet18(num_classes=classes)
    if stem == "cifar":  # beamlet's CIFAR stem: 3x3/1 convolution, no max-pool
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
    return m


def measure(fn, batch, iters, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    lat = []
    t0 = time.perf_counter()
    for _ in range(iters):
        ts = time.perf_counter()
        fn()
        if batch == 1:
            torch.cuda.synchronize()
        lat.append((time.perf_counter() - ts) * 1e3)
    torch.cuda.synchronize()
    elapsed = time.perf_counter() - t0
    out = {"img_per_s": batch * iters / elapsed, "ms_per_step": elapsed * 1e3 / iters}
    if batch == 1:
        out["latency_ms_median"] = sorted(lat)[iters // 2]
    return out


def run_variant(w, variant, iters, warmup):
    name, training, stem, classes, size, batch = w
    bf16 = "bf16" in variant
    torch.backends.cudnn.benchmark = True
    torch.backends.cudnn.allow_tf32 = False  # f32 means f32, as in beamlet
    torch.backends.cuda.matmul.allow_tf32 = False
    model = make_model(stem, classes).cuda().to(memory_format=torch.channels_last)
    model.train(training)
    x = torch.randn(batch, 3, size, size, device="cuda").to(memory_format=torch.channels_last)
    y = torch.randint(0, classes, (batch,), device="cuda")
    fwd = torch.compile(model) if variant.startswith("compile") else model
    ctx = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if bf16 else contextlib.nullcontext
    if training:
        opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True,
                              weight_decay=5e-4)
        crit = nn.CrossEntropyLoss(label_smoothing=0.1)

        def step():
            with ctx():
                loss = crit(fwd(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    else:
        def step():
            with torch.inference_mode(), ctx():
                fwd(x)
    return measure(step, batch, iters, warmup)


def versions():
    gpu = torch.cuda.get_device_name(0)
    try:
        driver = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                capture_output=True, text=True, check=True).stdout.strip().splitlines()[0]
    except (OSError, subprocess.CalledProcessError, IndexError):
        driver = "unknown"
    return {"gpu": gpu, "driver": driver, "torch": torch.__version__,
            "torchvision": torchvision.__version__, "torch_cuda": torch.version.cuda,
            "torch_cudnn": torch.backends.cudnn.version()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--beamlet", help="bench_cuda JSON to compare with")
    ap.add_argument("--bench", help="bench_cuda binary to run first (writes --beamlet)")
    ap.add_argument("--out", help="result JSON (default bench/results/cuda_<gpu>_<date>.json)")
    ap.add_argument("--iters", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--only", default="",
                    help="run workloads whose name contains one of these comma-separated substrings")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="PyTorch variants, comma-separated")
    ap.add_argument("--list", action="store_true", help="print the workload and variant names, one a line")
    args = ap.parse_args()
    if args.list:
        print("\n".join([w[0] for w in WORKLOADS] + VARIANTS))
        return
    unknown = [v for v in args.variants.split(",") if v not in VARIANTS]
    if unknown:
        sys.exit(f"compare_cuda.py: unknown variant(s) {', '.join(unknown)} (known: {', '.join(VARIANTS)})")
    global torch, nn, torchvision
    import torch
    import torch.nn as nn
    import torchvision
    selected = lambda name: not args.only or any(s and s in name for s in args.only.split(","))
    if not torch.cuda.is_available():
        sys.exit("compare_cuda.py: PyTorch sees no GPU")
    date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if args.bench:
        args.beamlet = args.beamlet or f"bench_beamlet_{date.replace(':', '')}.json"
        subprocess.run([args.bench, f"--out={args.beamlet}", f"--iters={args.iters}",
                        f"--warmup={args.warmup}"] + ([f"--only={args.only}"] if args.only else []),
                       check=True)
    ours = {}
    if args.beamlet:
        with open(args.beamlet) as f:
            beamlet = json.load(f)
        for r in beamlet["results"]:
            ours[(r["workload"], r["mode"])] = r
    else:
        beamlet = None

    theirs = {}
    for w in WORKLOADS:
        if not selected(w[0]):
            continue
        for v in args.variants.split(","):
            t0 = time.perf_counter()
            try:
                theirs[(w[0], v)] = run_variant(w, v, args.iters, args.warmup)
            except Exception as e:  # a failing variant (e.g. compile) should not hide the rest
                theirs[(w[0], v)] = {"error": f"{type(e).__name__}: {e}"}
            r = theirs[(w[0], v)]
            print(f"{w[0]:30s} {v:16s} "
                  + (f"{r['img_per_s']:10.1f} img/s" if "img_per_s" in r else r["error"][:60])
                  + f"   ({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
            torch.cuda.empty_cache()

    rows = []
    print(f"\n{'workload':30s} {'beamlet graph':>14s}" + "".join(f" {v:>16s}" for v in VARIANTS))
    for w in WORKLOADS:
        name, batch = w[0], w[5]
        b = ours.get((name, "graph"))
        if not selected(name):
            continue
        line = f"{name:30s} " + (f"{b['img_per_s']:14.1f}" if b else f"{'-':>14s}")
        row = {"workload": name, "batch": batch, "beamlet": b, "pytorch": {}, "ratios": {}}
        for v in VARIANTS:
            t = theirs.get((name, v))
            row["pytorch"][v] = t
            if b and t and "img_per_s" in t:
                # Throughput ratio; for batch 1 the latency ratio (higher is better for both).
                ratio = (t["latency_ms_median"] / b["latency_ms_median"] if batch == 1
                         else b["img_per_s"] / t["img_per_s"])
                row["ratios"][v] = ratio
                line += f" {ratio:15.2f}x"
            else:
                line += f" {'-':>16s}"
        if name in TARGETS and TARGETS[name][0] in row["ratios"]:
            v, want = TARGETS[name]
            row["target"] = {"against": v, "want": want, "met": row["ratios"][v] >= want}
            line += f"   target {want}x vs {v}: {'met' if row['target']['met'] else 'NOT met'}"
        rows.append(row)
        print(line)

    result = {"date": date, "versions": versions(), "beamlet": beamlet, "comparison": rows,
              "iters": args.iters, "warmup": args.warmup}
    out = args.out
    if not out:
        gpu = result["versions"]["gpu"].replace(" ", "_").replace("/", "_")
        out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results",
                           f"cuda_{gpu}_{date[:10]}.json")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    tmp = f"{out}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=2)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, out)
    print(f"\nwrote {out}")


if __name__ == "__main__":
    main()
