"""``.delay()`` against a dead broker fails fast with one clear error instead of hanging.

It runs in a fresh interpreter: the app reads ``REDIS_URL`` once, at import, as a web app's
process would.
"""

from __future__ import annotations

import json
import subprocess
import sys

from tests.services import free_port
from tests.system.conftest import ROOT, subprocess_env

SCRIPT = """
import json, time
from tests.sample_tasks import echo
started = time.monotonic()
try:
    echo.delay("hello")
except Exception as exc:
    outcome = {"type": f"{type(exc).__module__}.{type(exc).__name__}", "message": str(exc)}
else:
    outcome = {"type": None, "message": "enqueued"}
outcome["elapsed"] = time.monotonic() - started
print(json.dumps(outcome))
"""


def test_delay_with_the_broker_down_raises_broker_unavailable_within_two_seconds() -> None:
    closed = free_port()  # bound and released: nothing listens there
    dead = f"redis://127.0.0.1:{closed}/0"
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
        env=subprocess_env(REDIS_URL=dead),
    )
    assert done.returncode == 0, done.stderr
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["type"] == "saas_tasks.exceptions.BrokerUnavailable"
    assert outcome["elapsed"] < 2.5
    assert f"127.0.0.1:{closed}" in outcome["message"]
    assert "could not enqueue tests.echo" in outcome["message"]
    assert "nothing was enqueued" in outcome["message"]
