"""The house rules, checked on the source (every import, including those inside functions):

* layers only point down (the order the README draws):
  command line (hedgeflow) → lab → processes (workers) → control → workflows → activities
  → messages → telemetry, ledger, venues → domain, config;
  the simulator (venues/sim) is a program of its own: it imports only domain and config;
* no file outside tests and migrations is over 500 lines;
* activities are called, and workflows started, queried and signalled, through their
  definitions, never by a string name (outside tests).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RANK = {
    "domain": 0, "config": 0,
    "venues": 1, "ledger": 1, "telemetry": 1,
    "messages": 2,
    "activities": 3,
    "workflows": 4,
    "control": 5,
    "workers": 6,
    "lab": 7,
    "hedgeflow": 8,
}
SIM = "venues.sim"
SIM_MAY_IMPORT = {"domain", "config"}
SIM_ENTRY = {"venues.sim.__main__", "venues.sim.cli"}  # what ``hedgeflow sim`` launches


def sources() -> list[Path]:
    return sorted(p for pkg in RANK for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts)


def module_of(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    return ".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts)


def imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text())
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out.append((node.lineno, node.module))
    return out


def violations() -> list[str]:
    bad = []
    for path in sources():
        mod = module_of(path)
        top = mod.split(".")[0]
        for line, name in imports(path):
            target = name.split(".")[0]
            if target not in RANK or target == top and not mod.startswith(SIM):
                continue
            where = f"{path.relative_to(ROOT)}:{line} imports {name}"
            if mod.startswith(SIM):
                if not (name.startswith(SIM) or target in SIM_MAY_IMPORT):
                    bad.append(f"{where} (the simulator imports only domain and config)")
            elif name.startswith(SIM) and not (top == "hedgeflow" and name in SIM_ENTRY):
                bad.append(f"{where} (the simulator is a program: talk to it over HTTP)")
            elif RANK[target] >= RANK[top]:
                bad.append(f"{where} (rank {RANK[target]} from rank {RANK[top]})")
    return bad


def test_layers_only_point_down():
    assert violations() == []


def test_the_checker_can_fail(tmp_path, monkeypatch):
    """A lower layer importing a higher one is caught."""
    fake = ROOT / "domain" / "_arch_probe.py"
    fake.write_text("def f():\n    from workflows.trade import TradeWorkflow\n    return TradeWorkflow\n")
    try:
        assert any("_arch_probe.py:2 imports workflows.trade" in v for v in violations())
    finally:
        fake.unlink()


@pytest.mark.parametrize("path", sources(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_file_over_500_lines(path):
    n = len(path.read_text().splitlines())
    assert n <= 500, f"{path.relative_to(ROOT)} has {n} lines"


def _string_calls(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
            continue
        first = node.args[0]
        if node.func.attr in ("execute_activity", "execute_local_activity", "start_activity", "start_workflow",
                              "execute_workflow", "query", "signal", "execute_update", "start_update") \
                and isinstance(first, ast.Constant) and isinstance(first.value, str):
            found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.attr}({first.value!r})")
    return found


def test_nothing_called_by_string_name():
    assert [c for p in sources() for c in _string_calls(p)] == []
