"""``make upgrade``: re-resolve the dependency locks and accept them only if the contract tests pass.

hedgeflow installs from two locks, exact versions with hashes (``pip install --require-hashes``):

* ``requirements-test.lock``: the full set, pyproject ``dependencies`` plus the ``[test]`` extra
  (``make up`` / ``make test`` / ``.ci/run`` install it);
* ``requirements.lock``: its runtime part, the same versions (the Dockerfile installs it).

This script

1. resolves a candidate of both, anew within pyproject's ranges (pip-tools' ``pip-compile
   --upgrade --generate-hashes``, from a tools venv under ``.hedgeflow/upgrade/``);
2. prints what changed, old → new, ccxt and temporalio first (the two hedgeflow speaks to most);
   if no version changed it says so and stops, leaving the locks as they are;
3. installs the candidate into a throw-away venv, and runs there the gateway contract suite
   against the simulator (``CONTRACT_TESTS``) and the replay of the saved workflow histories
   (``REPLAY_TESTS``);
4. only if they pass moves the candidate locks in place (``make`` then re-installs ``.venv`` from
   them on its next run); otherwise keeps the old locks and names the failing tests.

``--dry-run`` (``make upgrade DRY_RUN=1``) does all of it but step 4: it reports what would change
and whether that would pass. Exit status: 0 nothing changed, accepted, or (dry run) would be
accepted; 1 the candidate failed the tests (old locks kept); 2 it could not be resolved or
installed. The logs of each step are kept under ``.hedgeflow/upgrade/``.

Standard library only: it runs on a fresh machine's ``python3`` (the one the locks were made for).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import NamedTuple

ROOT = Path(__file__).resolve().parent.parent
RUNTIME_LOCK = "requirements.lock"
FULL_LOCK = "requirements-test.lock"
WORK = ROOT / ".hedgeflow" / "upgrade"
PIP_TOOLS = "pip-tools==7.6.2"
#: listed first in the change report, in this order
FIRST = ("ccxt", "temporalio")

#: The gateway contract suite against the simulator (unmodified ccxt over real HTTP): every file
#: these match, so a new simulator dialect's contract tests, named ``tests/test_gateway_<x>.py``
#: or ``tests/test_sim_<dialect>.py``, are covered without a change here.
CONTRACT_PATTERNS = ("tests/test_gateway*.py", "tests/test_sim_ccxt*.py", "tests/test_sim_bybit*.py",
                     "tests/test_sim_okx*.py", "tests/test_sim_hyperliquid*.py", "tests/test_adapters*.py")
#: the saved TradeWorkflow histories (tests/histories/) must keep replaying on the new SDK
REPLAY_TESTS = ["tests/test_trade_workflow.py::test_saved_histories_still_replay"]

#: both locks are made with these (the locks' header names ``make upgrade`` as their command)
COMPILE_FLAGS = ["--quiet", "--generate-hashes", "--strip-extras", "--allow-unsafe",
                 "--no-emit-index-url", "--no-emit-find-links", "--no-emit-trusted-host"]

_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)(?:\[[^\]]*\])?==([^\s;\\]+)")


def contract_tests() -> list[str]:
    """The files of the gateway contract suite (``CONTRACT_PATTERNS``), relative to the repo."""
    return [p.relative_to(ROOT).as_posix() for pat in CONTRACT_PATTERNS for p in sorted(ROOT.glob(pat))]


class Change(NamedTuple):
    name: str
    old: str | None  # None: added
    new: str | None  # None: removed

    def __str__(self) -> str:
        return f"{self.name} {self.old or '(new)'} → {self.new or '(removed)'}"


def canonical(name: str) -> str:
    """PEP 503: ``PyYAML`` and ``pyyaml``, ``typing_extensions`` and ``typing-extensions`` are one."""
    return re.sub(r"[-_.]+", "-", name).lower()


def parse_lock(text: str) -> dict[str, str]:
    """``{canonical name: version}`` of a pip-compile lock (or ``pip freeze``) text."""
    pins = {}
    for line in text.splitlines():
        m = _PIN.match(line)
        if m:
            pins[canonical(m.group(1))] = m.group(2)
    return pins


def diff_locks(old_text: str, new_text: str) -> list[Change]:
    """What differs between two locks: ``FIRST`` (ccxt, temporalio) first, then by name."""
    old, new = parse_lock(old_text), parse_lock(new_text)
    changed = [Change(n, old.get(n), new.get(n)) for n in set(old) | set(new) if old.get(n) != new.get(n)]
    first = {n: i for i, n in enumerate(FIRST)}
    return sorted(changed, key=lambda c: (first.get(c.name, len(first)), c.name))


def report(old_text: str, new_text: str) -> list[str]:
    """The lines ``make upgrade`` prints: the ``FIRST`` packages always (changed or not), then the
    other changes."""
    changes = {c.name: c for c in diff_locks(old_text, new_text)}
    old = parse_lock(old_text)
    lines = []
    for name in FIRST:
        if name in changes:
            lines.append(f"  {changes.pop(name)}")
        elif name in old:
            lines.append(f"  {name} {old[name]} (unchanged)")
    return lines + [f"  {c}" for c in changes.values()]


# --- the steps --------------------------------------------------------------------------------

def say(msg: str) -> None:
    print(f"upgrade: {msg}", flush=True)


class StepFailed(Exception):
    """A step that is not a test failure (resolve, install): exit 2."""


def run(cmd: list[str | Path], log: Path, **kw) -> None:
    """Run ``cmd`` with its output to ``log``; on failure show the log's tail and raise StepFailed."""
    with log.open("a") as out:
        out.write(f"$ {' '.join(map(str, cmd))}\n")
        out.flush()
        proc = subprocess.run([str(c) for c in cmd], stdout=out, stderr=subprocess.STDOUT, **kw)
    if proc.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-25:])
        raise StepFailed(f"{Path(str(cmd[0])).name} {' '.join(map(str, cmd[1:3]))} … failed "
                         f"(exit {proc.returncode}); the end of {log}:\n{tail}")


