"""Email through the real worker to a real SMTP server on loopback, asserting on what arrived."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import select

from saas_tasks.db import session_scope
from saas_tasks.email import send_batch, send_email
from saas_tasks.email.message import message_id_for
from saas_tasks.models import EmailLog
from saas_tasks.reliability import deadletter
from saas_tasks.settings import get_settings
from tests import sample_tasks
from tests.conftest import wait_for
from tests.smtp_server import SmtpServer, email_settings, smtp_server

SENDER = "Acme <hello@acme.example>"


@pytest.fixture()
def smtp(worker: Any) -> Iterator[SmtpServer]:
    """A recording SMTP server that the worker's EMAIL_URL points at, for this test."""
    with (
        smtp_server() as server,
        email_settings(EMAIL_URL=server.url, SAAS_TASKS_EMAIL_FROM=SENDER),
    ):
        yield server


def log_rows() -> dict[str, EmailLog]:
    with session_scope() as session:
        return {row.recipient: row for row in session.scalars(select(EmailLog))}


def dead_letters_of(task_name: str) -> list[Any]:
    return wait_for(
        lambda: deadletter.list_entries(deadletter.Filters(task=task_name)),
        message=f"a dead letter for {task_name}",
    )


def recipients(n: int, prefix: str = "user") -> list[dict[str, Any]]:
    return [{"to": f"{prefix}{i}@example.com", "context": {"name": f"User {i}"}} for i in range(n)]


# --- one message ---------------------------------------------------------------------------


def test_a_welcome_email_arrives_with_both_parts_its_headers_and_a_message_id_from_its_key(
    smtp: SmtpServer,
) -> None:
    result = send_email.delay(
        to="ana@example.com",
        template="welcome",
        context={"name": "Ana"},
        reply_to="support@acme.example",
        headers={"X-Campaign": "onboarding"},
        idempotency_key="signup-ana",
    ).get(timeout=20)

    [received] = smtp.received
    message = received.parsed()
    assert received.rcpt_tos == ["ana@example.com"]
    assert received.mail_from == "hello@acme.example"
    assert message["Subject"] == "Welcome to saas-tasks, Ana"
    assert message["From"] == SENDER and message["To"] == "ana@example.com"
    assert message["Reply-To"] == "support@acme.example"
    assert message["X-Campaign"] == "onboarding"
    assert message.get_content_type() == "multipart/alternative"
    assert "Welcome, Ana!" in received.part("text/plain")
    html = received.part("text/html")
    assert "Welcome, Ana!" in html and 'style="' in html and "<style>" not in html
    expected_id = message_id_for("saas_tasks.email.send:signup-ana", SENDER)
    assert message["Message-ID"] == expected_id == result["message_id"]
    row = log_rows()["ana@example.com"]
    assert (row.status, row.attempts, row.template, row.message_id) == (
        "sent",
        1,
        "welcome",
        expected_id,
    )
    assert row.sent_at is not None


def test_a_script_tag_in_a_users_name_is_escaped_in_html_and_kept_as_text_in_plain_text(
    smtp: SmtpServer,
) -> None:
    name = '<script>alert("x")</script>'
    send_email.delay(to="eve@example.com", template="welcome", context={"name": name}).get(
        timeout=20
    )
    [received] = smtp.received
    html = received.part("text/html")
    assert "<script>" not in html
    assert "&lt;script&gt;alert(" in html and "&lt;/script&gt;" in html
    assert name in received.part("text/plain")


def test_the_same_task_delivered_twice_sends_one_message(smtp: SmtpServer) -> None:
    kwargs = {"to": "bo@example.com", "template": "welcome", "context": {"name": "Bo"}}
    first = send_email.apply_async(kwargs=kwargs, task_id="welcome-bo").get(timeout=20)
    again = send_email.apply_async(kwargs=kwargs, task_id="welcome-bo").get(timeout=20)
    by_key = [send_email.delay(**kwargs, idempotency_key="bo-1").get(timeout=20) for _ in range(2)]
    assert smtp.recipients() == ["bo@example.com", "bo@example.com"]  # one per key
    assert again == first and by_key[0] == by_key[1]
    ids = {message.parsed()["Message-ID"] for message in smtp.received}
    assert ids == {first["message_id"], by_key[0]["message_id"]}


