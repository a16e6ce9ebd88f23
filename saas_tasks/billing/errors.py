"""The billing family's errors, placed in the pack's one tree.

PermanentError
└── InvalidPayload
    ├── UnknownTenant          no tenant with that id or slug
    └── InvalidProviderData    a provider file or record is malformed (names line and field)
TransientError
└── ProviderUnavailable        the provider's API did not answer; retried by policy
"""

from __future__ import annotations

from saas_tasks.exceptions import InvalidPayload, TransientError


class UnknownTenant(InvalidPayload):
    """The ``tenant`` given names no tenant."""


class InvalidProviderData(InvalidPayload):
    """A provider record is malformed; the message names where (line or item) and the field."""


class ProviderUnavailable(TransientError):
    """The provider's API failed in a way that may pass (network, 5xx, rate limit)."""
