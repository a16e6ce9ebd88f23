"""The deployable layer: config/celeryconfig.py, config/beat_schedule.py, config/flowerconfig.py
and the Procfile, checked against the contracts they must keep."""

from __future__ import annotations

import logging
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from celery.app.defaults import DEFAULTS

from saas_tasks.celery_config import build_configuration, deployment_overrides
from saas_tasks.settings import Settings, get_settings

ROOT = Path(__file__).resolve().parents[2]
FLOWER_OPTIONS = {"basic_auth", "max_tasks", "purge_offline_workers"}


def test_every_deployment_setting_is_a_celery_setting() -> None:
    overrides = deployment_overrides("config.celeryconfig")

    assert overrides, "config.celeryconfig was not found"
    # RedBeat's own settings (the beat scheduler) are read by RedBeat, not by Celery.
    unknown = set(overrides) - set(DEFAULTS)
    assert {key for key in unknown if not key.startswith("redbeat_")} == set()


def test_the_deployment_layer_keeps_json_only_and_late_acks() -> None:
    conf = build_configuration(get_settings(), "config.celeryconfig")

    assert conf["task_serializer"] == conf["result_serializer"] == "json"
    assert conf["accept_content"] == ["json"]
    assert conf["task_acks_late"] is True
    assert conf["task_reject_on_worker_lost"] is True
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["worker_send_task_events"] is True


def test_time_limits_and_memory_come_from_the_settings() -> None:
    settings = get_settings()
    conf = deployment_overrides("config.celeryconfig")

    assert conf["task_time_limit"] == settings.task_time_limit
    assert conf["task_soft_time_limit"] == settings.task_soft_time_limit
    assert conf["worker_max_memory_per_child"] == settings.worker_max_memory_per_child


def test_every_beat_entry_names_a_registered_task_and_expires() -> None:
    from config.beat_schedule import build_schedule
    from saas_tasks import app

    app.loader.import_default_modules()
    schedule = build_schedule(Settings(disable_schedules=False))

    assert "saas_tasks.cleanup.purge_dead_letters" in {e["task"] for e in schedule.values()}
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, f"{name}: no task named {entry['task']!r}"
        assert entry["options"]["expires"] > 0, name
    assert app.conf.timezone == "UTC"


def test_dead_letters_are_purged_daily_at_half_past_four_utc() -> None:
    from config.beat_schedule import build_schedule

    entry = build_schedule(Settings(disable_schedules=False))["purge-expired-dead-letters"]

    assert entry["schedule"].hour == {4}
    assert entry["schedule"].minute == {30}


def test_disabled_schedules_leave_beat_empty_and_say_so(caplog: pytest.LogCaptureFixture) -> None:
    from config.beat_schedule import build_schedule

    with caplog.at_level(logging.WARNING, logger="saas_tasks.schedules"):
        schedule = build_schedule(Settings(disable_schedules=True))

    assert schedule == {}
    assert "SAAS_TASKS_DISABLE_SCHEDULES=true" in caplog.text


@pytest.fixture()
def flower_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    for name in ("FLOWER_BASIC_AUTH", "SAAS_TASKS_FLOWER_BASIC_AUTH"):
        monkeypatch.delenv(name, raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    monkeypatch.undo()
    get_settings.cache_clear()


def flower_config(monkeypatch: pytest.MonkeyPatch, **env: str) -> dict[str, Any]:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    return runpy.run_path(str(ROOT / "config" / "flowerconfig.py"))


def public_names(namespace: dict[str, Any]) -> set[str]:
    return {name for name in namespace if not name.startswith("_")}


def test_flower_refuses_to_start_without_credentials_outside_development(
    flower_env: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(SystemExit, match="FLOWER_BASIC_AUTH=user:password"):
        flower_config(flower_env, SAAS_TASKS_ENV="test")


def test_flower_in_development_gets_a_generated_password(
    flower_env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    namespace = flower_config(flower_env, SAAS_TASKS_ENV="development")

    (credentials,) = namespace["basic_auth"]
    user, _, password = credentials.partition(":")
    assert user == "admin" and len(password) >= 16
    assert credentials in capsys.readouterr().out


def test_flower_takes_every_pair_and_sets_only_its_own_options(
    flower_env: pytest.MonkeyPatch,
) -> None:
    namespace = flower_config(
        flower_env, SAAS_TASKS_ENV="test", FLOWER_BASIC_AUTH="ops:s3cr3t-long,audit:an0ther"
    )

    assert namespace["basic_auth"] == ["ops:s3cr3t-long", "audit:an0ther"]
    assert namespace["max_tasks"] == 10000
    assert public_names(namespace) == FLOWER_OPTIONS


@pytest.mark.parametrize(
    ("value", "message"),
    [("ops", "without a password"), (":pw", "without a user"), ("ops:changeme", "placeholder")],
)
def test_flower_refuses_malformed_or_placeholder_credentials(
    flower_env: pytest.MonkeyPatch, value: str, message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        flower_config(
            flower_env,
            SAAS_TASKS_ENV="production",
            SAAS_TASKS_SECRET_KEY="x" * 40,
            FLOWER_BASIC_AUTH=value,
        )


def procfile() -> dict[str, str]:
    entries = {}
    for line in (ROOT / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, command = line.partition(":")
            entries[name] = command.strip()
    return entries


def test_the_procfile_execs_each_process_and_never_embeds_beat() -> None:
    entries = procfile()

    assert set(entries) == {"worker", "beat", "flower"}
    for name, command in entries.items():
        assert f"exec celery -A saas_tasks {name}" in command, name
    assert " -B" not in entries["worker"] and "--beat" not in entries["worker"]
    assert "--conf=config/flowerconfig.py" in entries["flower"]


def environment_names() -> set[str]:
    """The name a user sets for every field of Settings."""
    names = set()
    for field_name, field in Settings.model_fields.items():
        alias = field.validation_alias
        choices = getattr(alias, "choices", None)
        names.add(str(choices[0]) if choices else f"SAAS_TASKS_{field_name.upper()}")
    return names


@pytest.mark.parametrize("document", ["README.md", "config/env.example"])
def test_every_environment_variable_is_documented(document: str) -> None:
    text = (ROOT / document).read_text()

    missing = {name for name in environment_names() if name not in text}

    assert missing == set(), f"{document} does not mention {sorted(missing)}"
