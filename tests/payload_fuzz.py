"""Bad payloads for every public task, drawn by hypothesis from each task's own schema.

Nothing here names a task or a field: the tasks are the app's registered ``saas_tasks.*``
tasks, and each bad payload is built from the JSON schema of the task's pydantic ``payload=``
model (or, for a task without one, from its signature). A payload starts valid, then gets one
to three defects, each remembered with the location pydantic reports it under:

=================  =============================================================
defect             what
=================  =============================================================
``wrong_type``     a JSON value of a kind the field accepts in no branch of its type
``out_of_range``   below ``minimum``, above ``maximum``, too short, too long (huge
                   strings), off ``pattern``, too few or too many items
``missing``        a required field left out
``unknown``        a field the model does not declare (a defect only where the model
                   forbids extra fields; elsewhere it rides along as noise)
``nested``         one of the above inside a nested model (``recipients.3.to``)
``positional``     more positional arguments than the model has fields
=================  =============================================================

Other fields may carry noise: any JSON value, huge strings, nesting up to
:data:`MAX_DEPTH` deep. Values stay within JSON (no NaN, no infinities): a payload is what
the worker decodes from a message.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import re
from dataclasses import dataclass, field
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from saas_tasks.exceptions import InvalidPayload
from saas_tasks.reliability.arguments import bind_call

PACK_PREFIX = "saas_tasks."
#: The families the issue names; every one must have at least one enumerated task.
FAMILIES = (
    "email",
    "exports",
    "billing",
    "subscriptions",
    "cleanup",
    "webhooks",
    "deadletter",
)
#: A keyword the pack takes out of the kwargs before validation (execute's caller key).
RESERVED_KWARGS = frozenset({"idempotency_key"})
MAX_DEPTH = 400
HUGE_MIN, HUGE_MAX = 10_000, 100_000
#: Distinct bad payloads each task must refuse; hypothesis draws more, some alike.
EXAMPLES = 1_000

FUZZ_SETTINGS = settings(
    max_examples=1_300,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.large_base_example,
        HealthCheck.filter_too_much,
    ],
)

# --- JSON values --------------------------------------------------------------------------

FLOATS = st.floats(allow_nan=False, allow_infinity=False)
LEAVES = st.none() | st.booleans() | st.integers() | FLOATS | st.text(max_size=10)
KEYS = st.text(min_size=1, max_size=10)


def _nest(depth: int, kind: str, leaf: Any) -> Any:
    value = leaf
    for _ in range(depth):
        value = [value] if kind == "list" else {"k": value}
    return value


def _repeat(unit: str, size: int) -> str:
    return (unit * (size // len(unit) + 1))[:size]


def huge_strings(min_size: int = HUGE_MIN, max_size: int = HUGE_MAX) -> st.SearchStrategy[str]:
    return st.builds(_repeat, st.text(min_size=1, max_size=8), st.integers(min_size, max_size))


DEEP = st.builds(_nest, st.integers(2, MAX_DEPTH), st.sampled_from(["list", "dict"]), LEAVES)
SMALL_JSON = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=4,
)
NOISE = st.one_of(SMALL_JSON, huge_strings(), DEEP)
#: Values by JSON kind, the kinds a field may or may not accept.
KINDS: dict[str, st.SearchStrategy[Any]] = {
    "null": st.none(),
    "bool": st.booleans(),
    "int": st.integers(),
    "float": FLOATS.filter(lambda x: not x.is_integer()),
    "str": st.text(max_size=30) | huge_strings(),
    "list": st.lists(SMALL_JSON, max_size=5) | DEEP.filter(lambda v: isinstance(v, list)),
    "dict": st.dictionaries(KEYS, SMALL_JSON, max_size=5)
    | DEEP.filter(lambda v: isinstance(v, dict)),
}
#: The kinds a JSON schema type could accept, erring wide (pydantic's lax mode turns "12"
#: and 12.0 into 12, a unix time into a date, and so on).
ACCEPTS: dict[str, set[str]] = {
    "integer": {"int", "float", "str", "bool"},
    "number": {"int", "float", "str", "bool"},
    "boolean": {"bool", "int", "str", "float"},
    "string": {"str"},
    "string/date": {"str", "int", "float"},
    "string/date-time": {"str", "int", "float"},
    "array": {"list"},
    "object": {"dict"},
    "null": {"null"},
}
#: Wrong values inside a kind the type accepts, when the type is a single one.
WRONG_WITHIN: dict[str, st.SearchStrategy[Any]] = {
    "integer": st.text(max_size=20).map(lambda s: "x" + s) | KINDS["float"],
    "number": st.text(max_size=20).map(lambda s: "x" + s),
    "string/date": st.text(max_size=20).map(lambda s: "x" + s),
    "string/date-time": st.text(max_size=20).map(lambda s: "x" + s),
}


def depth(value: Any) -> int:
    """How deep ``value`` nests (a scalar is 0, ``[1]`` is 1)."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        deepest = max(deepest, level)
        if isinstance(item, dict):
            stack.extend((child, level + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, level + 1) for child in item)
    return deepest


