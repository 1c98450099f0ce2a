"""The chaos suite as a table: kill -9 the worker, restart Temporal, restart the API mid-run.

    .venv/bin/python bench/chaos.py [-n 1] [--only worker,temporal,api] [--keep]

Runs the scenarios of devkit/chaos.py (the ones ``pytest -m chaos`` asserts) ``-n`` times each and
prints a markdown table: per scenario, runs completed, model calls made and repeated (in-flight
retries vs finished calls asked again), lifecycle or SSE events expected/seen/lost/repeated, codex
attempts redone, disruptions, the longest stall and the wall time; then the notes. Exits 1 if a
promise was broken. ``--keep`` keeps each scenario's directory (logs, databases, workspaces).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from devkit.chaos import SCENARIOS, ChaosReport  # noqa: E402


async def main(n: int, names: list[str], keep: bool) -> bool:
    reports: list[ChaosReport] = []
    for _ in range(n):
        for name in names:
            root = Path(tempfile.mkdtemp(prefix=f"codexflow-chaos-{name}-"))
            report = await SCENARIOS[name](root)
            reports.append(report)
            print(report.row(), file=sys.stderr, flush=True)
            if keep or not report.ok:
                print(f"  kept {root}", file=sys.stderr)
            else:
                shutil.rmtree(root, ignore_errors=True)
    print(f"chaos suite: 3 concurrent runs per scenario, {os.cpu_count()} CPUs, n={n}\n")
    print(ChaosReport.table(reports))
    print()
    for report in reports:
        print(f"{report.scenario}: {report.details()}")
    return all(r.ok for r in reports)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("-n", type=int, default=1, help="times to run each scenario")
    parser.add_argument("--only", default=",".join(SCENARIOS), help="scenarios, comma-separated")
    parser.add_argument("--keep", action="store_true", help="keep the scenario directories")
    args = parser.parse_args()
    names = [name.strip() for name in args.only.split(",") if name.strip()]
    if unknown := set(names) - set(SCENARIOS):
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))} (of {', '.join(SCENARIOS)})")
    sys.exit(0 if asyncio.run(main(args.n, names, args.keep)) else 1)
