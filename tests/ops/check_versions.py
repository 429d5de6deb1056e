#!/usr/bin/env python3
"""The version-manifest test: every pinned version that the Dockerfiles, the CI workflows, the
docs and CMakeLists.txt name must equal the one in versions.env, so an upgrade is one edit there
plus the copies this test points at. Standard library only; no network, well under a second.

  python3 tests/ops/check_versions.py [--root=DIR]   check the repository (ctest: ops/versions)
  python3 tests/ops/check_versions.py --selftest     plant mismatches in a copy, expect each caught

Files read: docker/Dockerfile.*, .github/workflows/*.yml, README.md, docs/*.md, docker/README.md,
models/README.md, src/backends/cuda/README.md, CMakeLists.txt, python/pyproject.toml. On every
line, these must agree with versions.env:
  KEY=value, KEY: value     where KEY is a manifest key (Dockerfile ARG defaults, workflow env)
  debian:TAG                DEBIAN_IMAGE
  nvidia/cuda:TAG           CUDA_DEVEL_IMAGE or CUDA_RUNTIME_IMAGE
  apache/beam_pythonX_sdk:TAG  BEAM_SDK_IMAGE
  "NAME==VERSION"           PYPI_<NAME> (pip pins in python/pyproject.toml and the Dockerfiles; missing: fails)
  FROM IMAGE                a manifest *_IMAGE (or ${ARG}, or an earlier stage)
  uses: OWNER/NAME@REF      ACTIONS_<NAME> for actions/*, else ACTIONS_<OWNER>_<NAME> (missing: fails)
  runs-on: ubuntu-...       GH_RUNNER; a self-hosted runs-on must carry GPU_RUNNER_LABEL
  Debian N, Ubuntu N.N      DEBIAN_VERSION, UBUNTU_VERSION
  CUDA N.N[.N], cuDNN N     a prefix of CUDA_VERSION, CUDNN_MAJOR
  PyTorch V, torchvision V  TORCH_DEBIAN12, TORCH_GPU or PYPI_TORCH; TORCHVISION_DEBIAN12, _GPU or PYPI_TORCHVISION
  oneDNN V, Open MPI V      ONEDNN_DEBIAN12, OPENMPI_DEBIAN12 (distribution versions)
  apache-beam X.Y.Z         PYPI_APACHE_BEAM
  beamlet X.Y.Z, project(beamlet VERSION ...), cmake_minimum_required(VERSION ...)
Within versions.env, the CUDA image tags must carry CUDA_VERSION and UBUNTU_VERSION,
DEBIAN_IMAGE must be DEBIAN_VERSION, and BEAM_SDK_IMAGE's tag must be PYPI_APACHE_BEAM (Dataflow
needs the submitting SDK and the workers' image to be one Beam release). A mismatch is reported as file:line, what was found, and the manifest's key and value.
"""
import argparse
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

FILES = ["docker/Dockerfile.*", ".github/workflows/*.yml", ".github/workflows/*.yaml", "README.md",
         "docs/*.md", "docker/README.md", "models/README.md", "src/backends/cuda/README.md",
         "CMakeLists.txt", "python/pyproject.toml"]
PLACEHOLDER = re.compile(r"^(\.\.\.|\$|<|\{)")


def load_manifest(path):
    manifest, problems = {}, []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            if not line.strip() or line.startswith("#"):
                continue
            m = re.fullmatch(r"([A-Z][A-Z0-9_]*)=(\S+)", line)
            if not m:
                problems.append(f"{path}:{n}: not KEY=value (no spaces, quotes or trailing comments): {line!r}")
            elif m.group(1) in manifest:
                problems.append(f"{path}:{n}: {m.group(1)} defined twice")
            else:
                manifest[m.group(1)] = m.group(2)
    return manifest, problems


def tag(image):
    return image.split(":", 1)[1] if ":" in image else ""