# --- the schema ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Schema:
    """One model's JSON schema, ``$defs`` resolved on demand."""

    node: dict[str, Any]
    defs: dict[str, Any]

    def at(self, node: dict[str, Any]) -> Schema:
        if "$ref" in node:
            node = self.defs[node["$ref"].rsplit("/", 1)[-1]]
        return Schema(node, self.defs)

    @property
    def properties(self) -> dict[str, dict[str, Any]]:
        return dict(self.node.get("properties", {}))

    @property
    def required(self) -> list[str]:
        return list(self.node.get("required", []))

    @property
    def forbids_extra(self) -> bool:
        return self.node.get("additionalProperties") is False

    def branches(self) -> list[Schema]:
        if "anyOf" in self.node:
            return [self.at(b) for b in self.node["anyOf"]]
        return [self]

    def kind(self) -> str:
        if "$ref" in self.node:
            return self.at(self.node).kind()
        kind = self.node.get("type", "any")
        if kind == "string" and self.node.get("format") in ("date", "date-time"):
            return f"string/{self.node['format']}"
        return str(kind)


@functools.cache
def schema_of(model: Any) -> Schema:
    full = model.model_json_schema()
    return Schema(full, full.get("$defs", {}))


# --- a valid starting point ---------------------------------------------------------------

_STRINGS = ("user@example.com", "welcome", "0123456789abcdef", "a")


def valid_value(schema: Schema) -> Any:
    """A value the schema accepts (checked against the model by the tests)."""
    kind = schema.kind()
    node = schema.at(schema.node).node if "$ref" in schema.node else schema.node
    if "anyOf" in node:
        return valid_value(schema.branches()[0])
    if kind == "object" and "properties" in node:
        return valid_base(Schema(node, schema.defs))
    if kind == "object":
        return {}
    if kind == "array":
        items = schema.at(node.get("items", {}))
        return [valid_value(items) for _ in range(max(1, node.get("minItems", 0)))]
    if kind in ("integer", "number"):
        return max(1, node.get("minimum", 1), node.get("exclusiveMinimum", 0) + 1)
    if kind == "string/date":
        return "2020-01-01"
    if kind == "string/date-time":
        return "2020-01-01T00:00:00+00:00"
    if kind == "string":
        low, high = node.get("minLength", 0), node.get("maxLength", 10**9)
        pattern = node.get("pattern")
        for text in _STRINGS:
            if low <= len(text) <= high and (pattern is None or re.search(pattern, text)):
                return text
        return "a" * max(low, 1)
    if kind == "boolean":
        return True
    return None


def valid_base(schema: Schema) -> dict[str, Any]:
    return {name: valid_value(schema.at(schema.properties[name])) for name in schema.required}


