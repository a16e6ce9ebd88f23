"""A worker on an unsafe or invalid configuration does not start: it exits non-zero with a
message that names the variable and the fix, before consuming a single message."""

from __future__ import annotations

import pytest

from tests.system.conftest import SystemProcesses


def _longest_declared_limit() -> str:
    """What the worker should name: the longest hard limit any task declares, and its task."""
    import tests.sample_tasks  # noqa: F401 - the worker includes them too
    from saas_tasks import app
    from saas_tasks.reliability.startup_checks import longest_hard_time_limit

    app.loader.import_default_modules()
    seconds, _holder = longest_hard_time_limit(app)
    return f"{seconds:.0f}s, "  # several tasks may share the longest limit: any one is named


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(
            {
                "SAAS_TASKS_TASK_TIME_LIMIT": "30",
                "SAAS_TASKS_TASK_SOFT_TIME_LIMIT": "25",
                "SAAS_TASKS_VISIBILITY_TIMEOUT": "30",
            },
            [
                "visibility timeout (30s, SAAS_TASKS_VISIBILITY_TIMEOUT)",
                "longest hard time limit (30s",
                "Raise SAAS_TASKS_VISIBILITY_TIMEOUT above 30",
            ],
            id="equal-to-the-default-limit",
        ),
        pytest.param(
            # The deployed config, without the system tier's annotation that shortens every
            # task's limits: the longest declared limit wins and its task is named.
            {
                "SAAS_TASKS_CELERY_CONFIG": "config.celeryconfig",
                "SAAS_TASKS_VISIBILITY_TIMEOUT": "10",
            },
            [
                "visibility timeout (10s, SAAS_TASKS_VISIBILITY_TIMEOUT)",
                "longest hard time limit ({longest}",
            ],
            id="below-a-task-s-own-limit",
        ),
    ],
)
def test_worker_refuses_to_start_when_the_visibility_timeout_is_not_above_the_hard_time_limit(
    system_processes: SystemProcesses, env: dict[str, str], expected: list[str]
) -> None:
    worker = system_processes.worker("unsafe", wait=False, **env)
    code = worker.wait_exit(timeout=30)
    log = worker.log()
    assert code != 0
    assert "saas-tasks: refusing to start the worker" in log
    for fragment in expected:
        assert fragment.format(longest=_longest_declared_limit()) in log
    assert " ready." not in log


@pytest.mark.parametrize(
    ("env", "variable"),
    [
        pytest.param(
            {"SAAS_TASKS_TASK_TIME_LIMIT": "abc"}, "SAAS_TASKS_TASK_TIME_LIMIT", id="not-a-number"
        ),
        pytest.param(
            {"SAAS_TASKS_ENV": "production", "SAAS_TASKS_SECRET_KEY": "changethis"},
            "SAAS_TASKS_SECRET_KEY is a placeholder",
            id="placeholder-secret",
        ),
        pytest.param({"REDIS_URL": "localhost:6379"}, "REDIS_URL", id="url-without-scheme"),
    ],
)
def test_worker_with_an_invalid_setting_fails_at_start_naming_the_variable(
    system_processes: SystemProcesses, env: dict[str, str], variable: str
) -> None:
    worker = system_processes.worker("invalid", wait=False, **env)
    code = worker.wait_exit(timeout=30)
    log = worker.log()
    assert code != 0
    assert "invalid configuration" in log
    assert variable in log
    assert " ready." not in log
