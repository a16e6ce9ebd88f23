"""Rendering and message building, without a server: what every message is made of."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest

from saas_tasks.email import message, transports
from saas_tasks.email.rendering import SHIPPED, Renderer
from saas_tasks.exceptions import ConfigurationError, InvalidPayload

CONTEXTS: dict[str, dict[str, Any]] = {
    "verify_email": {"name": "Ana", "verify_url": "https://app.example/verify?t=1"},
    "password_reset": {"name": "Ana", "reset_url": "https://x/r", "expires_in_minutes": 30},
    "welcome": {"name": "Ana"},
    "export_ready": {
        "name": "Ana",
        "export_name": "users.csv",
        "download_url": "https://x/d",
        "expires_at": "2026-12-01",
    },
    "subscription_renewal_reminder": {
        "name": "Ana",
        "plan": "Pro",
        "renews_on": "2026-12-01",
        "amount": "$29.00",
        "manage_url": "https://x/m",
    },
    "trial_ending": {
        "name": "Ana",
        "plan": "Pro",
        "trial_ends_on": "2026-12-01",
        "upgrade_url": "https://x/u",
    },
    "subscription_will_lapse": {
        "name": "Ana",
        "plan": "Pro",
        "lapses_on": "2026-12-01",
        "renew_url": "https://x/r",
    },
    "subscription_expired": {
        "name": "Ana",
        "plan": "Pro",
        "expired_on": "2026-12-01",
        "renew_url": "https://x/r",
    },
    "payment_receipt": {
        "name": "Ana",
        "invoice_number": "INV-7",
        "amount": "$29.00",
        "paid_on": "2026-12-01",
    },
    "payment_failed": {
        "name": "Ana",
        "invoice_number": "INV-7",
        "amount": "$29.00",
        "update_payment_url": "https://x/p",
    },
    "billing_reconciliation_report": {
        "period": "2026-11",
        "matched": 120,
        "mismatches": [{"invoice": "INV-9", "tenant": "acme", "problem": "paid twice"}],
    },
    "dead_letter_alert": {
        "alert": {
            "id": 3,
            "task_name": "tests.broken",
            "task_id": "abc",
            "reason": "failure",
            "exception_type": "ValueError",
            "exception_message": "boom",
            "retries": 0,
            "worker": "w1",
            "queue": "default",
            "failed_at": "2026-11-23T10:00:00+00:00",
            "args": [],
            "kwargs": {"password": "[REDACTED]"},
        }
    },
}


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer(brand="Acme")


def parse(raw: bytes) -> EmailMessage:
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed


def test_the_pack_ships_every_template_the_issue_lists(renderer: Renderer) -> None:
    # families add their own templates (webhook_endpoint_disabled, subscription_will_lapse...)
    assert set(CONTEXTS) <= set(renderer.names())


@pytest.mark.parametrize("template", sorted(CONTEXTS))
def test_every_shipped_template_renders_a_subject_an_html_part_and_a_text_part(
    renderer: Renderer, template: str
) -> None:
    rendered = renderer.render(template, CONTEXTS[template])
    assert rendered.subject and "\n" not in rendered.subject and "{{" not in rendered.subject
    assert rendered.html.startswith("<!DOCTYPE html>") and "Acme" in rendered.html
    assert "<style>" not in rendered.html and 'style="' in rendered.html  # CSS inlined
    assert rendered.text.strip() and "<" not in rendered.text.split("\n")[0]
    assert rendered.text.rstrip().endswith("Acme")  # the shared text layout's signature


def test_a_users_markup_is_escaped_in_html_and_left_alone_in_text_and_subject(
    renderer: Renderer,
) -> None:
    rendered = renderer.render("welcome", {"name": "<b>Bo</b>"})
    assert "&lt;b&gt;Bo&lt;/b&gt;" in rendered.html and "<b>Bo</b>" not in rendered.html
    assert "<b>Bo</b>" in rendered.text and rendered.subject.endswith("<b>Bo</b>")


def test_a_line_break_in_a_users_value_cannot_start_a_new_subject_header(
    renderer: Renderer,
) -> None:
    rendered = renderer.render("welcome", {"name": "Bo\r\nBcc: victim@example.com"})
    assert "\n" not in rendered.subject and "\r" not in rendered.subject


def test_a_missing_variable_is_an_invalid_payload_naming_the_variable(renderer: Renderer) -> None:
    with pytest.raises(InvalidPayload, match=r"context: .*'verify_url' is undefined"):
        renderer.render("verify_email", {"name": "Ana"})


def test_an_unknown_template_is_an_invalid_payload_listing_the_known_ones(
    renderer: Renderer,
) -> None:
    with pytest.raises(InvalidPayload, match=r"template: unknown email template 'nope'.*welcome"):
        renderer.render("nope", {})
    with pytest.raises(InvalidPayload, match="not a template name"):
        renderer.render("../etc/passwd", {})


def test_a_template_directory_from_settings_overrides_the_shipped_layout_and_templates(
    tmp_path: Path,
) -> None:
    (tmp_path / "_layout").mkdir()
    layout = (SHIPPED / "_layout" / "base.html").read_text()
    (tmp_path / "_layout" / "base.html").write_text(layout.replace("#3b5bdb", "#ff0000"))
    (tmp_path / "invite").mkdir()
    (tmp_path / "invite" / "subject.txt").write_text("Join {{ team }}")
    (tmp_path / "invite" / "body.html").write_text(
        '{% extends "_layout/base.html" %}{% block content %}<p>{{ team }}</p>{% endblock %}'
    )
    (tmp_path / "invite" / "body.txt").write_text("Join {{ team }}")
    renderer = Renderer(tmp_path)
    assert "#ff0000" in renderer.render("welcome", {"name": "A"}).html  # rebranded
    invite = renderer.render("invite", {"team": "Ops"})
    assert (invite.subject, invite.text) == ("Join Ops", "Join Ops\n")
    assert "invite" in renderer.names()


def test_a_template_without_a_text_part_is_refused_by_name(tmp_path: Path) -> None:
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "body.html").write_text("<p>hi</p>")
    (tmp_path / "half" / "subject.txt").write_text("hi")
    with pytest.raises(InvalidPayload, match=r"'half' has no body\.txt"):
        Renderer(tmp_path).render("half", {})


def test_the_built_message_has_a_text_then_an_html_part_and_every_header(
    renderer: Renderer,
) -> None:
    rendered = renderer.render("welcome", {"name": "Zoë"})
    msg_id = message.message_id_for("k-1", "Acme <no-reply@acme.example>")
    raw = message.build(
        rendered,
        sender="Acme <no-reply@acme.example>",
        to="Zoë Z <zoe@example.com>",
        message_id=msg_id,
        reply_to="help@acme.example",
        headers={"List-Unsubscribe": "<https://acme.example/u>"},
    )
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF for SMTP
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    parsed = parse(raw)
    assert parsed["Subject"] == "Welcome to Acme, Zoë"
    assert parsed["To"] == "Zoë Z <zoe@example.com>"
    assert parsed["Reply-To"] == "help@acme.example"
    assert parsed["Message-ID"] == msg_id and msg_id.endswith("@acme.example>")
    assert parsed["List-Unsubscribe"] == "<https://acme.example/u>"
    assert parsed["Date"] is not None
    parts = [part.get_content_type() for part in parsed.iter_parts()]
    assert parts == ["text/plain", "text/html"]
    assert "Welcome, Zoë!" in parsed.get_body(("plain",)).get_content()  # type: ignore[union-attr]


def test_the_message_id_is_the_same_for_the_same_key_and_differs_between_keys() -> None:
    one = message.message_id_for("saas_tasks.email.send:a", "x@acme.example")
    assert one == message.message_id_for("saas_tasks.email.send:a", "Acme <x@acme.example>")
    assert one != message.message_id_for("saas_tasks.email.send:b", "x@acme.example")


@pytest.mark.parametrize(
    "bad", ["plain", "a@b", "a b@example.com", "a@example.com\r\nBcc: x@y.z", "@example.com"]
)
def test_invalid_addresses_are_refused(bad: str) -> None:
    with pytest.raises(ValueError, match=r"address|line break"):
        message.check_address(bad)


def test_valid_addresses_and_display_names_are_accepted() -> None:
    assert message.check_address("ana.b+tag@mail.example.co") == "ana.b+tag@mail.example.co"
    assert message.check_address("Ana B <ana@example.com>") == "ana@example.com"


def test_headers_that_would_inject_or_override_are_refused() -> None:
    with pytest.raises(ValueError, match="line break"):
        message.check_headers({"X-Tag": "a\r\nBcc: x@y.z"})
    with pytest.raises(ValueError, match="set by the pack"):
        message.check_headers({"Message-ID": "<mine@x>"})
    with pytest.raises(ValueError, match="not a valid header name"):
        message.check_headers({"X Tag": "a"})


def test_email_urls_choose_the_transport_and_its_options() -> None:
    smtp = transports.from_url("smtp://u%40x:p%3Ass@mail.example:587?starttls=true&timeout=3")
    assert isinstance(smtp, transports.SmtpTransport)
    assert (smtp.host, smtp.port, smtp.starttls, smtp.implicit_tls) == (
        "mail.example",
        587,
        True,
        False,
    )
    assert (smtp.username, smtp.password, smtp.timeout) == ("u@x", "p:ss", 3.0)
    assert smtp.rate_key == "smtp:mail.example:587"  # the account, never the password
    smtps = transports.from_url("smtps://mail.example")
    assert isinstance(smtps, transports.SmtpTransport)
    assert (smtps.port, smtps.implicit_tls) == (465, True)
    assert isinstance(transports.from_url("console://"), transports.ConsoleTransport)
    with pytest.raises(ConfigurationError, match="EMAIL_URL"):
        transports.from_url("http://mail.example")


def test_the_file_transport_writes_one_complete_eml_file_a_message(tmp_path: Path) -> None:
    transport = transports.from_url(f"file://{tmp_path / 'outbox'}")
    with transport:
        transport.send(transports.Envelope("a@x.io", "b@x.io", "<abc@x.io>"), b"Subject: hi\r\n")
        transport.send(transports.Envelope("a@x.io", "c@x.io", "<def@x.io>"), b"Subject: ho\r\n")
    files = sorted((tmp_path / "outbox").iterdir())
    assert [f.name.split("-", 1)[1] for f in files] == ["abc.eml", "def.eml"]
    assert files[0].read_bytes() == b"Subject: hi\r\n"


def test_an_email_url_with_an_unknown_scheme_fails_at_start_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from saas_tasks.settings import load_settings

    monkeypatch.setenv("EMAIL_URL", "mailgun://key@api")
    with pytest.raises(ConfigurationError, match=r"EMAIL_URL: .*smtp://"):
        load_settings()
    monkeypatch.setenv("EMAIL_URL", "smtps://mail.example:465")
    monkeypatch.setenv("SAAS_TASKS_EMAIL_RATE_LIMIT", "12.5")
    settings = load_settings()
    assert (settings.email_url, settings.email_rate_limit) == ("smtps://mail.example:465", 12.5)