# --- defects ------------------------------------------------------------------------------


def wrong_type(schema: Schema) -> st.SearchStrategy[Any] | None:
    branches = schema.branches()
    accepted: set[str] = set()
    for branch in branches:
        kind = branch.kind()
        if kind == "any":
            return None
        accepted |= ACCEPTS.get(kind, set(KINDS))
    options = [KINDS[kind] for kind in KINDS if kind not in accepted]
    single = [b.kind() for b in branches if b.kind() != "null"]
    if len(single) == 1 and single[0] in WRONG_WITHIN:
        options.append(WRONG_WITHIN[single[0]])
    return st.one_of(options) if options else None


def out_of_range(schema: Schema) -> st.SearchStrategy[Any] | None:
    real = [b for b in schema.branches() if b.kind() != "null"]
    if len(real) != 1:
        return None
    node, kind = real[0].node, real[0].kind()
    options: list[st.SearchStrategy[Any]] = []
    if kind in ("integer", "number"):
        numbers = st.integers if kind == "integer" else _floats
        if "minimum" in node:
            options.append(numbers(max_value=node["minimum"] - 1))
        if "exclusiveMinimum" in node:
            options.append(numbers(max_value=node["exclusiveMinimum"]))
        if "maximum" in node:
            options.append(numbers(min_value=node["maximum"] + 1))
    if kind == "string":
        low, high = node.get("minLength", 0), node.get("maxLength")
        if low > 0:
            options.append(st.text(max_size=low - 1))
        if high is not None:
            options.append(st.text(min_size=high + 1, max_size=high + 20))
            options.append(huge_strings(max(high + 1, HUGE_MIN)))
        if "pattern" in node:
            pattern = node["pattern"]
            size = {"min_size": low, "max_size": min(high or 64, 64)}
            options.append(st.text(**size).filter(lambda s: not re.search(pattern, s)))
    if kind == "array":
        item = valid_value(real[0].at(node.get("items", {})))
        if node.get("minItems", 0) > 0:
            options.append(st.lists(st.just(item), max_size=node["minItems"] - 1))
        if "maxItems" in node:
            top = node["maxItems"]
            options.append(st.integers(top + 1, top + 50).map(lambda n: [item] * n))
    return st.one_of(options) if options else None


def _floats(
    min_value: float | None = None, max_value: float | None = None
) -> st.SearchStrategy[float]:
    return st.floats(
        min_value=min_value, max_value=max_value, allow_nan=False, allow_infinity=False
    ) | st.integers(
        min_value=None if min_value is None else int(min_value) + 1,
        max_value=None if max_value is None else int(max_value),
    ).map(float)


@dataclass
class Bad:
    """A bad payload and the locations the refusal must name."""

    args: list[Any]
    kwargs: dict[str, Any]
    named: list[str] = field(default_factory=list)
    kinds: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        """What the worker decodes: the payload after a JSON round trip."""
        decoded: dict[str, Any] = json.loads(json.dumps({"args": self.args, "kwargs": self.kwargs}))
        return decoded


Defect = tuple[str, str, st.SearchStrategy[Any] | None]
_PLANS: dict[str, list[Defect]] = {}


def plan(schema: Schema) -> list[Defect]:
    """Every defect ``schema`` can be given: ``(kind, field, strategy)``, built once."""
    cache_key = json.dumps(schema.node, sort_keys=True)
    if cache_key in _PLANS:
        return _PLANS[cache_key]
    properties = schema.properties
    possible: list[Defect] = []
    for name, node in properties.items():
        sub = schema.at(node)
        for kind, make in (("wrong_type", wrong_type), ("out_of_range", out_of_range)):
            strategy = make(sub)
            if strategy is not None:
                possible.append((kind, name, strategy))
        if name in schema.required:
            possible.append(("missing", name, None))
        nested = _nested(sub)
        if nested is not None:
            possible.append(("nested", name, nested))
    unknown = KEYS.filter(lambda k: k not in properties and k not in RESERVED_KWARGS)
    possible.append(("unknown" if schema.forbids_extra else "noise", "", unknown))
    _PLANS[cache_key] = possible
    return possible


