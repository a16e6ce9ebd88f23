"""Datasets are registered by name: a select, its columns, and the filters it allows.

A host app adds its own in a few lines::

    from saas_tasks.exports import Filter, register_dataset

    register_dataset(
        "projects",
        lambda: select(Project.id, Project.name, Project.created_at).order_by(Project.id),
        filters={"tenant_id": Filter(Project.tenant_id, int)},
    )

Filters are structured values, ``{"status": "paid", "created_at": {"gte": "2024-01-01"}}``:
the field must be declared, the operator one of :data:`OPERATORS`, the value of the declared
type; each becomes a bound parameter of a SQLAlchemy comparison, never SQL text. A *bundle* is
several datasets sharing one filter (the per-user data export): it becomes a zip with one file
per part.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import ColumnElement, Select
from sqlalchemy.orm import QueryableAttribute

from saas_tasks.exports.errors import InvalidFilter, UnknownDataset

#: Any select, whatever its column types (SQLAlchemy 2.1 types selects by column).
AnySelect = Select[*tuple[Any, ...]]

#: Operators a filter may use; a bare value means ``eq``.
OPERATORS = frozenset({"eq", "ne", "lt", "lte", "gt", "gte", "in"})
MAX_IN_VALUES = 1000


@dataclass(frozen=True)
class Filter:
    """A filterable field: the column it compares, the type of its values, its operators."""

    column: ColumnElement[Any] | QueryableAttribute[Any]
    type: type = str
    operators: frozenset[str] = OPERATORS

    def clause(self, field_name: str, operator: str, value: Any) -> ColumnElement[bool]:
        if operator not in self.operators:
            raise InvalidFilter(
                f"filter {field_name!r}: operator {operator!r} is not allowed "
                f"(allowed: {', '.join(sorted(self.operators))})"
            )
        if operator == "in":
            if not isinstance(value, list) or not value or len(value) > MAX_IN_VALUES:
                raise InvalidFilter(
                    f"filter {field_name!r}: 'in' takes a list of 1 to {MAX_IN_VALUES} values"
                )
            return self.column.in_([self._coerce(field_name, item) for item in value])
        typed = self._coerce(field_name, value)
        comparisons: dict[str, Callable[[Any], ColumnElement[bool]]] = {
            "eq": self.column.__eq__,
            "ne": self.column.__ne__,
            "lt": self.column.__lt__,
            "lte": self.column.__le__,
            "gt": self.column.__gt__,
            "gte": self.column.__ge__,
        }
        return comparisons[operator](typed)

    def _coerce(self, field_name: str, value: Any) -> Any:
        try:
            typed: Any = TypeAdapter(self.type).validate_python(value, strict=False)
        except ValidationError as exc:
            reason = exc.errors()[0]["msg"]
            raise InvalidFilter(
                f"filter {field_name!r}: {value!r} is not a valid {self.type.__name__} ({reason})"
            ) from None
        if isinstance(typed, datetime) and typed.tzinfo is None:
            raise InvalidFilter(
                f"filter {field_name!r}: give a timezone, e.g. 2024-01-01T00:00:00Z"
            )
        return typed


@dataclass(frozen=True)
class Dataset:
    """A named select. ``query`` builds it (a fresh one per export); ``required`` filters must
    be given (a per-user export without its user would export everyone)."""

    name: str
    query: Callable[[], AnySelect]
    filters: Mapping[str, Filter] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    parts: Mapping[str, Dataset] = field(default_factory=dict)

    @property
    def is_bundle(self) -> bool:
        return bool(self.parts)

    def check_filters(self, filters: Mapping[str, Any]) -> None:
        """Refuse unknown fields, operators and values before any work; names the culprit."""
        for name in filters:
            self._filter(name)
        for part in self.parts.values() or [self]:
            part.select(filters)
        missing = self.required - set(filters)
        if missing:
            raise InvalidFilter(
                f"dataset {self.name!r} requires the filter(s) {', '.join(sorted(missing))}"
            )

    def select(self, filters: Mapping[str, Any]) -> AnySelect:
        """The dataset's select with ``filters`` applied as bound comparisons."""
        statement = self.query()
        for name, spec in filters.items():
            declared = self._filter(name)
            conditions = spec if isinstance(spec, dict) else {"eq": spec}
            if not conditions:
                raise InvalidFilter(f"filter {name!r}: empty condition")
            for operator, value in conditions.items():
                statement = statement.where(declared.clause(name, str(operator), value))
        return statement

    def _filter(self, name: str) -> Filter:
        if name not in self.filters:
            hint = difflib.get_close_matches(name, self.filters, n=1)
            raise InvalidFilter(
                f"dataset {self.name!r} has no filter {name!r}"
                + (f"; did you mean {hint[0]!r}?" if hint else "")
                + f" (filters: {', '.join(sorted(self.filters)) or 'none'})"
            )
        return self.filters[name]


_registry: dict[str, Dataset] = {}


def register_dataset(
    name: str,
    query: Callable[[], AnySelect],
    filters: Mapping[str, Filter] | None = None,
    required: tuple[str, ...] = (),
) -> Dataset:
    """Register (or replace) the dataset ``name``; returns it."""
    dataset = Dataset(name, query, dict(filters or {}), frozenset(required))
    _registry[name] = dataset
    return dataset


def register_bundle(
    name: str,
    parts: Mapping[str, Dataset],
    filters: Mapping[str, Filter],
    required: tuple[str, ...],
) -> Dataset:
    """Register a bundle: every part is filtered by the same values, one file a part."""
    for part in parts.values():
        unknown = set(filters) - set(part.filters)
        if unknown:
            raise InvalidFilter(f"bundle {name!r}: part {part.name!r} lacks filter(s) {unknown}")
    dataset = Dataset(
        name, lambda: _no_select(name), dict(filters), frozenset(required), dict(parts)
    )
    _registry[name] = dataset
    return dataset


def _no_select(name: str) -> AnySelect:
    raise UnknownDataset(f"{name!r} is a bundle: export its parts")


def get_dataset(name: str) -> Dataset:
    from saas_tasks.exports import queries  # noqa: F401 - registers the shipped datasets

    if name not in _registry:
        hint = difflib.get_close_matches(name, _registry, n=1)
        raise UnknownDataset(
            f"unknown dataset {name!r}"
            + (f"; did you mean {hint[0]!r}?" if hint else "")
            + f" (registered: {', '.join(sorted(_registry))})"
        )
    return _registry[name]


def dataset_names() -> list[str]:
    from saas_tasks.exports import queries  # noqa: F401

    return sorted(_registry)
