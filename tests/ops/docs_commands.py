#!/usr/bin/env python3
"""The docs-command test: the commands the docs show a reader are extracted and run or checked,
so a renamed flag, a removed program or a dropped make target fails the test suite instead of
a reader. Standard library only; about a second.

  python3 tests/ops/docs_commands.py --build=DIR   (ctest: ops/docs_commands, after the build)
  python3 tests/ops/docs_commands.py --selftest    broken commands must fail (ops/docs_selftest)

WHICH COMMANDS. From README.md, docs/*.md, docker/README.md and models/README.md:
  - every line of a fenced block tagged sh, bash or shell (in a `console` block, the lines that
    start with "$ "); a trailing backslash continues the line, "# ..." is a comment, and a line
    is split at &&, ||, ; and | into simple commands;
  - every inline `code span` in the prose that starts (after VAR=value assignments and sudo)
    with one of the project's programs: beamlet, make, mpirun, cmake, python3, docker, or a path
    under build/, scripts/, tools/ or bench/. `beamlet infer/train/sweep` checks each of the
    three. Spans with a <placeholder> are shown syntax, not commands, and are skipped.
Fenced blocks of other languages (output, JSON, plain ```) are never commands.

WHAT "RUN" MEANS. Paths build/... mean the build folder under test (--build).
  EXECUTED as written (cwd: a fresh temp folder, exit status 0 required, 60 s limit):
    beamlet with no command, `beamlet devices`, `beamlet data` (when Fashion-MNIST is
    installed), and any command of the project's that carries --help.
  EXECUTED to check flags (the program parses the flags as written, then --help: exit 0):
    build/beamlet (with its subcommand) and build/examples/* -- an unknown flag exits 2.
    Shell scripts that handle --help: `SCRIPT --help`, and every --flag used must appear in it.
  CHECKED ONLY (never run: root, minutes of training, a GPU, the network, or a container):
    beamlet train/sweep/infer/demo and the examples without --help (flags checked as above);
    scripts/setup.sh, make path, tools/gpu_check.sh, tools/fetch_cifar10.sh, ...: the file exists
    and is executable, `bash -n` passes, every --flag and positional word appears in its source
    (or its --help); make TARGET: `make -n TARGET` (a dry run) succeeds; cmake -DNAME=...: NAME is
    in the build's CMakeCache.txt; python3 SCRIPT: the script compiles and every --flag appears
    in it; mpirun ... PROGRAM ARGS: PROGRAM ARGS as above;
    docker build -f FILE: FILE exists; docker run ... IMAGE ARGS: ARGS checked as a beamlet
    command (or as the --entrypoint's program); other programs (cp, mkdir, chown, git): on PATH.
  A program of the project that is missing fails; a tool from outside that is not installed
  here (docker, nvidia-smi) is reported and its project arguments are still checked.
"""
import argparse
import concurrent.futures
import glob
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

DOCS = ["README.md", "docs/*.md", "docker/README.md", "models/README.md"]
FENCE_LANGS = {"sh", "bash", "shell", "console"}
PROJECT_DIRS = ("build/", "scripts/", "tools/", "bench/")
INLINE_PROGRAMS = {"beamlet", "make", "mpirun", "cmake", "python3", "/usr/bin/python3", "docker"}
RUN_SUBCOMMANDS = {None, "devices", "data"}
FASHION_MNIST = "/usr/share/datasets/fashion-mnist"
# docker run options that take a value as the next word.
DOCKER_VALUE_OPTS = {"-v", "--volume", "-e", "--env", "--name", "-w", "--workdir", "-u", "--user",
                     "--gpus", "--entrypoint", "-p", "--publish", "--mount", "--network", "--shm-size",
                     "--ipc", "--cpus", "-m", "--memory", "--env-file", "--platform", "--runtime"}