@st.composite
def bad_model(draw: st.DrawFn, schema: Schema) -> tuple[dict[str, Any], Bad]:
    """A payload for ``schema`` with at least one defect, and what was broken."""
    payload = valid_base(schema)
    bad = Bad([], payload)
    possible = plan(schema)
    defects = [i for i, (kind, _, _) in enumerate(possible) if kind != "noise"]
    chosen = draw(
        st.lists(
            st.sampled_from(defects),
            min_size=1,
            max_size=3,
            unique_by=lambda i: possible[i][1] or possible[i][0],
        )
    )
    if possible[-1][0] == "noise" and draw(st.booleans()):
        chosen.append(len(possible) - 1)
    # noise on fields the defects leave alone: any JSON value, huge or deep
    broken = {possible[i][1] for i in chosen}
    others = sorted(set(schema.properties) - broken)
    if others:
        for name in draw(st.lists(st.sampled_from(others), max_size=2, unique=True)):
            payload[name] = draw(NOISE)
    for index in chosen:
        kind, name, strategy = possible[index]
        if kind == "missing":
            payload.pop(name, None)
            bad.named.append(name)
        elif kind in ("unknown", "noise"):
            assert strategy is not None
            key = draw(strategy)
            payload[key] = draw(NOISE)
            if kind == "unknown":
                bad.named.append(key)
        elif kind == "nested":
            assert strategy is not None
            value, loc = draw(strategy)
            payload[name] = value
            bad.named.append(name + loc)
        else:
            assert strategy is not None
            payload[name] = draw(strategy)
            bad.named.append(name)
        if kind != "noise":
            bad.kinds.append(kind)
    return payload, bad


def _nested(schema: Schema) -> st.SearchStrategy[tuple[Any, str]] | None:
    """A bad nested model (``.sub``), or a list holding one bad item (``.3.sub``)."""
    real = [b for b in schema.branches() if b.kind() != "null"]
    if len(real) != 1:
        return None
    node = real[0].node
    if "properties" in node:
        inner = Schema(node, schema.defs)
        return bad_model(inner).map(lambda pb: (pb[0], "." + pb[1].named[0]))
    if node.get("type") == "array":
        items = real[0].at(node.get("items", {}))
        if "properties" not in items.node:
            return None
        good = valid_base(items)

        @st.composite
        def listed(draw: st.DrawFn) -> tuple[Any, str]:
            item, inner_bad = draw(bad_model(items))
            before = draw(st.integers(0, 3))
            after = draw(st.integers(0, 3))
            return [good] * before + [item] + [good] * after, f".{before}.{inner_bad.named[0]}"

        return listed()
    return None


@st.composite
def bad_payloads(draw: st.DrawFn, task: Any) -> Bad:
    """A bad call of ``task``: positional and keyword arguments, and what must be named."""
    if task.spec.payload is None:
        return draw(_bad_call(task))
    schema = schema_of(task.spec.payload)
    fields = list(task.spec.payload.model_fields)
    payload, bad = draw(bad_model(schema))
    if draw(st.integers(0, 9)) == 0:
        extra = draw(st.lists(NOISE, min_size=1, max_size=3))
        args = [payload.get(name) for name in fields] + extra
        return Bad(args, {}, ["positional arguments"], ["positional"])
    positional = draw(st.integers(0, len(fields)))
    if all(name in payload for name in fields[:positional]):
        args = [payload.pop(name) for name in fields[:positional]]
        return Bad(args, payload, bad.named, bad.kinds)
    return bad


