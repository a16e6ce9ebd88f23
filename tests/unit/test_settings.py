"""Settings: one typed object from the environment, failing fast with the variable's name."""

from __future__ import annotations

from pathlib import Path

import pytest

from saas_tasks.celery_config import build_configuration, celery_defaults, route_by_name
from saas_tasks.exceptions import ConfigurationError
from saas_tasks.settings import load_settings


def test_defaults_are_the_embedded_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "REDIS_URL",
        "BROKER_URL",
        "DATABASE_URL",
        "SAAS_TASKS_TASK_TIME_LIMIT",
        "SAAS_TASKS_TASK_SOFT_TIME_LIMIT",
        "SAAS_TASKS_VISIBILITY_TIMEOUT",
    ):
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert settings.database_url.startswith("sqlite:///./var/")
    assert settings.broker == settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.visibility_timeout > settings.task_time_limit


def test_a_malformed_number_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAAS_TASKS_TASK_TIME_LIMIT", "ten minutes")
    with pytest.raises(ConfigurationError, match="SAAS_TASKS_TASK_TIME_LIMIT"):
        load_settings()


def test_a_database_url_of_an_unsupported_kind_names_the_variable_and_the_fix(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "mysql://root@localhost/app")
    with pytest.raises(ConfigurationError, match=r"DATABASE_URL.*postgresql://"):
        load_settings()


def test_the_placeholder_secret_is_refused_in_production(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAAS_TASKS_ENV", "production")
    monkeypatch.delenv("SAAS_TASKS_SECRET_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="SAAS_TASKS_SECRET_KEY is a placeholder"):
        load_settings()
    monkeypatch.setenv("SAAS_TASKS_SECRET_KEY", "a-long-random-value-0123456789")
    assert load_settings().env == "production"


def test_a_soft_limit_at_or_above_the_hard_limit_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SAAS_TASKS_TASK_TIME_LIMIT", "100")
    monkeypatch.setenv("SAAS_TASKS_TASK_SOFT_TIME_LIMIT", "100")
    with pytest.raises(ConfigurationError, match="SOFT_TIME_LIMIT must be below"):
        load_settings()


def test_celery_defaults_are_json_only_late_acked_and_bounded(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SAAS_TASKS_PUBLISH_TIMEOUT", "2")
    monkeypatch.delenv("SAAS_TASKS_VISIBILITY_TIMEOUT", raising=False)
    conf = celery_defaults(load_settings())
    assert conf["accept_content"] == ["json"] and conf["task_serializer"] == "json"
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["task_publish_retry_policy"]["max_retries"] == 1
    assert conf["broker_transport_options"]["visibility_timeout"] == 7200
    assert conf["broker_connection_retry_on_startup"] is True
    assert conf["worker_send_task_events"] is True


def test_a_broker_url_other_than_redis_gets_no_redis_transport_options(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("BROKER_URL", "amqp://guest:guest@127.0.0.1:5672//")
    conf = celery_defaults(load_settings())
    assert conf["broker_url"].startswith("amqp://")
    assert conf["broker_transport_options"] == {}


def test_routes_follow_the_stable_task_name_prefix() -> None:
    assert route_by_name("saas_tasks.email.send", (), {}, {}) == {"queue": "email"}
    assert route_by_name("saas_tasks.deadletter.record", (), {}, {}) == {"queue": "dead_letter"}
    assert route_by_name("myapp.anything", (), {}, {}) is None


def test_a_missing_deployment_module_leaves_the_defaults_alone() -> None:
    conf = build_configuration(load_settings(), "no_such_package.celeryconfig")
    assert conf["task_serializer"] == "json"


def test_a_deployment_module_layers_over_the_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "ops_layer.py").write_text("worker_concurrency = 3\nresult_expires = 60\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    conf = build_configuration(load_settings(), "ops_layer")
    assert conf["worker_concurrency"] == 3 and conf["result_expires"] == 60
    assert conf["task_serializer"] == "json"


def test_a_deployment_module_with_a_broken_import_is_not_silently_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "broken_layer.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModuleNotFoundError, match="no_such_dependency_xyz"):
        build_configuration(load_settings(), "broken_layer")
