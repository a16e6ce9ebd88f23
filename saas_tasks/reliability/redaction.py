"""Redact secrets from payloads before they reach a log line, an alert or Flower.

Stored dead letters keep the original payload (a replay needs it); everything shown to people
goes through :func:`redact` first.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|auth(orization)?|credential|cookie|"
    r"private[_-]?key|card[_-]?number|cvc|cvv|signature|session[_-]?id",
    re.IGNORECASE,
)
# The lookbehind makes a scheme start only where a word starts: without it, a long run of
# letters with no "://" (a 5 MB payload) is scanned again from every position, O(n^2).
_URL_PASSWORD = re.compile(
    r"(?<![a-z0-9+.-])(?P<scheme>[a-z][a-z0-9+.-]*://)(?P<user>[^:/@\s]*):[^@/\s]+@", re.I
)


def is_secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def redact(value: Any, _depth: int = 0) -> Any:
    """A copy of ``value`` with the values under secret-looking keys replaced."""
    if _depth > 20:
        return "..."
    if isinstance(value, dict):
        return {
            key: REDACTED
            if isinstance(key, str) and is_secret_key(key)
            else redact(item, _depth + 1)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(item, _depth + 1) for item in value]
    if isinstance(value, str):
        return redact_url(value)
    return value


def redact_url(text: str) -> str:
    """``redis://user:secret@host`` becomes ``redis://user:***@host``."""
    if "://" not in text:  # most strings: no URL, no regex scan
        return text
    return _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)


def cut_middle(text: str, limit: int) -> str:
    """Keep the head and the tail of a long text (a traceback's cause sits at its end)."""
    if len(text) <= limit:
        return text
    keep = (limit - 40) // 2
    return f"{text[:keep]}\n... [{len(text) - 2 * keep} characters cut] ...\n{text[-keep:]}"
