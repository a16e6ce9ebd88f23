"""The one convention every benchmark follows: at its end, a script calls :func:`report` with its
goal lines, which prints them and, when ``benchmarks/run_all.py`` runs it, appends them as JSON
lines to the file named by ``SAAS_TASKS_BENCH_RESULTS``; the runner builds its table from them.

A line is (benchmark, figure, anchor, measured ratio, goal, met). A script that cannot run here
(no PostgreSQL) calls :func:`skip` instead, so that the table says why rather than crashing.
Standard library only: the runner imports it without the project's environment.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

#: Set by the runner: the JSON-lines file the scripts append their goal lines to.
RESULTS_ENV = "SAAS_TASKS_BENCH_RESULTS"


@dataclass(frozen=True)
class Goal:
    """One measured figure against its anchor and goal.

    ``figure`` and ``anchor`` are what was measured, with units (``"p99 1.21 ms"``); ``ratio``
    is the number the goal is stated on (a multiple of the anchor, or the figure itself when the
    goal is absolute); ``met`` is None when the script could not decide (skipped).
    """

    figure: str
    anchor: str
    ratio: float | None
    goal: str
    met: bool | None
    benchmark: str = ""
    note: str = ""


def report(benchmark: str, goals: list[Goal]) -> None:
    """Print ``goals`` under ``benchmark`` and hand them to the runner (if any)."""
    lines = [Goal(**{**asdict(goal), "benchmark": benchmark}) for goal in goals]
    print()
    print(f"== {benchmark}: goals")
    for line in lines:
        verdict = {True: "met", False: "NOT met", None: "skipped"}[line.met]
        ratio = "" if line.ratio is None else f"  ratio {line.ratio:.2f}"
        print(f"  {line.figure} vs {line.anchor}{ratio}  goal {line.goal}: {verdict}")
        if line.note:
            print(f"    {line.note}")
    path = os.environ.get(RESULTS_ENV)
    if path:
        with Path(path).open("a", encoding="utf-8") as out:
            for line in lines:
                out.write(json.dumps(asdict(line)) + "\n")


def skip(benchmark: str, reason: str, goals: list[str] | None = None) -> None:
    """Report that ``benchmark`` did not run here, and why (one line per goal it would check)."""
    report(
        benchmark,
        [Goal("-", "-", None, goal, None, note=f"skipped: {reason}") for goal in goals or ["-"]],
    )


def postgres_problem(url: str) -> str | None:
    """Why the PostgreSQL server of ``url`` does not answer, or None when it does.

    Asks the server's ``postgres`` maintenance database, as the scripts that create their own
    database do; the psycopg import stays inside so that the runner needs no driver.
    """
    if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        return f"{url or '(empty)'} is not a PostgreSQL URL"
    import psycopg
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    plain = url.replace("postgresql+psycopg://", "postgresql://", 1)
    params = conninfo_to_dict(plain)
    params["dbname"] = "postgres"
    try:
        with psycopg.connect(make_conninfo(**params), connect_timeout=3):
            return None
    except psycopg.Error as exc:
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"


def skip_without_postgres(benchmark: str, url: str, flag: str, goals: list[str]) -> None:
    """Exit the script with a skipped report when no PostgreSQL answers at ``url``."""
    problem = postgres_problem(url)
    if problem is None:
        return
    skip(benchmark, f"needs PostgreSQL (set {flag}); {problem}", goals)
    sys.exit(0)
