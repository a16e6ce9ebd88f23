"""Transactional and batch email: templates rendered per process, sent once per key over a
pluggable transport, rate-limited across workers, every outcome in the ``email_log`` table.

    from saas_tasks.email import send_email, send_batch
    send_email.delay(to="ana@example.com", template="welcome", context={"name": "Ana"})

Modules: ``rendering`` (Jinja2 → subject, HTML, text), ``message`` (MIME), ``transports``
(SMTP, file, console), ``ratelimit`` (Redis token bucket), ``delivery`` (the email log as the
per-recipient idempotency record), ``service`` (the plain functions), ``tasks`` (Celery).
"""

from saas_tasks.email.tasks import send_batch, send_chunk, send_email

__all__ = ["send_batch", "send_chunk", "send_email"]