def test_a_550_for_the_only_recipient_fails_the_send_for_good_and_logs_it(
    smtp: SmtpServer,
) -> None:
    smtp.recorder.refuse["gone@example.com"] = "550 5.1.1 no such user"
    result = send_email.delay(to="gone@example.com", template="welcome", context={"name": "G"})
    with pytest.raises(Exception, match="SMTP 550"):
        result.get(timeout=20)
    [entry] = dead_letters_of("saas_tasks.email.send")
    assert entry.retries == 0 and entry.exception_type.endswith("RecipientRefused")
    row = log_rows()["gone@example.com"]
    assert row.status == "failed" and "550" in (row.error or "")
    assert smtp.received == []


# --- batches --------------------------------------------------------------------------------


def test_a_batch_fans_out_into_chunks_each_sent_over_one_connection(smtp: SmtpServer) -> None:
    outcome = send_batch.delay(template="welcome", recipients=recipients(25), chunk_size=10).get(
        timeout=20
    )
    assert len(outcome["chunks"]) == 3 and outcome["recipients"] == 25
    wait_for(lambda: len(smtp.received) == 25, message="25 messages")
    assert sorted(smtp.recipients()) == sorted(f"user{i}@example.com" for i in range(25))
    assert smtp.recorder.connections == 3
    wait_for(lambda: all(r.status == "sent" for r in log_rows().values()), message="log")


def test_a_chunk_retried_after_a_connection_drop_mid_chunk_sends_nothing_twice(
    smtp: SmtpServer,
) -> None:
    smtp.recorder.drop_after = 4
    send_batch.delay(template="welcome", recipients=recipients(10), chunk_size=10)
    wait_for(lambda: len(smtp.received) >= 10, message="all ten messages", timeout=30)
    wait_for(lambda: all(r.status == "sent" for r in log_rows().values()), message="log")
    assert smtp.recorder.dropped == 1
    assert sorted(smtp.recipients()) == sorted(f"user{i}@example.com" for i in range(10))
    attempts = sorted(row.attempts for row in log_rows().values())
    assert attempts == [1] * 4 + [2] * 6  # the four sent before the drop were not claimed again


def test_a_550_for_one_recipient_does_not_stop_the_rest_of_the_batch(smtp: SmtpServer) -> None:
    smtp.recorder.refuse["user2@example.com"] = "550 5.1.1 mailbox unavailable"
    outcome = send_batch.delay(template="welcome", recipients=recipients(5)).get(timeout=20)
    chunk = send_batch.AsyncResult(outcome["chunks"][0]).get(timeout=20)
    assert chunk["sent"] == 4 and chunk["failed"] == 1
    assert sorted(smtp.recipients()) == [f"user{i}@example.com" for i in (0, 1, 3, 4)]
    rows = log_rows()
    assert rows["user2@example.com"].status == "failed"
    assert "550 for user2@example.com" in (rows["user2@example.com"].error or "")
    assert deadletter.list_entries(deadletter.Filters(task="saas_tasks.email.send_chunk")) == []


def test_a_4xx_for_one_recipient_retries_that_recipient_only(smtp: SmtpServer) -> None:
    smtp.recorder.refuse_once["user1@example.com"] = "451 4.7.1 greylisted, try later"
    send_batch.delay(template="welcome", recipients=recipients(3))
    wait_for(lambda: len(smtp.received) == 3, message="three messages", timeout=30)
    wait_for(lambda: all(r.status == "sent" for r in log_rows().values()), message="log")
    assert sorted(smtp.recipients()) == [f"user{i}@example.com" for i in range(3)]
    assert log_rows()["user1@example.com"].attempts == 2


def test_a_repeated_address_in_a_batch_receives_one_message(smtp: SmtpServer) -> None:
    batch = [*recipients(2), {"to": "USER0@example.com", "context": {"name": "Again"}}]
    send_batch.delay(template="welcome", recipients=batch).get(timeout=20)
    wait_for(lambda: len(smtp.received) == 2, message="two messages")
    assert sorted(smtp.recipients()) == ["user0@example.com", "user1@example.com"]