class Checker:
    def __init__(self, root, build):
        self.root, self.build = root, build
        self.passed, self.failed, self.notes = 0, [], []
        self.cache = ""
        cache_path = os.path.join(build, "CMakeCache.txt")
        if os.path.isfile(cache_path):
            with open(cache_path, encoding="utf-8", errors="replace") as f:
                self.cache = f.read()
        self.tmp = tempfile.mkdtemp(prefix="docs_commands.")
        self.ran = {}

    # ---- running ------------------------------------------------------------------------------
    def run(self, argv, cwd=None, timeout=60):
        key = (tuple(argv), cwd)
        if key not in self.ran:  # the docs repeat themselves (`beamlet infer` five times)
            self.ran[key] = self.run_once(argv, cwd, timeout)
        return self.ran[key]

    def run_once(self, argv, cwd, timeout):
        try:
            p = subprocess.run(argv, cwd=cwd or self.tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL, timeout=timeout, text=True, errors="replace")
            return p.returncode, p.stdout
        except subprocess.TimeoutExpired:
            return 124, f"timed out after {timeout} s"
        except OSError as e:
            return 126, str(e)

    def path(self, word):
        """A doc's path as a real one: build/ is the build under test, the rest the repository."""
        w = word[2:] if word.startswith("./") else word
        if w.startswith("build/"):
            return os.path.join(self.build, w[len("build/"):])
        if w == "beamlet":
            return os.path.join(self.build, "beamlet")
        return os.path.join(self.root, w)

    # ---- the kinds of command ------------------------------------------------------------------
    def check(self, words):
        """Returns (ok, what was done). words: one simple command, env assignments removed."""
        prog, args = words[0], words[1:]
        bare = prog[2:] if prog.startswith("./") else prog
        if bare in ("beamlet", "build/beamlet"):
            return self.beamlet(args)
        if bare.startswith("build/"):
            return self.compiled(self.path(bare), args, bare)
        if bare == "make":
            return self.make(args)
        if bare == "mpirun":
            return self.mpirun(args)
        if bare == "cmake":
            return self.cmake(args)
        if bare in ("python3", "/usr/bin/python3", "python"):
            if not args or args[0].startswith("-"):
                return self.on_path(bare)
            return self.python(args[0], args[1:])
        if bare == "docker":
            return self.docker(args)
        if bare in ("cd", "export", "source", "."):
            return True, "shell built-in: nothing to check"
        if bare.endswith(".py") and bare.startswith(PROJECT_DIRS):
            return self.python(bare, args)
        if bare.startswith(PROJECT_DIRS):
            return self.script(bare, args)
        return self.on_path(bare)

    def on_path(self, prog):
        if shutil.which(prog):
            return True, f"{prog} is on PATH (not run)"
        if "/" in prog:
            return False, f"{prog}: no such program"
        self.notes.append(prog)
        return True, f"{prog} is not installed here: not checked"

    def compiled(self, exe, args, shown, run_as_written=False):
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            return False, f"{shown}: not built (no {exe})"
        rc, out = self.run([exe] + args + (["--help"] if "--help" not in args else []))
        if rc != 0:
            return False, f"`{shown} {' '.join(args)} --help` exited {rc}: {last_line(out)}"
        if run_as_written and "--help" not in args:
            rc, out = self.run([exe] + args)
            if rc != 0:
                return False, f"`{shown} {' '.join(args)}` exited {rc}: {last_line(out)}"
            return True, "ran it"
        return True, "ran with --help" if "--help" in args else "flags accepted (ran with --help added)"

    def beamlet(self, args):
        sub = args[0] if args and not args[0].startswith("-") else None
        if sub and "/" in sub:  # `beamlet infer/train/sweep`: each alternative
            results = [self.beamlet([s] + args[1:]) for s in sub.split("/")]
            bad = [what for ok, what in results if not ok]
            return (not bad), "; ".join(bad) if bad else f"each of {sub}: flags accepted"
        runnable = sub in RUN_SUBCOMMANDS
        if sub == "data" and not os.path.isdir(FASHION_MNIST):
            runnable = False
            self.notes.append("beamlet data (no Fashion-MNIST here: flags only)")
        ok, what = self.compiled(self.path("build/beamlet"), args, "beamlet", run_as_written=runnable)
        return ok, what

    def make(self, args):
        targets = [a for a in args if not a.startswith("-") and "=" not in a] or ["all"]
        variables = [a for a in args if "=" in a and not a.startswith("-")]
        for t in targets:
            rc, out = self.run(["make", "-n", "-C", self.root] + variables + [t], timeout=30)
            if rc != 0:
                return False, f"`make -n {t}` exited {rc}: {last_line(out)}"
        return True, f"make -n {' '.join(targets)}: targets exist (dry run)"

    def mpirun(self, args):
        i = 0
        while i < len(args) and (args[i].startswith("-") or args[i - 1] in ("-np", "-n", "-H", "--host")):
            i += 1
        if i >= len(args):
            return True, "mpirun options only (a fragment in prose): nothing to check"
        if not shutil.which("mpirun"):
            self.notes.append("mpirun")  # from outside (openmpi-bin): its program is still checked
        ok, what = self.check(args[i:])
        return ok, f"mpirun, then {what}"

    def cmake(self, args):
        for a in args:
            m = re.match(r"-D([A-Za-z_][A-Za-z0-9_]*)", a)
            if m and not m.group(1).startswith("CMAKE_"):
                if not re.search(r"^" + re.escape(m.group(1)) + r":", self.cache, re.M):
                    return False, f"cmake option -D{m.group(1)} is not in {self.build}/CMakeCache.txt"
        return True, "every -DNAME is a cache variable of this build (not run)"

    def python(self, script, args):
        path = self.path(script)
        if not os.path.isfile(path):
            return False, f"{script}: no such file"
        try:
            with open(path, encoding="utf-8") as f:
                compile(f.read(), path, "exec")  # in memory: nothing written beside the script
        except (SyntaxError, ValueError) as e:
            return False, f"{script} does not compile: {e}"
        missing = self.words_missing(path, args, None)
        if missing:
            return False, f"{script} never mentions {', '.join(missing)}"
        return True, "compiles, its flags are in its source (not run: tools may need PyTorch)"

    def script(self, script, args):
        path = self.path(script)
        if not os.path.isfile(path):
            return False, f"{script}: no such file"
        if not os.access(path, os.X_OK):
            return False, f"{script}: not executable"
        rc, out = self.run(["bash", "-n", path])
        if rc != 0:
            return False, f"bash -n {script}: {last_line(out)}"
        with open(path, encoding="utf-8", errors="replace") as f:
            source = f.read()
        help_text = None
        if "--help" in source:
            rc, out = self.run([path, "--help"], cwd=self.root, timeout=20)
            if rc != 0:
                return False, f"`{script} --help` exited {rc}: {last_line(out)}"
            help_text = out
        missing = self.words_missing(path, args, help_text)
        if missing:
            return False, f"{script} does not know {', '.join(missing)}"
        if args == ["--help"]:
            return True, "ran it"
        return True, ("--help ran; " if help_text is not None else "") + \
            "exists, bash -n, its flags and words are in its " + ("help" if help_text else "source") + " (not run)"

    def words_missing(self, path, args, help_text):
        with open(path, encoding="utf-8", errors="replace") as f:
            text = f.read() if help_text is None else help_text + f.read()
        missing = []
        for a in args:
            if a.startswith("--"):
                flag = a.split("=", 1)[0]
                if flag != "--help" and not re.search(re.escape(flag) + r"(?![\w-])", text):
                    missing.append(flag)
            elif re.fullmatch(r"[a-z][a-z_-]*", a) and not re.search(r"\b" + re.escape(a) + r"\b", text):
                missing.append(a)
        return missing

    def docker(self, args):
        if not shutil.which("docker"):
            self.notes.append("docker")
        if not args:
            return True, "docker"
        if args[0] == "build":
            files = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-f", "--file")]
            for f in files:
                if not os.path.isfile(self.path(f)):
                    return False, f"docker build -f {f}: no such file"
            return True, "its Dockerfile exists (not built: no Docker engine is assumed)"
        if args[0] != "run":
            return True, f"docker {args[0]}: not checked"
        i, entry = 1, None
        while i < len(args) and args[i].startswith("-"):
            opt = args[i].split("=", 1)[0]
            value = args[i].split("=", 1)[1] if "=" in args[i] else None
            if opt in DOCKER_VALUE_OPTS and value is None:
                value = args[i + 1] if i + 1 < len(args) else None
                i += 1
            if opt == "--entrypoint":
                entry = value
            i += 1
        if i >= len(args):
            return False, "docker run: no image"
        image, rest = args[i], args[i + 1:]
        if entry is None or entry == "beamlet":
            ok, what = self.beamlet(rest)
        elif entry.endswith("/scripts/learning_path.sh"):
            ok, what = self.script("scripts/learning_path.sh", rest)
        elif re.fullmatch(r"\d\d_\w+", entry):
            ok, what = self.compiled(self.path("build/examples/" + entry), rest, entry)
        else:
            return False, f"docker run --entrypoint {entry}: no such program in the image"
        return ok, f"arguments after {image} checked: {what}"


