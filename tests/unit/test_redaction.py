"""Secrets never reach logs, alerts or Flower."""

from __future__ import annotations

from saas_tasks.reliability.redaction import REDACTED, cut_middle, redact, redact_url


def test_secret_looking_keys_are_redacted_at_any_depth() -> None:
    payload = {
        "to": "ana@example.com",
        "password": "hunter2",
        "nested": {"api_key": "k", "Authorization": "Bearer x", "items": [{"token": "t"}]},
        "stripe_secret": "sk_live",
    }
    clean = redact(payload)
    assert clean["to"] == "ana@example.com"
    assert clean["password"] == REDACTED and clean["stripe_secret"] == REDACTED
    assert clean["nested"]["api_key"] == REDACTED
    assert clean["nested"]["Authorization"] == REDACTED
    assert clean["nested"]["items"][0]["token"] == REDACTED
    assert payload["password"] == "hunter2"  # the original is untouched


def test_passwords_inside_urls_are_masked() -> None:
    assert redact_url("redis://:s3cret@host:6379/0") == "redis://:***@host:6379/0"
    assert redact(["postgresql://app:pw@db/x"]) == ["postgresql://app:***@db/x"]
    assert redact_url("https://example.com/path") == "https://example.com/path"


def test_cut_middle_keeps_both_ends() -> None:
    text = "HEAD" + "x" * 1000 + "TAIL"
    cut = cut_middle(text, 200)
    assert len(cut) <= 200 and cut.startswith("HEAD") and cut.endswith("TAIL")
    assert cut_middle("short", 200) == "short"
