"""The webhooks family's errors, placed in the pack's tree (see :mod:`saas_tasks.exceptions`).

    PermanentError
    ├── WebhookVerificationError  a received webhook's signature or timestamp does not check out
    └── AddressRefused            the endpoint resolves to a loopback, private, link-local or
                                  metadata address that SAAS_TASKS_WEBHOOK_ALLOWED_NETWORKS
                                  does not allow
    InvalidPayload
    └── InvalidEndpoint           an endpoint's URL or event types are unusable

A receiver's failures (timeouts, 5xx, 429) are not exceptions here: they are outcomes written
to the delivery log and retried from there (see :mod:`saas_tasks.webhooks.service`).
"""

from __future__ import annotations

from saas_tasks.exceptions import InvalidPayload, PermanentError


class WebhookVerificationError(PermanentError):
    """The webhook was not signed with this secret, or was signed too long ago (a replay)."""


class AddressRefused(PermanentError):
    """The endpoint's host is not a public address; delivering there would be SSRF."""


class InvalidEndpoint(InvalidPayload):
    """The endpoint cannot receive webhooks as given (bad URL, no event types)."""
