"""Smoke tier: pytest-celery's Docker-backed fixtures (``celery_setup``, ``celery_worker``).

Run on its own with the plugin enabled (``make test`` does it):

    .venv/bin/pytest tests/smoke -p celery -o addopts="-ra --strict-markers --strict-config"

The other tiers disable the plugin (``-p no:celery`` in pyproject.toml) so that its
``celery_worker`` never shadows their in-process ``inproc_worker``. Where no Docker engine
answers, every test here is skipped with that reason, in CI too: the machine CI runs on has the
docker client but no engine.
"""

from __future__ import annotations

import functools
import gc
import os
import warnings
from pathlib import Path

import pytest


@functools.cache
def docker_problem() -> str | None:
    """None when a Docker engine answers, else why not."""
    if not os.environ.get("DOCKER_HOST") and not Path("/var/run/docker.sock").exists():
        return "no Docker engine answers (DOCKER_HOST is unset, /var/run/docker.sock is absent)"
    try:
        import docker
    except ImportError as exc:
        return f"the docker SDK is not installed ({exc})"
    with warnings.catch_warnings():
        # A failed docker.from_env() leaves its socket to the garbage collector.
        warnings.simplefilter("ignore", ResourceWarning)
        try:
            client = docker.from_env(timeout=3)
            client.ping()
            client.close()
        except Exception as exc:
            return f"no Docker engine answers ({type(exc).__name__}: {exc})"
        finally:
            gc.collect()
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    problem = docker_problem()
    if problem is None:
        return
    skip = pytest.mark.skip(reason=f"smoke tier needs Docker: {problem}")
    for item in items:
        if "tests/smoke/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(skip)