def check_line(v, rel, n, line, stages, errors, used):
    """Appends a message to errors for every pinned version on this line that v disagrees with."""
    def want(found, keys, what, ok=None):
        keys = [k for k in keys if k in v]
        for k in keys:
            used.add(k)
        good = ok(found) if ok else any(found == v[k] for k in keys)
        if not keys:
            errors.append(f"{rel}:{n}: {what} '{found}': no {' or '.join(keys) or 'key'} in versions.env")
        elif not good:
            errors.append(f"{rel}:{n}: {what} '{found}', but versions.env has "
                          + " or ".join(f"{k}={v[k]}" for k in keys))

    code = line.split("#", 1)[0] if rel.endswith((".yml", ".yaml")) or "Dockerfile" in rel else line
    # KEY=value / KEY: value for manifest keys (Dockerfile ARG defaults, workflow env, docs).
    covered = []  # spans already judged by their KEY=, so an image there is reported once
    for m in re.finditer(r"\b([A-Z][A-Z0-9_]+)(?:=|: )\"?([^\s\"',)`]+)", code):
        key, val = m.group(1), m.group(2)
        if key in v and not PLACEHOLDER.match(val):
            want(val, [key], key)
            covered.append(m.span(2))

    def fresh(m):
        return not any(a <= m.start() < b for a, b in covered)
    for m in filter(fresh, re.finditer(r"(?<![\w/.-])debian:([\w.-]+)", code)):
        want(m.group(1), ["DEBIAN_IMAGE"], "image debian", ok=lambda t: t == tag(v["DEBIAN_IMAGE"]))
    for m in filter(fresh, re.finditer(r"nvidia/cuda:([\w.-]+)", code)):
        want(m.group(1), ["CUDA_DEVEL_IMAGE", "CUDA_RUNTIME_IMAGE"], "image nvidia/cuda",
             ok=lambda t: t in (tag(v.get("CUDA_DEVEL_IMAGE", "")), tag(v.get("CUDA_RUNTIME_IMAGE", ""))))
    for m in filter(fresh, re.finditer(r"apache/beam_python[\d.]+_sdk:[\w.-]+", code)):
        want(m.group(0), ["BEAM_SDK_IMAGE"], "image")
    if rel.endswith("pyproject.toml") or "Dockerfile" in rel:
        # A pip pin: "name==version" (a requirement string), PYPI_<NAME> in versions.env.
        for m in re.finditer(r"[\"'\s]([A-Za-z0-9][A-Za-z0-9._-]*)==([\w.]+)", code):
            key = "PYPI_" + re.sub(r"[^A-Z0-9]", "_", m.group(1).upper())
            if key not in v:
                errors.append(f"{rel}:{n}: pip pin {m.group(1)}=={m.group(2)} is not in versions.env "
                              f"(add {key}={m.group(2)})")
            else:
                want(m.group(2), [key], f"pip pin {m.group(1)}==")
    m = re.match(r"\s*FROM\s+(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", code, re.I)
    if m and "Dockerfile" in rel:
        image = m.group(1)
        images = {val for key, val in v.items() if key.endswith("_IMAGE")}
        if not image.startswith("$") and image not in stages and image not in images:
            errors.append(f"{rel}:{n}: FROM '{image}' is no *_IMAGE of versions.env ({', '.join(sorted(images))})")
        if m.group(2):
            stages.add(m.group(2))
    for m in re.finditer(r"uses:\s*([\w.-]+)/([\w.-]+)(?:/[^@\s]*)?@(\S+)", code):
        # actions/checkout -> ACTIONS_CHECKOUT; other/thing -> ACTIONS_OTHER_THING
        name = m.group(2) if m.group(1) == "actions" else m.group(1) + "_" + m.group(2)
        key = "ACTIONS_" + re.sub(r"[^A-Z0-9]", "_", name.upper())
        if key not in v:
            errors.append(f"{rel}:{n}: action {m.group(1)}/{m.group(2)}@{m.group(3)} is not pinned in versions.env "
                          f"(add {key}={m.group(3)})")
        else:
            want(m.group(3), [key], f"action {m.group(1)}/{m.group(2)}@")
    m = re.search(r"runs-on:\s*(.+)", code)
    if m:
        labels = re.findall(r"[\w.-]+", m.group(1))
        for label in labels:
            if re.fullmatch(r"ubuntu-[\w.]+", label):
                want(label, ["GH_RUNNER"], "runner")
        if "self-hosted" in labels:
            want(m.group(1).strip(), ["GPU_RUNNER_LABEL"], "self-hosted runner labels",
                 ok=lambda _: v["GPU_RUNNER_LABEL"] in labels)
    prose = [
        (r"\bDebian (\d+(?:\.\d+)?)\b", ["DEBIAN_VERSION"], None),
        (r"\bUbuntu (\d+\.\d+)\b", ["UBUNTU_VERSION"], None),
        (r"\bCUDA (\d+\.\d+(?:\.\d+)?)\b", ["CUDA_VERSION"],
         lambda f: (v["CUDA_VERSION"] + ".").startswith(f + ".")),
        (r"\bcuDNN (\d+)(?:\.\d+)*\b", ["CUDNN_MAJOR"], None),
        (r"\bPyTorch (\d+\.\d+(?:\.\d+)?)\b", ["TORCH_DEBIAN12", "TORCH_GPU", "PYPI_TORCH"], None),
        (r"\btorchvision (\d+\.\d+(?:\.\d+)?)\b", ["TORCHVISION_DEBIAN12", "TORCHVISION_GPU", "PYPI_TORCHVISION"], None),
        (r"\boneDNN (\d+\.\d+(?:\.\d+)?)\b", ["ONEDNN_DEBIAN12"], None),
        (r"\bOpen ?MPI (\d+\.\d+(?:\.\d+)?)\b", ["OPENMPI_DEBIAN12"], None),
        (r"\bapache-beam (\d+\.\d+\.\d+)\b", ["PYPI_APACHE_BEAM"], None),
        (r"\bbeamlet v?(\d+\.\d+\.\d+)\b", ["BEAMLET_VERSION"], None),
        (r"project\(beamlet VERSION ([\d.]+)", ["BEAMLET_VERSION"], None),
        (r"cmake_minimum_required\(VERSION ([\d.]+)", ["CMAKE_MINIMUM"], None),
    ]
    for pattern, keys, ok in prose:
        for m in re.finditer(pattern, line):
            want(m.group(1), keys, m.group(0).rsplit(" ", 1)[0].rstrip("(v"), ok=ok)


