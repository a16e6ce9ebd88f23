"""The dead-letter store: durable through a database outage, written once per task id,
alerting with secrets redacted."""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from saas_tasks import db
from saas_tasks.reliability import deadletter
from saas_tasks.settings import get_settings
from tests import sample_tasks
from tests.conftest import RUN_DIR, wait_for
from tests.services import TcpProxy


def entries(task: str) -> list[Any]:
    return deadletter.list_entries(deadletter.Filters(task=task))


def test_dead_letter_raised_while_the_database_is_down_is_stored_once_it_is_back(
    worker: Any, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = make_url(db.normalise_url(database_url))
    proxy: TcpProxy | None = None
    if url.get_backend_name() == "postgresql":
        proxy = TcpProxy(url.host or "127.0.0.1", url.port or 5432).start()
        db.configure(url.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
        proxy.stop()  # the database goes away at the URL the worker uses
    else:
        db.configure(f"sqlite:///{RUN_DIR}")  # a directory: every connection attempt fails
    try:
        caplog.set_level(logging.WARNING)
        failed = sample_tasks.broken.delay("during the outage")
        with pytest.raises(ValueError):
            failed.get(timeout=20)
        wait_for(
            lambda: "saas_tasks.deadletter.record[" in caplog.text and " retry " in caplog.text,
            message="the dead-letter store to retry while the database is down",
        )
    finally:
        if proxy is not None:
            proxy.start()  # back, same port, same URL
        else:
            db.configure(None)
    stored = wait_for(lambda: entries("tests.broken"), timeout=60, message="the stored entry")
    assert len(stored) == 1
    assert stored[0].task_id == failed.id
    assert stored[0].args == ["during the outage"]
    if proxy is not None:
        db.configure(None)
        proxy.stop()


def test_the_same_failure_delivered_twice_is_stored_once(
    database_url: str, clean_state: None
) -> None:
    entry = deadletter.DeadLetterEntry(task_id="t-1", task_name="tests.x", exception_type="E")
    first = deadletter.store(entry)
    again = deadletter.store(entry)
    assert first[1] is True and again == (first[0], False)
    [row] = entries("tests.x")
    assert row.failure_count == 1


def test_a_later_failure_of_the_same_task_id_updates_the_entry_and_counts_it(
    database_url: str, clean_state: None
) -> None:
    entry = deadletter.DeadLetterEntry(task_id="t-2", task_name="tests.x", exception_type="E1")
    deadletter.store(entry)
    later = entry.model_copy(
        update={"exception_type": "E2", "failed_at": entry.failed_at.replace(year=2099)}
    )
    deadletter.store(later)
    [row] = entries("tests.x")
    assert row.failure_count == 2 and row.exception_type == "E2"


def test_a_long_traceback_is_cut_in_the_middle_keeping_its_cause(
    database_url: str, clean_state: None
) -> None:
    long = "Traceback (most recent call last):\n" + "x" * 100_000 + "\nValueError: the cause"
    deadletter.store(deadletter.DeadLetterEntry(task_id="t-3", task_name="tests.x", traceback=long))
    [row] = entries("tests.x")
    assert len(row.traceback) < 21_000
    assert row.traceback.startswith("Traceback") and row.traceback.endswith("the cause")


class _Receiver(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Receiver.received.append(json.loads(body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def test_a_new_dead_letter_alerts_by_log_and_webhook_with_secrets_redacted(
    worker: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    server = HTTPServer(("127.0.0.1", 0), _Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(
        get_settings(), "alert_webhook_url", f"http://127.0.0.1:{server.server_port}/hook"
    )
    _Receiver.received.clear()
    caplog.set_level(logging.ERROR, logger="saas_tasks.deadletter")
    try:
        sample_tasks.charge.delay(invoice_id=1, amount=-1, currency="usd", api_token="tok_live_123")
        wait_for(lambda: _Receiver.received, message="the alert webhook")
    finally:
        server.shutdown()
        server.server_close()
    [alert] = _Receiver.received
    assert alert["event"] == "dead_letter.recorded"
    assert alert["task_name"] == "tests.charge" and alert["reason"] == "invalid_payload"
    assert alert["kwargs"]["api_token"] == "[REDACTED]"
    assert "tok_live_123" not in caplog.text
    assert "dead letter" in caplog.text and "tests.charge[" in caplog.text
    [row] = entries("tests.charge")
    assert row.kwargs["api_token"] == "tok_live_123"  # the store keeps what a replay needs