def last_line(text):
    lines = [l for l in text.strip().splitlines() if l.strip()]
    return lines[-1][:200] if lines else "(no output)"


def simple_commands(line):
    """Splits one shell line into simple commands (lists of words, env assignments dropped)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    lex.commenters = "#"
    commands, words = [], []
    try:
        tokens = list(lex)
    except ValueError:
        return None
    for t in tokens + [";"]:
        if t and set(t) <= set(";&|"):
            if words:
                commands.append(words)
            words = []
        else:
            words.append(t)
    out = []
    for w in commands:
        while w and (re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", w[0]) or w[0] == "sudo"):
            w = w[1:]
        if w:
            out.append(w)
    return out


def extract(path, rel):
    """(rel, line number, text, simple commands) for every command the file shows."""
    found = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    fence, pending, start = None, "", 0
    for n, line in enumerate(lines, 1):
        m = re.match(r"\s*```+\s*([\w-]*)", line)
        if m:
            fence = None if fence is not None else (m.group(1).lower() or "text")
            continue
        if fence in FENCE_LANGS:
            text = line.strip()
            if fence == "console":
                if not text.startswith("$ "):
                    continue
                text = text[2:]
            if not pending:
                start = n
            if text.endswith("\\"):
                pending += text[:-1] + " "
                continue
            text, pending = pending + text, ""
            cmds = simple_commands(text)
            if cmds:
                found.append((rel, start, text.split(" #")[0].strip(), cmds))
        elif fence is None:
            for span in re.findall(r"`([^`]+)`", line):
                if "<" in span or ">" in span:
                    continue
                cmds = simple_commands(span)
                if not cmds:
                    continue
                first = cmds[0][0]
                if len(cmds[0]) == 1 and ("/" not in first or first.endswith("/")):
                    continue  # `beamlet`, `mpirun`, `build/`: a name in prose, not a command
                if first in INLINE_PROGRAMS or first.lstrip("./").startswith(PROJECT_DIRS):
                    if first.lstrip("./").startswith(PROJECT_DIRS) and not re.search(r"\.(sh|py)$|^\.?/?build/", first):
                        continue  # a folder or a source file named in prose, not a command
                    found.append((rel, n, span, cmds))
    return found


def check_docs(root, build, files, min_commands):
    c = Checker(root, build)
    commands = []
    for rel in files:
        commands += extract(os.path.join(root, rel), rel)
    jobs = [(rel, n, words) for rel, n, text, cmds in commands for words in cmds]
    # Most of the time is process start-up (and waiting for a busy machine): check side by
    # side, report in document order.
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda job: c.check(job[2]), jobs))
    for (rel, n, words), (ok, what) in zip(jobs, results):
        shown = " ".join(words)
        if ok:
            c.passed += 1
            print(f"  ok    {rel}:{n}: {shown}\n          {what}")
        else:
            c.failed.append(f"{rel}:{n}: {shown}: {what}")
            print(f"  FAIL  {rel}:{n}: {shown}\n          {what}")
    shutil.rmtree(c.tmp, ignore_errors=True)
    if c.passed + len(c.failed) < min_commands:
        c.failed.append(f"only {c.passed + len(c.failed)} commands found in {len(files)} files "
                        f"(expected at least {min_commands}): is the extraction broken?")
    if c.notes:
        print(f"not installed here, so checked as far as possible: {', '.join(sorted(set(c.notes)))}")
    for f in c.failed:
        print(f"FAIL {f}")
    print(f"docs_commands: {c.passed} passed, {len(c.failed)} failed")
    return c


def selftest(root, build):
    """Each line of a planted doc is broken in one way the test must catch."""
    broken = [
        "build/beamlet infer --no_such_flag=1",             # a renamed flag
        "build/examples/05_no_such_stage --limit=10",       # a removed program
        "build/beamlet no_such_command",                    # a removed subcommand
        "scripts/no_such_script.sh",                        # a removed script
        "scripts/setup.sh --no-such-mode",                  # a script flag that does not exist
        "scripts/learning_path.sh --tiny --no-such-size",   # ... nor this one
        "make no_such_target",                              # a removed make target
        "cmake -DBEAMLET_NO_SUCH_OPTION=ON -S . -B build",  # a removed CMake option
        "python3 tools/no_such_tool.py",                    # a removed tool
        "docker run --rm beamlet:cpu infer --no_such_flag=1",
    ]
    good = "build/beamlet devices && scripts/learning_path.sh --help"
    tmp = tempfile.mkdtemp(prefix="docs_selftest.")
    try:
        doc = os.path.join(tmp, "planted.md")
        with open(doc, "w", encoding="utf-8") as f:
            f.write("```sh\n" + "\n".join(broken) + "\n" + good + "\n```\n")
        commands = extract(doc, "planted.md")
        c = Checker(root, build)
        caught = 0
        for rel, n, text, cmds in commands[:len(broken)]:
            ok, what = c.check(cmds[0])
            print(f"  {'caught' if not ok else 'MISSED'}  {text}\n          {what}")
            caught += not ok
        good_ok = all(c.check(w)[0] for w in commands[-1][3])
        print(f"  {'ok' if good_ok else 'FAIL'}     {good} (must pass)")
        shutil.rmtree(c.tmp, ignore_errors=True)
        print(f"docs_selftest: {caught + good_ok} passed, {len(broken) - caught + (not good_ok)} failed")
        return 0 if caught == len(broken) and good_ok else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    here = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=here, help="the repository root (default: this file's)")
    p.add_argument("--build", default=None, help="the build folder the docs' build/ stands for (default: ROOT/build)")
    p.add_argument("--min_commands", type=int, default=20, help="fewer commands found than this fails")
    p.add_argument("--selftest", action="store_true", help="plant broken commands; expect each caught")
    a = p.parse_args()
    root = os.path.abspath(a.root)
    build = os.path.abspath(a.build or os.path.join(root, "build"))
    if not os.path.isfile(os.path.join(build, "beamlet")):
        print(f"docs_commands: no {build}/beamlet: build first (make build)")
        return 1
    if a.selftest:
        return selftest(root, build)
    files = []
    for pattern in DOCS:
        files += sorted(os.path.relpath(f, root) for f in glob.glob(os.path.join(root, pattern)))
    return 1 if check_docs(root, build, files, a.min_commands).failed else 0


if __name__ == "__main__":
    sys.exit(main())