def make_venv(path: Path, log: Path) -> Path:
    """A fresh venv at ``path`` (the interpreter running this script), with pip upgraded as make does."""
    shutil.rmtree(path, ignore_errors=True)
    run([sys.executable, "-m", "venv", path], log)
    py = path / "bin" / "python"
    run([py, "-m", "pip", "install", "--quiet", "--upgrade", "pip"], log)
    return py


def tools_python(log: Path) -> Path:
    """The venv with pip-tools (kept between runs, rebuilt when ``PIP_TOOLS`` changes)."""
    venv = WORK / "tools"
    py, marker = venv / "bin" / "python", venv / ".pip-tools"
    if not (py.exists() and marker.exists() and marker.read_text() == PIP_TOOLS):
        say(f"creating {venv.relative_to(ROOT)} with {PIP_TOOLS}")
        py = make_venv(venv, log)
        run([py, "-m", "pip", "install", "--quiet", PIP_TOOLS], log)
        marker.write_text(PIP_TOOLS)
    return py


def compile_candidate(tools: Path, out: Path, log: Path) -> None:
    """Candidate locks in ``out``: the full set resolved anew (``--upgrade``), then the runtime set
    with the full set's pins as its preferences, so the two agree on every shared package."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    env = {**os.environ, "CUSTOM_COMPILE_COMMAND": "make upgrade"}
    compile_ = [tools, "-m", "piptools", "compile", *COMPILE_FLAGS]
    say("resolving the full set (dependencies + [test]) anew; this takes a few minutes")
    run([*compile_, "--upgrade", "--extra", "test", "--output-file", out / FULL_LOCK, "pyproject.toml"],
        log, cwd=ROOT, env=env)
    say("resolving the runtime set at the same versions")
    shutil.copyfile(out / FULL_LOCK, out / RUNTIME_LOCK)  # pip-compile keeps the pins it finds there
    run([*compile_, "--output-file", out / RUNTIME_LOCK, "pyproject.toml"], log, cwd=ROOT, env=env)
    full, runtime = parse_lock((out / FULL_LOCK).read_text()), parse_lock((out / RUNTIME_LOCK).read_text())
    differ = [f"{n} {v} vs {full.get(n)}" for n, v in runtime.items() if full.get(n) != v]
    if differ:
        raise StepFailed(f"the runtime and full candidate locks disagree: {', '.join(differ)}")


def install_candidate(out: Path, venv: Path, log: Path) -> Path:
    """The throw-away venv, installed the way ``make`` installs ``.venv``."""
    say(f"installing the candidate into a throw-away venv ({venv.relative_to(ROOT)})")
    py = make_venv(venv, log)
    run([py, "-m", "pip", "install", "--quiet", "--require-hashes", "-r", out / FULL_LOCK], log)
    run([py, "-m", "pip", "install", "--quiet", "--no-deps", "-e", ROOT], log)
    return py


def run_checks(py: Path, log: Path) -> list[str]:
    """Run the contract suite and the replay tests with ``py``; the failing node ids ([] = passed)."""
    contract = contract_tests()
    tests = contract + REPLAY_TESTS
    say(f"running the contract suite ({len(contract)} files) and the history replay: {' '.join(tests)}")
    cmd = [str(py), "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE", *tests]
    failed, summary = [], ""
    with log.open("w") as out, subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                                text=True) as proc:
        for line in proc.stdout:
            out.write(line)
            m = re.match(r"^(FAILED|ERROR) (\S+)", line)
            if m:
                failed.append(m.group(2))
            elif re.match(r"^=* ?\d+ (passed|failed|error)", line) or re.search(r"\bin [\d.]+s\b", line):
                summary = line.strip(" =\n")
    say(f"pytest: {summary or 'no summary'} (log: {log.relative_to(ROOT)})")
    if proc.returncode != 0 and not failed:
        failed = [f"pytest exited {proc.returncode} (see {log.relative_to(ROOT)})"]
    return failed


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--dry-run", action="store_true",
                    help="resolve, report and test the candidate, but never replace the locks")
    ap.add_argument("--keep-venv", action="store_true", help="keep the throw-away venv for inspection")
    args = ap.parse_args(argv)
    locked_for = re.search(r"with Python (\d+\.\d+)", (ROOT / FULL_LOCK).read_text())
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if locked_for and locked_for.group(1) != here:
        say(f"the locks are for Python {locked_for.group(1)}, this is {here}: run with that Python "
            f"(make upgrade PYTHON=python{locked_for.group(1)})")
        return 2
    WORK.mkdir(parents=True, exist_ok=True)
    out, venv, log = WORK / "candidate", WORK / "venv", WORK / "steps.log"
    log.write_text("")
    try:
        compile_candidate(tools_python(log), out, log)
        old = {name: (ROOT / name).read_text() for name in (FULL_LOCK, RUNTIME_LOCK)}
        new = {name: (out / name).read_text() for name in (FULL_LOCK, RUNTIME_LOCK)}
        if all(parse_lock(old[n]) == parse_lock(new[n]) for n in old):
            say("nothing changed: every locked version is still the newest pyproject allows")
            print("\n".join(report(old[FULL_LOCK], new[FULL_LOCK])))
            return 0
        changes = diff_locks(old[FULL_LOCK], new[FULL_LOCK])
        say(f"{len(changes)} package(s) would change (runtime and test set):")
        print("\n".join(report(old[FULL_LOCK], new[FULL_LOCK])), flush=True)
        py = install_candidate(out, venv, log)
        failed = run_checks(py, WORK / "tests.log")
    except StepFailed as exc:
        say(f"{exc}\nupgrade: the locks are unchanged")
        return 2
    finally:
        if not args.keep_venv:
            shutil.rmtree(venv, ignore_errors=True)
    if failed:
        say(f"REJECTED: the candidate fails {len(failed)} test(s); the locks are unchanged "
            f"(candidate kept in {out.relative_to(ROOT)}):")
        print("\n".join(f"  {t}" for t in failed))
        return 1
    if args.dry_run:
        say(f"dry run: the candidate passes; the locks are unchanged (candidate in {out.relative_to(ROOT)})")
        return 0
    for name in (RUNTIME_LOCK, FULL_LOCK):
        os.replace(out / name, ROOT / name)
    say(f"ACCEPTED: {RUNTIME_LOCK} and {FULL_LOCK} updated; the next `make test` re-installs .venv from them; "
        "review with `git diff --stat` and commit the locks")
    return 0


if __name__ == "__main__":
    sys.exit(main())