# --- bad input: dead-lettered at once, nothing sent -------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        ({"to": "not-an-address", "template": "welcome", "context": {"name": "A"}}, "to:"),
        ({"to": "a@example.com", "template": "no_such_thing", "context": {}}, "template:"),
        ({"to": "a@example.com", "template": "welcome", "context": {}}, "'name' is undefined"),
        (
            {
                "to": "a@example.com",
                "template": "welcome",
                "context": {"name": "A"},
                "headers": {"Bcc\r\nX": "x"},
            },
            "headers:",
        ),
    ],
    ids=["invalid-address", "unknown-template", "missing-variable", "header-injection"],
)
def test_bad_input_is_dead_lettered_at_once_naming_the_field_and_nothing_is_sent(
    smtp: SmtpServer, kwargs: dict[str, Any], named: str
) -> None:
    result = send_email.delay(**kwargs)
    with pytest.raises(Exception, match=r"invalid|unknown|undefined"):
        result.get(timeout=20)
    [entry] = dead_letters_of("saas_tasks.email.send")
    assert entry.reason == "invalid_payload" and entry.retries == 0
    assert named in entry.exception_message
    assert smtp.received == [] and log_rows() == {}


def test_a_batch_with_one_bad_address_is_refused_whole_naming_the_recipient(
    smtp: SmtpServer,
) -> None:
    batch = recipients(3)
    batch[2]["to"] = "broken@"
    with pytest.raises(Exception, match=r"recipients\.2\.to"):
        send_batch.delay(template="welcome", recipients=batch).get(timeout=20)
    [entry] = dead_letters_of("saas_tasks.email.send_batch")
    assert entry.reason == "invalid_payload" and entry.retries == 0
    assert smtp.received == []


def test_a_batch_whose_contexts_lack_a_variable_is_refused_before_anything_is_sent(
    smtp: SmtpServer,
) -> None:
    batch = [*recipients(2), {"to": "nameless@example.com", "context": {"nom": "X"}}]
    with pytest.raises(Exception, match=r"recipients\.2\.context: .*'name' is undefined"):
        send_batch.delay(template="welcome", recipients=batch).get(timeout=20)
    assert smtp.received == [] and log_rows() == {}


# --- transient trouble ----------------------------------------------------------------------


def test_an_unreachable_server_is_retried_and_the_message_arrives_once_it_is_back(
    worker: Any,
) -> None:
    with smtp_server() as server:
        port = server.controller.port
    # nothing listens on `port` now: connection refused, a transient error
    with email_settings(EMAIL_URL=f"smtp://127.0.0.1:{port}"):
        result = send_email.delay(to="late@example.com", template="welcome", context={"name": "L"})
        wait_for(lambda: _status("late@example.com") == "pending", message="a first failed attempt")
        from aiosmtpd.controller import Controller

        from tests.smtp_server import Recorder

        recorder = Recorder()
        controller = Controller(recorder, hostname="127.0.0.1", port=port)
        controller.start()
        try:
            assert result.get(timeout=40)["status"] == "sent"
        finally:
            controller.stop()
    assert [m.rcpt_tos for m in recorder.received] == [["late@example.com"]]
    assert log_rows()["late@example.com"].attempts >= 2


def _status(recipient: str) -> str | None:
    row = log_rows().get(recipient)
    return row.status if row else None


# --- the dead-letter alert uses the transport and its template ------------------------------


def test_a_dead_letter_alert_email_is_rendered_from_its_template_and_sent(
    smtp: SmtpServer,
) -> None:
    with email_settings(SAAS_TASKS_ALERT_EMAIL="ops@acme.example"):
        assert get_settings().alert_email == "ops@acme.example"
        with pytest.raises(Exception, match="broken on purpose"):
            sample_tasks.broken.delay("for the alert").get(timeout=20)
        wait_for(lambda: smtp.received, message="the alert email")
    [alert] = smtp.received
    assert alert.rcpt_tos == ["ops@acme.example"]
    assert alert.parsed()["Subject"] == "[saas-tasks] dead letter: tests.broken ValueError"
    assert "saas-tasks dlq replay" in alert.part("text/plain")
    assert "tests.broken" in alert.part("text/html")
