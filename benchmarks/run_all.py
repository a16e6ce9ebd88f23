"""``make bench``: run every ``benchmarks/*.py``, then print one table of their goals and write it
to ``benchmarks/results.json`` (gitignored).

    .venv/bin/python benchmarks/run_all.py [NAME ...]     # e.g. enqueue core_overhead

Each script runs as a subprocess of this interpreter, its output passed through, with
``SAAS_TASKS_BENCH_RESULTS`` naming a file it appends its goal lines to (``_report.report``).
The table has one row per goal: benchmark, figure, anchor, measured ratio, goal, met. An unmet
goal is a result, not a failure (some scripts also exit 1 for it): the exit status is non-zero
only when a script crashed, that is ended without reporting its goals (a traceback, a failed
correctness check), and the table says which. Modules starting with ``_`` are helpers, not
benchmarks.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import RESULTS_ENV

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results.json"
COLUMNS = ("benchmark", "figure", "anchor", "ratio", "goal", "met")


def scripts(names: list[str]) -> list[Path]:
    found = sorted(
        p for p in HERE.glob("*.py") if not p.name.startswith("_") and p.name != "run_all.py"
    )
    if not names:
        return found
    wanted = {name.removesuffix(".py") for name in names}
    unknown = wanted - {p.stem for p in found}
    if unknown:
        raise SystemExit(f"no such benchmark: {', '.join(sorted(unknown))}")
    return [p for p in found if p.stem in wanted]


def run(script: Path) -> tuple[list[dict[str, Any]], int, float]:
    """Run one script; its goal lines, exit status and duration in seconds."""
    with tempfile.NamedTemporaryFile(prefix="bench-", suffix=".jsonl", delete=False) as handle:
        path = Path(handle.name)
    env = {**os.environ, RESULTS_ENV: str(path)}
    started = time.monotonic()
    try:
        code = subprocess.run([sys.executable, str(script)], env=env, check=False).returncode
        lines = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    finally:
        path.unlink(missing_ok=True)
    return lines, code, time.monotonic() - started


def row(line: dict[str, Any]) -> dict[str, str]:
    note = line.get("note") or ""
    if line["met"] is None:
        met = note if note.startswith("skipped") else "n/a"
    else:
        met = "met" if line["met"] else "NOT met"
    ratio = "" if line["ratio"] is None else f"{line['ratio']:.2f}"
    return {
        "benchmark": line["benchmark"],
        "figure": line["figure"],
        "anchor": line["anchor"],
        "ratio": ratio,
        "goal": line["goal"],
        "met": met,
    }


def table(rows: list[dict[str, str]]) -> str:
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in COLUMNS}
    lines = ["  ".join(c.ljust(widths[c]) for c in COLUMNS)]
    lines.append("  ".join("-" * widths[c] for c in COLUMNS))
    lines += ["  ".join(r[c].ljust(widths[c]) for c in COLUMNS).rstrip() for r in rows]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    crashed = []
    for script in scripts(args.names):
        print(f"\n== {script.relative_to(HERE.parent)}", flush=True)
        lines, code, seconds = run(script)
        print(f"== {script.name}: exit {code} after {seconds:.0f}s", flush=True)
        if not lines:  # a script that reached its report has run; its exit status is kept
            why = f"exit {code}" if code != 0 else "reported no goal"
            crashed.append(script.stem)
            lines.append(
                {
                    "benchmark": script.stem,
                    "figure": "-",
                    "anchor": "-",
                    "ratio": None,
                    "goal": "-",
                    "met": None,
                    "note": f"crashed ({why})",
                }
            )
        for line in lines:
            results.append({**line, "seconds": round(seconds, 1), "exit": code})

    rows = [row(line) for line in results]
    for line, shown in zip(results, rows, strict=True):
        if line.get("note", "").startswith("crashed"):
            shown["met"] = line["note"]
    print()
    print(table(rows))
    RESULTS.write_text(json.dumps({"results": results, "crashed": crashed}, indent=2) + "\n")
    print(f"\nwritten to {RESULTS.relative_to(HERE.parent)}")
    if crashed:
        print(f"crashed: {', '.join(crashed)}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
