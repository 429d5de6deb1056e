#!/usr/bin/env python3
"""Trains the shipped model's recipe in PyTorch, for time to accuracy beside beamlet's own run.

    .venv/bin/python bench/train_fashion_torch.py [--width=16] [--epochs=20] [--batch_size=128]
        [--lr=0.1] [--threads=2] [--layout=nchw|channels_last] [--compile] [--target=0.93]
        [--out=FILE.json]

The recipe is models/README.md's, step for step: ResNet-18 with torchvision's layout and
initialization (kaiming-normal convolutions, fan_out), a CIFAR stem (3x3/1 convolution, no
max-pool), one input channel, `--width` base channels; Fashion-MNIST from Debian's
dataset-fashion-mnist, 28x28 zero-padded to 32x32 (raw 0 before normalization, mean 0.2860, std
0.3530), random crop with 4 pixels of padding and a horizontal flip at 0.5 while training; SGD
with Nesterov momentum 0.9, weight decay 5e-4, one-cycle learning rate (PyTorch's OneCycleLR
defaults, which beamlet's schedule follows) peaking at `--lr`, the last partial batch dropped,
the whole test split evaluated after every epoch. An epoch's seconds count its training and its
evaluation, as beamlet's metrics.jsonl does; time to accuracy sums them up to the first epoch
at or above `--target`. Prints one JSON line per epoch and a summary; --out keeps it all.
"""
import argparse
import gzip
import json
import os
import platform
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tools"))
from gen_fixtures import ResNet  # noqa: E402  (the one PyTorch copy of beamlet's ResNet layout)

MEAN, STD = 0.2860, 0.3530


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def load_split(folder, train):
    prefix = "train" if train else "t10k"
    images = read_idx(os.path.join(folder, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(folder, f"{prefix}-labels-idx1-ubyte.gz"))
    padded = np.zeros((len(images), 1, 32, 32), dtype=np.uint8)
    padded[:, 0, 2:30, 2:30] = images
    return torch.from_numpy(padded), torch.from_numpy(labels.astype(np.int64))


def normalize(u8):
    return (u8.float() / 255.0 - MEAN) / STD


def augment(u8, gen):
    """Random crop of the 4-pixel zero-padded image back to 32x32, and a horizontal flip."""
    n = u8.shape[0]
    padded = F.pad(u8, (4, 4, 4, 4))
    oy = torch.randint(0, 9, (n,), generator=gen)
    ox = torch.randint(0, 9, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    out = torch.empty_like(u8)
    for i in range(n):
        crop = padded[i, :, oy[i]:oy[i] + 32, ox[i]:ox[i] + 32]
        out[i] = crop.flip(-1) if flip[i] else crop
    return out


def init_like_torchvision(model):
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data_dir", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--batch_size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--layout", choices=["nchw", "channels_last"], default="nchw")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (compile time counts)")
    ap.add_argument("--target", type=float, default=0.93)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="JSON file for the epochs and the summary")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    start = time.perf_counter()
    train_x, train_y = load_split(args.data_dir, True)
    test_x, test_y = load_split(args.data_dir, False)
    test_in = normalize(test_x)
    model = ResNet(18, 10, args.width, 1, cifar_stem=True)
    init_like_torchvision(model)
    fmt = torch.channels_last if args.layout == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    test_in = test_in.contiguous(memory_format=fmt)
    run = torch.compile(model) if args.compile else model
    steps = len(train_x) // args.batch_size
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps * args.epochs)
    crit = nn.CrossEntropyLoss()
    epochs, elapsed, reached = [], 0.0, None
    setup_s = time.perf_counter() - start
    for epoch in range(args.epochs):
        t0 = time.perf_counter()
        model.train()
        order = torch.randperm(len(train_x), generator=gen)
        total = 0.0
        for s in range(steps):
            idx = order[s * args.batch_size:(s + 1) * args.batch_size]
            x = normalize(augment(train_x[idx], gen)).contiguous(memory_format=fmt)
            loss = crit(run(x), train_y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item()
        model.eval()
        correct = 0
        with torch.no_grad():
            for i in range(0, len(test_in), 1000):
                correct += (run(test_in[i:i + 1000]).argmax(1) == test_y[i:i + 1000]).sum().item()
        seconds = time.perf_counter() - t0
        elapsed += seconds
        acc = correct / len(test_in)
        rec = {"epoch": epoch + 1, "train_loss": total / steps, "test_accuracy": acc, "seconds": seconds,
               "elapsed": elapsed}
        epochs.append(rec)
        print(json.dumps(rec), flush=True)
        if reached is None and acc >= args.target:
            reached = {"epoch": epoch + 1, "seconds": elapsed, "accuracy": acc}
    summary = {"engine": "pytorch", "torch": torch.__version__, "threads": args.threads, "layout": args.layout,
               "compile": args.compile, "width": args.width, "epochs": args.epochs, "batch_size": args.batch_size,
               "lr": args.lr, "target": args.target, "time_to_target": reached,
               "final_accuracy": epochs[-1]["test_accuracy"], "setup_seconds": setup_s,
               "machine": platform.processor() or platform.machine(), "load_end": os.getloadavg()}
    print(json.dumps(summary), flush=True)
    if args.out:
        tmp = f"{args.out}.tmp.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump({"epochs": epochs, "summary": summary}, f, indent=2)
        os.replace(tmp, args.out)


if __name__ == "__main__":
    main()