@st.composite
def _bad_call(draw: st.DrawFn, task: Any) -> Bad:
    """A call a task without a payload model refuses: arguments it does not take."""
    parameters = set(inspect.signature(task.spec.fn).parameters)
    keys = KEYS.filter(lambda k: k not in parameters and k not in RESERVED_KWARGS)
    kwargs = draw(st.dictionaries(keys, NOISE, max_size=3))
    positional = len(parameters)
    args = draw(st.lists(NOISE, min_size=0 if kwargs else positional + 1, max_size=positional + 3))
    if len(args) > positional:
        return Bad(args, kwargs, ["positional arguments"], ["positional"])
    return Bad([], kwargs, [next(iter(kwargs))], ["unknown"])  # Python names the first


# --- the checks ---------------------------------------------------------------------------


def public_tasks(app: Any) -> dict[str, Any]:
    """Every registered task of the pack, by name."""
    app.loader.import_default_modules()
    return {
        name: app.tasks[name]
        for name in sorted(app.tasks)
        if name.startswith(PACK_PREFIX) and hasattr(app.tasks[name], "spec")
    }


def refusal(task: Any, bad: Bad, decoded: dict[str, Any] | None = None) -> InvalidPayload:
    """Validate ``bad`` as the worker would (the pack's own ``bind_call``, which ``execute``
    runs first); return the InvalidPayload. Anything else, accepting included, fails."""
    call = decoded or bad.as_json()
    kwargs = {k: v for k, v in call["kwargs"].items() if k not in RESERVED_KWARGS}
    try:
        bind_call(task, task.spec, tuple(call["args"]), kwargs)
    except InvalidPayload as exc:
        return exc
    raise AssertionError(f"{task.name} accepted a bad payload: {bad.kinds} {bad.named}")


def names(message: str, location: str) -> bool:
    """Whether the refusal names ``location`` (``field``, ``field.sub``, ``field.3.sub``)."""
    if location == "positional arguments":
        return "positional argument" in message
    body = message.split(": ", 1)[-1]
    return (
        re.search(rf"(?:^|; ){re.escape(location)}[.:]", body) is not None
        or f"unexpected keyword argument {location!r}" in message
    )


def key_of(decoded: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(decoded, sort_keys=True).encode()).hexdigest()


@dataclass
class Run:
    """One task's fuzz run: how many distinct bad payloads were refused, and a sample kept
    for publishing (every :data:`KEEP_EVERY`-th, so the sample spans the whole run)."""

    refused: int
    kept: list[Bad]


KEEP_EVERY = 2


def schema_key(task: Any) -> str:
    """Tasks with one schema get the same payloads (hypothesis is derandomized): one run
    checks each payload against every task of the group."""
    if task.spec.payload is None:
        return "signature:" + ",".join(inspect.signature(task.spec.fn).parameters)
    return json.dumps(task.spec.payload.model_json_schema(), sort_keys=True)


def fuzz(task: Any) -> Run:
    """Refuse at least :data:`EXAMPLES` distinct bad payloads of ``task`` in process, each
    naming its defects. Cached: the integration tier publishes the payloads kept here."""
    key = schema_key(task)
    group = tuple(t for t in public_tasks(task.app).values() if schema_key(t) == key)
    return _fuzz_group(group)


@functools.cache
def _fuzz_group(group: tuple[Any, ...]) -> Run:
    seen: set[str] = set()
    kept: list[Bad] = []

    @FUZZ_SETTINGS
    @given(bad_payloads(group[0]))
    def check(bad: Bad) -> None:
        decoded = bad.as_json()
        for task in group:
            message = str(refusal(task, bad, decoded))
            unnamed = [loc for loc in bad.named if not names(message, loc)]
            assert not unnamed, f"{task.name}: the refusal does not name {unnamed}: {message[:300]}"
        key = key_of(decoded)
        if key not in seen:
            seen.add(key)
            if len(seen) % KEEP_EVERY == 0:
                kept.append(bad)

    check()
    return Run(len(seen), kept)
