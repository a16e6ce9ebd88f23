"""Results shown to people (the worker's "succeeded" log line, the ``task-succeeded`` event that
Flower shows) are redacted like arguments; the stored result is not touched.

The pack replaces the ``saferepr`` that ``celery.app.trace`` calls for that text: the first test
fails if a Celery upgrade stops calling it there, so the override cannot silently stop working.
"""

from __future__ import annotations

import inspect

from celery.app import trace

from saas_tasks.reliability.shown_results import install, shown_repr


def test_celerys_tracer_still_makes_the_shown_result_with_its_saferepr() -> None:
    source = inspect.getsource(trace.build_tracer)
    assert "Rstr = saferepr(R, resultrepr_maxsize)" in source
    assert "'return_value': Rstr" in source  # the log line's text


def test_the_shown_result_hides_secret_keys_and_url_passwords_and_stays_bounded() -> None:
    text = shown_repr({"api_token": "tok-123", "n": 1, "dsn": "redis://u:pw@host/0"}, 1024)
    assert text == "{'api_token': '[REDACTED]', 'n': 1, 'dsn': 'redis://u:***@host/0'}"
    assert len(shown_repr(["x" * 10_000] * 1_000, 1024)) < 1_100


def test_install_points_the_tracer_at_the_redacting_repr() -> None:
    install()
    assert trace.saferepr is shown_repr
