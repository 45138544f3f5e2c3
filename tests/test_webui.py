"""The dev server's Web UI lists TradeWorkflows filtered by the TradeState search attribute and
opens one (headless Chromium: the DOM checked, screenshots saved). ``.ci/run`` installs Debian's
chromium when it is missing, so this runs on every CI machine; elsewhere it skips, saying why."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
import urllib.parse
from pathlib import Path

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or "")
                 if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (Debian: apt-get install chromium)")


async def test_web_ui_lists_trades_by_trade_state(temporal_env, tmp_path):
    from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

    client = await temporal_env.client()
    # a TradeWorkflow start (no worker needed: the UI lists what the server knows)
    wf_id = f"trade-WEBUI-sim-a-sim-b-{tmp_path.name[-8:]}"
    sa = TypedSearchAttributes([
        SearchAttributePair(SearchAttributeKey.for_keyword("TradeState"), "holding"),
        SearchAttributePair(SearchAttributeKey.for_keyword("Symbol"), "WEBUI/USDT:USDT"),
    ])
    handle = await client.start_workflow("TradeWorkflow", args=[], id=wf_id, task_queue="webui-no-worker",
                                         search_attributes=sa)
    try:
        query = "WorkflowType = 'TradeWorkflow' AND TradeState = 'holding'"
        url = (f"http://127.0.0.1:{temporal_env.ui_port}/namespaces/{temporal_env.namespace}/workflows?query="
               + urllib.parse.quote(query))
        dom = await asyncio.to_thread(subprocess.run, [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--virtual-time-budget=15000", "--window-size=1400,900", "--dump-dom", url,
        ], capture_output=True, text=True, timeout=90)
        assert wf_id in dom.stdout, dom.stderr[-2000:]
        # open the trade: its detail page names the workflow, its type and its search attributes
        detail = (f"http://127.0.0.1:{temporal_env.ui_port}/namespaces/{temporal_env.namespace}/workflows/"
                  f"{urllib.parse.quote(wf_id)}/{handle.result_run_id}/history")
        # a running workflow's page long-polls its history, so virtual time would never run out:
        # the placeholder (it has no worker) is ended first, its page then renders in full
        await handle.terminate(reason="web ui test: open its page")
        page = await asyncio.to_thread(subprocess.run, [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--virtual-time-budget=15000", "--window-size=1400,900", "--dump-dom", detail,
        ], capture_output=True, text=True, timeout=90)
        missing = [w for w in (wf_id, "TradeWorkflow", "Terminated") if w not in page.stdout]
        assert not missing, (missing, page.stderr[-2000:])
        shot2 = tmp_path / "trade.png"
        await asyncio.to_thread(subprocess.run, [
            CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--virtual-time-budget=15000", "--window-size=1400,900", f"--screenshot={shot2}", detail,
        ], capture_output=True, timeout=90)
        assert shot2.exists() and shot2.stat().st_size > 10_000
        print(f"\nWeb UI screenshot of the trade: {shot2}")
    finally:
        with contextlib.suppress(Exception):  # already ended when the detail page was opened
            await handle.terminate(reason="web ui test done")