def check(root):
    manifest_path = os.path.join(root, "versions.env")
    if not os.path.isfile(manifest_path):
        print(f"check_versions: no {manifest_path}")
        return 1, []
    v, errors = load_manifest(manifest_path)
    # The manifest agrees with itself: the image tags carry the versions named beside them.
    for key in ("CUDA_DEVEL_IMAGE", "CUDA_RUNTIME_IMAGE"):
        t = tag(v.get(key, ""))
        if key in v and not (t.startswith(v.get("CUDA_VERSION", "?") + "-cudnn")
                             and t.endswith("ubuntu" + v.get("UBUNTU_VERSION", "?"))):
            errors.append(f"versions.env: {key}={v[key]} does not carry CUDA_VERSION={v.get('CUDA_VERSION')} "
                          f"with cuDNN on UBUNTU_VERSION={v.get('UBUNTU_VERSION')}")
    if "DEBIAN_IMAGE" in v and tag(v["DEBIAN_IMAGE"]).split("-")[0].split(".")[0] != v.get("DEBIAN_VERSION"):
        errors.append(f"versions.env: DEBIAN_IMAGE={v['DEBIAN_IMAGE']} is not DEBIAN_VERSION={v.get('DEBIAN_VERSION')}")
    if "BEAM_SDK_IMAGE" in v and tag(v["BEAM_SDK_IMAGE"]) != v.get("PYPI_APACHE_BEAM"):
        errors.append(f"versions.env: BEAM_SDK_IMAGE={v['BEAM_SDK_IMAGE']} is not the Beam release "
                      f"PYPI_APACHE_BEAM={v.get('PYPI_APACHE_BEAM')} (the submitting SDK and the workers' must match)")
    used, files = set(), []
    for pattern in FILES:
        files += sorted(glob.glob(os.path.join(root, pattern)))
    for path in files:
        rel = os.path.relpath(path, root)
        stages = set()
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                check_line(v, rel, n, line, stages, errors, used)
    for must in ["docker/Dockerfile.cpu", "docker/Dockerfile.gpu", "docker/Dockerfile.tpu"]:
        if not os.path.isfile(os.path.join(root, must)):
            errors.append(f"{must}: missing")
    for e in errors:
        print(e)
    unused = sorted(set(v) - used)
    print(f"check_versions: {len(files)} files against {len(v)} pinned versions; "
          f"{len(errors)} problem(s)" + (f"; not named anywhere (informational): {', '.join(unused)}" if unused else ""))
    return (1 if errors else 0), errors


