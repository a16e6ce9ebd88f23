"""Signed outgoing webhooks with retries and a delivery log.

    from saas_tasks.webhooks import publish_event
    publish_event("invoice.paid", {"tenant_id": 7, "invoice_id": 42, "amount": 1999})

Modules: ``signing`` (Standard Webhooks HMAC, and :func:`verify_signature` for receivers),
``addresses`` (SSRF guard after DNS resolution), ``client`` (one POST, timeouts, no redirects),
``queries`` (every SQL statement), ``service`` (the plain functions), ``tasks`` (Celery).
"""

from saas_tasks.webhooks.errors import AddressRefused, InvalidEndpoint, WebhookVerificationError
from saas_tasks.webhooks.service import create_endpoint
from saas_tasks.webhooks.signing import generate_secret, sign, verify_signature
from saas_tasks.webhooks.tasks import deliver, dispatch_due, publish_event

__all__ = [
    "AddressRefused",
    "InvalidEndpoint",
    "WebhookVerificationError",
    "create_endpoint",
    "deliver",
    "dispatch_due",
    "generate_secret",
    "publish_event",
    "sign",
    "verify_signature",
]
