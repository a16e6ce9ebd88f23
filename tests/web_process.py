"""A fresh interpreter playing the web app against a private Redis no worker consumes, for
tests that read back what ``.delay()`` and ``enqueue_many`` pushed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.services import PrivateRedis

ROOT = Path(__file__).resolve().parents[1]


def run_against_private_redis(script: str, directory: Path) -> dict[str, Any]:
    """Run ``script`` (given the Redis URL as ``sys.argv[1]``, and as ``REDIS_URL``) and
    return the JSON object its last line prints."""
    server = PrivateRedis(directory).start()
    try:
        env = {k: v for k, v in os.environ.items() if k not in ("BROKER_URL", "RESULT_BACKEND")}
        env.update(REDIS_URL=server.url, PYTHONPATH=str(ROOT))
        done = subprocess.run(
            [sys.executable, "-c", script, server.url],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
    finally:
        server.stop()
    assert done.returncode == 0, done.stderr
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def without_ids(message: dict[str, Any]) -> dict[str, Any]:
    """A task message as kombu pushed it, less what differs from one message to the next."""
    headers = {k: v for k, v in message["headers"].items() if k not in ("id", "root_id")}
    varying = ("correlation_id", "delivery_tag")
    properties = {k: v for k, v in message["properties"].items() if k not in varying}
    return {**message, "headers": headers, "properties": properties}
