"""The ``saas-tasks`` command on the real database and Redis: what an operator types, what it
prints, and what it changes. Most tests drive click's CliRunner in this process; the ones
about broken services run the installed console script in a subprocess, as an operator would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from celery.result import AsyncResult
from click.testing import CliRunner, Result

from saas_tasks import migrate
from saas_tasks.cli import cli
from saas_tasks.models import utcnow
from saas_tasks.reliability import deadletter
from saas_tasks.reliability.deadletter import DeadLetterEntry
from tests import sample_tasks
from tests.conftest import wait_for

SCRIPT = Path(sys.executable).with_name("saas-tasks")


def run(*args: str, input: str | None = None) -> Result:
    # catch_exceptions=False: an unexpected exception fails the test with its traceback
    # instead of hiding in result.exception.
    return CliRunner().invoke(cli, list(args), input=input, catch_exceptions=False)


def run_script(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def seed(
    task_id: str,
    task_name: str = "tests.echo",
    exception: str = "ValueError",
    minutes_ago: float = 1,
    **fields: Any,
) -> int:
    entry = DeadLetterEntry(
        task_id=task_id,
        task_name=task_name,
        exception_type=exception,
        exception_message=f"{exception} in {task_id}",
        traceback=f"Traceback ...\n{exception}",
        failed_at=utcnow() - timedelta(minutes=minutes_ago),
        queue="default",
        **fields,
    )
    entry_id, created = deadletter.store(entry)
    assert created
    return entry_id


def ids(rows: list[dict[str, Any]]) -> list[str]:
    return [row["task_id"] for row in rows]


@pytest.fixture()
def three_entries(clean_state: None) -> None:
    seed("old-value", "tests.echo", "ValueError", minutes_ago=3 * 24 * 60)
    seed("new-value", "tests.echo", "ValueError", minutes_ago=5)
    seed("new-key", "tests.other", "builtins.KeyError", minutes_ago=1)


# --- list, show, stats -----------------------------------------------------------------------


def test_list_prints_a_table_with_the_newest_failure_first(three_entries: None) -> None:
    result = run("dlq", "list")
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert lines[0].split() == [
        "ID",
        "LAST",
        "FAILURE",
        "TASK",
        "EXCEPTION",
        "RETRIES",
        "STATUS",
        "MESSAGE",
    ]
    body = lines[2:]
    assert [line.split()[3] for line in body] == ["tests.other", "tests.echo", "tests.echo"]
    assert "KeyError in new-key" in body[0] and "pending" in body[0]


def test_list_filters_by_task_exception_since_and_status_in_json(three_entries: None) -> None:
    def listed(*options: str) -> list[str]:
        result = run("dlq", "list", "--json", *options)
        assert result.exit_code == 0, result.output
        return ids(json.loads(result.stdout))

    assert listed() == ["new-key", "new-value", "old-value"]
    assert listed("--task", "tests.echo") == ["new-value", "old-value"]
    assert listed("--exception", "KeyError") == ["new-key"]
    assert listed("--since", "2h") == ["new-key", "new-value"]
    assert listed("--since", (utcnow() - timedelta(days=1)).date().isoformat()) == [
        "new-key",
        "new-value",
    ]
    assert listed("--task", "tests.echo", "--since", "1d") == ["new-value"]
    assert listed("--status", "replayed") == []
    assert listed("--limit", "1") == ["new-key"]


def test_list_refuses_an_unreadable_since_with_a_clear_message(clean_state: None) -> None:
    result = run("dlq", "list", "--since", "yesterday-ish")
    assert result.exit_code == 2
    assert "'yesterday-ish' is neither an ISO date/datetime" in result.stderr
    assert "30m, 2h, 3d" in result.stderr


def test_show_redacts_password_and_api_token_unless_reveal(clean_state: None) -> None:
    entry_id = seed(
        "secretive",
        kwargs={"password": "hunter2", "api_token": "tok-123", "user": "ada"},
        args=["postgresql://app:dbpass@db/app"],
    )
    shown = run("dlq", "show", str(entry_id))
    assert shown.exit_code == 0
    for secret in ("hunter2", "tok-123", "dbpass"):
        assert secret not in shown.stdout
    assert '"password": "[REDACTED]"' in shown.stdout and '"user": "ada"' in shown.stdout
    assert "--reveal" in shown.stderr

    redacted = json.loads(run("dlq", "show", str(entry_id), "--json").stdout)
    assert redacted["kwargs"] == {
        "password": "[REDACTED]",
        "api_token": "[REDACTED]",
        "user": "ada",
    }
    revealed = json.loads(run("dlq", "show", str(entry_id), "--json", "--reveal").stdout)
    assert revealed["kwargs"]["password"] == "hunter2"
    assert revealed["kwargs"]["api_token"] == "tok-123"
    assert revealed["args"] == ["postgresql://app:dbpass@db/app"]


def test_show_finds_an_entry_by_task_id_and_prints_everything_stored(clean_state: None) -> None:
    entry_id = seed(
        "by-task-id",
        "tests.other",
        "builtins.KeyError",
        args=[1, 2],
        kwargs={"n": 3},
        headers={"root_id": "r-1"},
        retries=2,
        worker="w@host",
    )
    data = json.loads(run("dlq", "show", "by-task-id", "--json").stdout)
    assert data["id"] == entry_id
    assert (data["task_name"], data["task_id"], data["reason"]) == (
        "tests.other",
        "by-task-id",
        "failure",
    )
    assert (data["args"], data["kwargs"], data["headers"]) == ([1, 2], {"n": 3}, {"root_id": "r-1"})
    assert (data["queue"], data["worker"], data["retries"]) == ("default", "w@host", 2)
    assert data["exception_type"] == "builtins.KeyError"
    assert data["traceback"].startswith("Traceback")
    assert data["failure_count"] == 1 and data["status"] == "pending"
    assert data["first_failed_at"] == data["last_failed_at"]
    assert data["replay_task_id"] is None and data["replay_count"] == 0

    text = run("dlq", "show", "by-task-id").stdout
    assert "task_name:       tests.other" in text and "worker:          w@host" in text


def test_stats_counts_by_task_and_exception_with_the_same_filters(three_entries: None) -> None:
    counted = json.loads(run("dlq", "stats", "--json").stdout)
    assert counted == [
        {"task_name": "tests.echo", "exception_type": "ValueError", "count": 2},
        {"task_name": "tests.other", "exception_type": "builtins.KeyError", "count": 1},
    ]
    recent = json.loads(run("dlq", "stats", "--json", "--since", "2h").stdout)
    assert [row["count"] for row in recent] == [1, 1]
    table = run("dlq", "stats", "--task", "tests.echo")
    assert table.exit_code == 0
    assert table.stdout.splitlines()[2].split() == ["tests.echo", "ValueError", "2"]
    assert table.stdout.splitlines()[-1] == "total: 2"


def test_unknown_id_exits_non_zero_with_a_clear_message(clean_state: None) -> None:
    for command in (["show", "999999"], ["replay", "999999"], ["show", "no-such-task"]):
        result = run("dlq", *command)
        assert result.exit_code == 3, command
        assert "no dead letter with id" in result.stderr
        assert "Traceback" not in result.output


# --- replay ----------------------------------------------------------------------------------


def test_replay_reruns_the_task_under_its_original_name_and_marks_the_entry(
    worker: Any, redis_client: Any
) -> None:
    failed = sample_tasks.fixable.delay("invoice-7")
    with pytest.raises(ValueError, match="not fixed yet"):
        failed.get(timeout=20)
    entry = wait_for(
        lambda: deadletter.list_entries(deadletter.Filters(task="tests.fixable")),
        message="the dead letter",
    )[0]
    assert entry.status == "pending" and entry.args == ["invoice-7"]

    redis_client.set("test:fixed:invoice-7", 1)  # the operator fixes the cause
    result = run("dlq", "replay", str(entry.id))
    assert result.exit_code == 0, result.output
    new_id = result.stdout.splitlines()[0].rsplit(" as ", 1)[1]
    assert new_id != failed.id
    assert result.stdout.splitlines()[-1] == "1 dead letter replayed"

    rerun = AsyncResult(new_id, app=worker.app)
    assert rerun.get(timeout=20) == {"key": "invoice-7", "fixed": True}
    assert rerun.name == "tests.fixable"
    assert redis_client.lrange("test:fixable-ran", 0, -1) == [b"invoice-7"]
    assert int(redis_client.get("test:attempts:fixable:invoice-7")) == 2

    marked = deadletter.get_entry(entry.id)
    assert marked.status == "replayed"
    assert marked.replay_task_id == new_id
    assert marked.replay_count == 1 and marked.replayed_at is not None
    shown = json.loads(run("dlq", "show", str(entry.id), "--json").stdout)
    assert shown["replay_task_id"] == new_id


def test_replay_all_dry_run_lists_the_matches_and_changes_nothing(three_entries: None) -> None:
    before = json.loads(run("dlq", "list", "--json").stdout)
    result = run("dlq", "replay", "--all", "--task", "tests.echo", "--dry-run")
    assert result.exit_code == 0
    assert "would replay" in result.stdout and "old-value" in result.stdout
    assert "new-key" not in result.stdout
    assert result.stdout.splitlines()[-1] == (
        "2 dead letters would be replayed (dry run: nothing changed)"
    )
    assert json.loads(run("dlq", "list", "--json").stdout) == before


def test_replay_all_replays_the_pending_matches_only(worker: Any) -> None:
    seed("echo-1", "tests.echo", args=["one"])
    seed("echo-2", "tests.echo", args=["two"])
    seed("other", "tests.other", args=["untouched"])
    result = run("dlq", "replay", "--all", "--task", "tests.echo")
    assert result.exit_code == 0, result.output
    new_ids = [
        line.rsplit(" as ", 1)[1]
        for line in result.stdout.splitlines()
        if line.startswith("replayed ")
    ]
    assert len(new_ids) == 2
    assert sorted(AsyncResult(i, app=worker.app).get(timeout=20) for i in new_ids) == ["one", "two"]
    listed = json.loads(run("dlq", "list", "--json").stdout)
    statuses = {row["task_id"]: row["status"] for row in listed}
    assert statuses == {"echo-1": "replayed", "echo-2": "replayed", "other": "pending"}

    again = run("dlq", "replay", "--all", "--task", "tests.echo")
    assert again.stdout.splitlines() == ["0 dead letters replayed"]  # replayed ones are skipped


def test_replay_skips_messages_that_carry_no_task_to_rerun(clean_state: None) -> None:
    entry_id = seed("refused", "unknown", "rejected", reason="rejected")
    many = run("dlq", "replay", "--all")
    assert "skipped" in many.stderr and "a rejected message cannot be re-run" in many.stderr
    assert many.stdout.splitlines() == ["0 dead letters replayed"]
    one = run("dlq", "replay", str(entry_id))
    assert one.exit_code == 1
    assert "carries no task that can be re-run" in one.stderr
    assert deadletter.get_entry(entry_id).status == "pending"


def test_drain_spool_forwards_spooled_dead_letters_to_the_store(worker: Any) -> None:
    deadletter.spool(
        DeadLetterEntry(task_id="spooled-1", task_name="tests.echo", exception_type="ValueError")
    )
    result = run("dlq", "drain-spool")
    assert result.exit_code == 0
    assert result.stdout.startswith("forwarded 1 spooled dead letter from ")
    stored = wait_for(
        lambda: deadletter.list_entries(deadletter.Filters(task="tests.echo")),
        message="the spooled dead letter in the store",
    )
    assert [row.task_id for row in stored] == ["spooled-1"]
    assert not deadletter.spool_path().exists()


def test_replay_needs_one_id_or_all(clean_state: None) -> None:
    assert "give either one ID or --all" in run("dlq", "replay").stderr
    assert run("dlq", "replay", "1", "--all").exit_code == 2


# --- purge -----------------------------------------------------------------------------------


def test_purge_asks_for_confirmation_and_keeps_everything_when_refused(
    three_entries: None,
) -> None:
    result = run("dlq", "purge", "--task", "tests.echo", input="n\n")
    assert result.exit_code == 1
    assert "Delete 2 dead letters matching the filters? [y/N]" in result.stderr
    assert len(json.loads(run("dlq", "list", "--json").stdout)) == 3

    confirmed = run("dlq", "purge", "--task", "tests.echo", input="y\n")
    assert confirmed.stdout.strip() == "deleted 2 dead letters"


def test_purge_yes_deletes_exactly_the_filtered_entries(three_entries: None) -> None:
    dry = run("dlq", "purge", "--exception", "ValueError", "--since", "1d", "--dry-run")
    assert "1 dead letter matching the filters would be deleted" in dry.stdout
    assert len(json.loads(run("dlq", "list", "--json").stdout)) == 3

    result = run("dlq", "purge", "--exception", "ValueError", "--since", "1d", "--yes")
    assert result.exit_code == 0
    assert result.stdout.strip() == "deleted 1 dead letter"
    assert ids(json.loads(run("dlq", "list", "--json").stdout)) == ["new-key", "old-value"]


# --- the database and the broker, through the installed script --------------------------------


def test_db_upgrade_migrates_a_fresh_database_and_reports_the_revision(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'fresh.db'}"
    missing = run_script("dlq", "list", DATABASE_URL=url)
    assert missing.returncode == 4
    assert "has no saas-tasks tables" in missing.stderr
    assert "run `saas-tasks db upgrade`" in missing.stderr

    head = migrate.heads()
    upgraded = run_script("db", "upgrade", DATABASE_URL=url)
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == f"DATABASE_URL={url} is at revision {head}"
    assert run_script("db", "current", DATABASE_URL=url).stdout.strip().endswith(f"revision {head}")
    assert run_script("dlq", "list", DATABASE_URL=url).stdout.strip() == "no dead letters match"


def test_unreachable_database_exits_non_zero_with_a_clear_message_and_no_traceback() -> None:
    result = run_script("dlq", "list", DATABASE_URL="postgresql://postgres:pw@127.0.0.1:1/nope")
    assert result.returncode == 4
    assert "Traceback" not in result.stderr
    message = result.stderr.strip()
    assert len(message.splitlines()) == 1
    assert "postgres:***@127.0.0.1:1/nope" in message and ":pw@" not in message
    assert "is it running? did you run `saas-tasks db upgrade`?" in message


def test_replay_with_the_broker_down_exits_non_zero_and_leaves_the_entry_pending(
    clean_state: None,
) -> None:
    entry_id = seed("broker-down", args=["x"])
    dead = "redis://127.0.0.1:1/0"
    result = run_script(
        "dlq", "replay", str(entry_id), REDIS_URL=dead, BROKER_URL=dead, RESULT_BACKEND=dead
    )
    assert result.returncode == 5
    assert "Traceback" not in result.stderr
    assert "did not answer" in result.stderr and "nothing was enqueued" in result.stderr
    assert deadletter.get_entry(entry_id).status == "pending"
