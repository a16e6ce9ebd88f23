"""The small parts every published message is made of, each held to the slow, obvious way of
doing the same: shown (redacted) arguments, JSON text, task ids and message templates."""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict

import pytest
from kombu.utils.json import dumps as kombu_dumps

from saas_tasks.reliability.message_stamp import Template, dumps, fast_uuid4, fast_uuid4s
from saas_tasks.reliability.redaction import REDACTED
from saas_tasks.reliability.shown_args import CUT, ITEMS, bounded_repr, shown


class Text(str):
    """A str subclass: not taken by the plain-str fast path."""


def test_secrets_are_redacted_at_every_level_and_in_urls_inside_containers() -> None:
    payload = {
        "to": "ana@example.com",
        "password": "hunter2",
        "context": {"api_key": "k-123", "name": "Ana", "n": 3, "ok": True, "none": None},
        "urls": ["redis://user:s3cret@host:6379/0", {"dsn": "postgresql://u:pw@db/x"}],
        "hook": "https://bob:topsecret@example.com/in",
        "subclassed": Text("amqp://guest:guest@rabbit//"),
    }
    copy = shown(payload)
    text = bounded_repr(copy, 10_000)
    for secret in ("hunter2", "k-123", "s3cret", ":pw@", "topsecret", "guest@"):
        assert secret not in text, secret
    assert copy["password"] == REDACTED and copy["context"]["api_key"] == REDACTED
    assert copy["context"] == {"api_key": REDACTED, "name": "Ana", "n": 3, "ok": True, "none": None}
    assert copy["urls"][0] == "redis://user:***@host:6379/0"
    assert copy["hook"] == "https://bob:***@example.com/in"
    assert payload["password"] == "hunter2"  # the caller's payload is left as it was


def test_long_strings_many_items_and_deep_nesting_are_cut() -> None:
    copy = shown({"long": "x" * 5000, "many": list(range(ITEMS + 50)), "deep": [[[[1]]]]}, levels=3)
    assert copy["long"] == "x" * 1024 + "..."
    assert copy["many"] == list(range(ITEMS))
    assert copy["deep"] == [[CUT]]
    wide = shown({f"k{i}": i for i in range(ITEMS + 5)})
    assert len(wide) == ITEMS


def test_a_dict_subclass_is_shown_as_a_plain_dict_and_scalars_as_they_are() -> None:
    copy = shown(OrderedDict(a=1, b=2.5))
    assert type(copy) is dict and copy == {"a": 1, "b": 2.5}
    assert shown(7) == 7 and shown(None) is None and shown((1, "a")) == (1, "a")


@pytest.mark.parametrize(
    "value",
    [
        {"to": "ana@example.com", "context": {"name": "Ana", "n": 1, "f": 0.1, "t": None}},
        {"unicode": 'é ✓ \u2028 \n "quoted" \\', "list": [1, [2, [3]]], "empty": {}},
        {"nan": float("nan"), "inf": float("inf"), "big": 10**30, "neg": -0.0},
        [1, "two", {"three": 3}],
        "a plain string",
    ],
)
def test_json_text_is_what_the_standard_encoder_writes(value: object) -> None:
    assert dumps(value) == json.dumps(value)


def test_json_text_of_a_cycle_is_a_value_error_not_a_crash() -> None:
    cycle: dict[str, object] = {}
    cycle["self"] = cycle
    with pytest.raises(ValueError, match="Circular reference"):
        dumps(cycle)


def test_json_text_of_a_type_json_lacks_uses_kombus_encoder() -> None:
    value = {"id": uuid.UUID(int=1), "n": 1}
    assert dumps(value) == kombu_dumps(value)


def test_task_ids_are_distinct_version_4_uuids() -> None:
    ids = fast_uuid4s(2000) + [fast_uuid4() for _ in range(200)]
    assert len(set(ids)) == len(ids)
    for text in ids:
        parsed = uuid.UUID(text)
        assert str(parsed) == text and parsed.version == 4 and parsed.variant == uuid.RFC_4122
    assert fast_uuid4s(0) == []


def test_a_template_fills_its_holes_with_percent_signs_on_either_side() -> None:
    value = {"a": "100% sure", "b": {"c": "hole"}, "d": "%s %(x)s"}
    template = Template.of(value, ["b.c", "a"])
    filled = template.fill({"a": '"50%"', "b.c": '"%d"'})
    assert json.loads(filled) == {"a": "50%", "b": {"c": "%d"}, "d": "%s %(x)s"}
