#!/usr/bin/env python3
"""Writes the PyTorch fixtures that prove beamlet's reference backend right.

Run by hand where PyTorch is installed (Debian's python3-torch works):
    /usr/bin/python3 tools/gen_fixtures.py            # small fixtures, committed
    /usr/bin/python3 tools/gen_fixtures.py --large    # full-width torchvision ResNet-18, not committed

Every fixture is a safetensors file whose __metadata__ carries the magic "BLFX" and a format
version, plus what the C test needs to rebuild the same model (depth, width, stem, classes,
input size, batch, label smoothing, optimizer settings). Tensor names:
    param/<torchvision name>     initial state_dict (weights, running stats, num_batches_tracked)
    input, labels                one batch
    logits, loss                 training-mode forward (train fixture) or eval-mode (eval fixtures)
    grad/<name>                  every parameter gradient of that loss
    sgd3/<name>, adamw3/<name>   state_dict after 3 optimizer steps on the same batch
"""
import argparse
import json
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

MAGIC = "BLFX"
VERSION = "1"
HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "tests", "fixtures")


class BasicBlock(nn.Module):
    """torchvision's BasicBlock, same attribute names."""

    def __init__(self, inplanes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = None
        if stride != 1 or inplanes != planes:
            self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                            nn.BatchNorm2d(planes))

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """torchvision's ResNet layout and names, with a width and a CIFAR stem option."""

    def __init__(self, depth=18, num_classes=10, width=64, in_channels=3, cifar_stem=False):
        super().__init__()
        blocks = {18: [2, 2, 2, 2], 34: [3, 4, 6, 3]}[depth]
        if cifar_stem:
            self.conv1 = nn.Conv2d(in_channels, width, 3, 1, 1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_channels, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if cifar_stem else nn.MaxPool2d(3, 2, 1)
        inplanes = width
        for i, n in enumerate(blocks):
            planes = width << i
            layer = []
            for j in range(n):
                layer.append(BasicBlock(inplanes, planes, 2 if (i > 0 and j == 0) else 1))
                inplanes = planes
            setattr(self, f"layer{i + 1}", nn.Sequential(*layer))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, num_classes)

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


DTYPES = {torch.float32: "F32", torch.int64: "I64", torch.int32: "I32"}


def write_safetensors(path, tensors, metadata):
    """The safetensors format by hand (Debian 12 has no python3-safetensors): 8-byte header
    length, JSON header, data in the order given."""
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.numpy().tobytes()
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)
    os.replace(tmp, path)
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.2f} MB, {len(tensors)} tensors)")


