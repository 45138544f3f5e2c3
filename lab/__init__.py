"""The lab: self-contained runs of the whole system for measurement and fault injection.

``lab.harness.Lab`` starts a private Temporal dev server, simulated venues and one worker
subprocess (through ``workers.proc`` / ``workers.simproc``); ``lab.bench`` measures figures
against the asyncio + ccxt baseline of ``lab.baseline``; ``lab.chaos`` runs trades under faults
and checks the invariants; ``lab.bench_scan`` times one scanner cycle. The lab sits above the
workers: it may import anything below it, and nothing below imports the lab.
"""
