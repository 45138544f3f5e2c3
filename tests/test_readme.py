"""The README's ccxt snippet runs, unmodified but for the port, against a real simulator."""

import re
import subprocess
import sys
from pathlib import Path

from workers.simproc import spawn_sim

ROOT = Path(__file__).resolve().parents[1]


def readme_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    m = re.search(r"<!-- readme-snippet:.*?-->\s*```python\n(.*?)```", text, re.S)
    assert m, "README lost its ccxt snippet"
    return m.group(1)


def test_readme_ccxt_snippet_trades_against_the_simulator(tmp_path):
    code = readme_snippet()
    assert 'SIM = "http://127.0.0.1:8701"' in code
    with spawn_sim("sim-a", tmp_path / "sim-a.sqlite") as sim:
        script = tmp_path / "snippet.py"
        script.write_text(code.replace("http://127.0.0.1:8701", sim.url))
        proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "BTC funding rate" in proc.stdout
    assert "position 0.01 long" in proc.stdout
    assert "flat: True" in proc.stdout