def randomize_bn(model, gen):
    """Non-trivial batch-norm parameters and statistics, so eval mode tests something."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.weight.shape, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(7)


def state(model, prefix):
    return {f"{prefix}/{k}": v.clone() for k, v in model.state_dict().items()}


def train_fixture(path):
    torch.manual_seed(1)
    gen = torch.Generator().manual_seed(2)
    cfg = dict(depth=18, width=8, classes=10, in_channels=3, cifar_stem=True, height=32, width_px=32,
               batch=4, label_smoothing=0.1, sgd_lr=0.05, momentum=0.9, nesterov=True,
               weight_decay=5e-4, adamw_lr=1e-3, adamw_weight_decay=1e-2, adamw_eps=1e-6)
    model = ResNet(18, cfg["classes"], cfg["width"], 3, cifar_stem=True)
    init = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(cfg["batch"], 3, 32, 32, generator=gen)
    y = torch.randint(0, cfg["classes"], (cfg["batch"],), generator=gen)
    tensors = state(model, "param")
    tensors["input"] = x
    tensors["labels"] = y.to(torch.int32)
    model.train()
    logits = model(x)
    loss = F.cross_entropy(logits, y, label_smoothing=cfg["label_smoothing"])
    loss.backward()
    tensors["logits"] = logits.detach()
    tensors["loss"] = loss.detach().reshape(1)
    for name, p in model.named_parameters():
        tensors[f"grad/{name}"] = p.grad.detach().clone()

    def three_steps(opt_name, dtype):
        m = ResNet(18, cfg["classes"], cfg["width"], 3, cifar_stem=True)
        m.load_state_dict(init)
        m = m.to(dtype)
        if opt_name == "sgd3":
            opt = torch.optim.SGD(m.parameters(), lr=cfg["sgd_lr"], momentum=cfg["momentum"],
                                  nesterov=cfg["nesterov"], weight_decay=cfg["weight_decay"])
        else:
            # eps 1e-6 rather than 1e-8: with 1e-8 Adam's first step is lr * sign(g) even for
            # gradients of 1e-8, whose sign is rounding noise in any f32 implementation, and
            # the flipped steps then spread through the next two steps.
            opt = torch.optim.AdamW(m.parameters(), lr=cfg["adamw_lr"], eps=cfg["adamw_eps"],
                                    weight_decay=cfg["adamw_weight_decay"])
        for _ in range(3):
            opt.zero_grad()
            F.cross_entropy(m(x.to(dtype)), y, label_smoothing=cfg["label_smoothing"]).backward()
            opt.step()
        return m.state_dict()

    for opt_name in ("sgd3", "adamw3"):
        ours = three_steps(opt_name, torch.float32)
        tensors.update({f"{opt_name}/{k}": v.clone() for k, v in ours.items()})
        # How far PyTorch's own f32 result is from its f64 result: the conditioning of 3 steps,
        # which the C test uses to set its tolerance.
        exact = three_steps(opt_name, torch.float64)
        cfg[f"{opt_name}_torch_f32_vs_f64"] = max(
            ((ours[k].double() - exact[k]).abs().max() / exact[k].abs().max().clamp(min=1e-12)).item()
            for k in ours if "num_batches" not in k)
    meta = {k: json.dumps(v) for k, v in cfg.items()}
    meta.update(magic=MAGIC, version=VERSION, kind="train", torch=torch.__version__)
    write_safetensors(path, tensors, meta)


def eval_fixture(path, depth, width, size, batch, seed):
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed + 100)
    model = ResNet(depth, 10, width, 3, cifar_stem=False)
    randomize_bn(model, gen)
    model.eval()
    x = torch.randn(batch, 3, size, size, generator=gen)
    with torch.no_grad():
        logits = model(x)
    tensors = state(model, "param")
    tensors["input"] = x
    tensors["logits"] = logits
    cfg = dict(depth=depth, width=width, classes=10, in_channels=3, cifar_stem=False, height=size,
               width_px=size, batch=batch)
    meta = {k: json.dumps(v) for k, v in cfg.items()}
    meta.update(magic=MAGIC, version=VERSION, kind="eval", torch=torch.__version__)
    write_safetensors(path, tensors, meta)


def large_fixture(path):
    """The real torchvision ResNet-18 at full width and 224x224: its state_dict as is."""
    import torchvision
    torch.manual_seed(3)
    gen = torch.Generator().manual_seed(4)
    model = torchvision.models.resnet18(num_classes=1000)
    randomize_bn(model, gen)
    model.eval()
    x = torch.randn(2, 3, 224, 224, generator=gen)
    with torch.no_grad():
        logits = model(x)
    tensors = state(model, "param")
    tensors["input"] = x
    tensors["logits"] = logits
    cfg = dict(depth=18, width=64, classes=1000, in_channels=3, cifar_stem=False, height=224,
               width_px=224, batch=2)
    meta = {k: json.dumps(v) for k, v in cfg.items()}
    meta.update(magic=MAGIC, version=VERSION, kind="eval", torch=torch.__version__)
    write_safetensors(path, tensors, meta)


def check_layout_matches_torchvision():
    """Our narrow module must have torchvision's exact names and shapes at width 64."""
    import torchvision
    for depth, ctor in ((18, torchvision.models.resnet18), (34, torchvision.models.resnet34)):
        ours = {k: tuple(v.shape) for k, v in ResNet(depth, 1000).state_dict().items()}
        theirs = {k: tuple(v.shape) for k, v in ctor().state_dict().items()}
        if ours != theirs:
            sys.exit(f"ResNet-{depth} layout differs from torchvision's")
    print("layout matches torchvision's resnet18 and resnet34")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--large", action="store_true", help="also write the full-width torchvision fixture")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    try:
        check_layout_matches_torchvision()
    except ImportError:
        print("torchvision not installed: skipping the layout check")
    train_fixture(os.path.join(OUT, "resnet18_cifar_w8_train.safetensors"))
    eval_fixture(os.path.join(OUT, "resnet18_imagenet_w8_eval.safetensors"), 18, 8, 64, 2, 10)
    eval_fixture(os.path.join(OUT, "resnet34_imagenet_w4_eval.safetensors"), 34, 4, 64, 2, 11)
    if args.large:
        os.makedirs(os.path.join(OUT, "large"), exist_ok=True)
        large_fixture(os.path.join(OUT, "large", "resnet18_torchvision_eval.safetensors"))


if __name__ == "__main__":
    main()