def selftest(root):
    """Plants one mismatch of each main kind in a copy and expects each reported with file:line."""
    tmp = tempfile.mkdtemp(prefix="check_versions.")
    try:
        for rel in ["versions.env", "docker/Dockerfile.cpu", ".github/workflows/nightly.yml", "README.md"]:
            os.makedirs(os.path.dirname(os.path.join(tmp, rel)) or tmp, exist_ok=True)
            shutil.copy(os.path.join(root, rel), os.path.join(tmp, rel))
        shutil.copy(os.path.join(root, "docker/Dockerfile.gpu"), os.path.join(tmp, "docker/Dockerfile.gpu"))
        shutil.copy(os.path.join(root, "docker/Dockerfile.beam"), os.path.join(tmp, "docker/Dockerfile.beam"))
        shutil.copy(os.path.join(root, "docker/Dockerfile.tpu"), os.path.join(tmp, "docker/Dockerfile.tpu"))
        os.makedirs(os.path.join(tmp, "python"))
        shutil.copy(os.path.join(root, "python/pyproject.toml"), os.path.join(tmp, "python/pyproject.toml"))

        def plant(rel, old, new):
            p = os.path.join(tmp, rel)
            s = open(p, encoding="utf-8").read()
            assert old in s, f"selftest: {old!r} not in {rel}"
            line = s[:s.index(old)].count("\n") + 1
            open(p, "w", encoding="utf-8").write(s.replace(old, new, 1))
            return f"{rel}:{line}:"
        expected = [
            (plant("docker/Dockerfile.cpu", "ARG DEBIAN_IMAGE=debian:12", "ARG DEBIAN_IMAGE=debian:11"), "debian:12"),
            (plant(".github/workflows/nightly.yml", "actions/checkout@v4", "actions/checkout@v3"), "ACTIONS_CHECKOUT=v4"),
            (plant("docker/Dockerfile.gpu", "cudnn-runtime-ubuntu24.04\n", "cudnn-runtime-ubuntu22.04\n"), "CUDA_RUNTIME_IMAGE="),
            (plant("docker/Dockerfile.beam", "_sdk:2.78.0\n", "_sdk:2.77.0\n"), "BEAM_SDK_IMAGE="),
            (plant("python/pyproject.toml", "scikit-build-core==", "scikit-build-core==0."), "PYPI_SCIKIT_BUILD_CORE="),
            (plant("docker/Dockerfile.tpu", "libtpu==0.0.52", "libtpu==0.0.51"), "PYPI_LIBTPU="),
        ]
        with open(os.path.join(tmp, "README.md"), "a", encoding="utf-8") as f:
            f.write("\nMeasured against PyTorch 2.9 on the GPU machine.\n")
        n = open(os.path.join(tmp, "README.md"), encoding="utf-8").read().count("\n")
        expected.append((f"README.md:{n}:", "TORCH_GPU=2.11"))
        rc, errors = check(tmp)
        missed = [(where, value) for where, value in expected
                  if not any(e.startswith(where) and value in e for e in errors)]
        for where, value in missed:
            print(f"selftest: MISSED a planted mismatch at {where} (expected the message to name {value})")
        if rc == 0 or missed or len(errors) != len(expected):
            print(f"selftest: FAILED ({len(errors)} reported, {len(expected)} planted)")
            return 1
        print(f"selftest: all {len(expected)} planted mismatches reported with file:line and both values")
        return 0
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."),
                   help="the repository root (default: this file's)")
    p.add_argument("--selftest", action="store_true", help="plant mismatches in a copy; expect each caught")
    a = p.parse_args()
    root = os.path.abspath(a.root)
    return selftest(root) if a.selftest else check(root)[0]


if __name__ == "__main__":
    sys.exit(main())
