"""One place that turns the failures an operator can fix into one line and an exit code.

Every command runs inside :func:`friendly_errors` (the root group wraps its ``invoke``), so no
command carries its own try/except. A traceback still escapes for anything unexpected: that is
a bug in the pack, and its stack is what a bug report needs.

Exit codes, for scripts: 1 a refused operation, 2 a usage error (click's), 3 an unknown dead
letter, 4 the database, 5 the broker, 6 the configuration.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import click
import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc

from saas_tasks.exceptions import (
    BrokerUnavailable,
    ConfigurationError,
    DeadLetterNotFound,
    SaasTasksError,
)
from saas_tasks.reliability.redaction import redact_url


class CliError(click.ClickException):
    """A one-line ``Error: …`` on stderr (a wrapped driver's message may hold newlines: they
    are folded so a log collector keeps it as one record); the subclass sets the exit code."""

    exit_code = 1
    one_line = True

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()) if self.one_line else message)


class UnknownEntry(CliError):
    exit_code = 3


class DatabaseProblem(CliError):
    exit_code = 4


class BrokerProblem(CliError):
    exit_code = 5


class ConfigurationProblem(CliError):
    exit_code = 6
    one_line = False  # one line per invalid variable, as the settings module lists them


@contextmanager
def friendly_errors() -> Iterator[None]:
    try:
        yield
    except DeadLetterNotFound as exc:
        raise UnknownEntry(str(exc)) from None
    except ConfigurationError as exc:
        raise ConfigurationProblem(str(exc)) from None
    except BrokerUnavailable as exc:
        raise BrokerProblem(str(exc)) from None
    except SaasTasksError as exc:
        raise CliError(str(exc)) from None
    except sqlalchemy.exc.DBAPIError as exc:
        raise _database_error(exc) from None
    except (kombu.exceptions.OperationalError, redis.exceptions.ConnectionError) as exc:
        raise BrokerProblem(
            f"the broker did not answer ({_first_line(exc)}); is it running? "
            "Check REDIS_URL / BROKER_URL"
        ) from None


def _database_error(exc: sqlalchemy.exc.DBAPIError) -> DatabaseProblem:
    cause = _first_line(exc.orig if exc.orig is not None else exc)
    where = f"DATABASE_URL={_database_url()}"
    # SQLite: OperationalError "no such table"; PostgreSQL: ProgrammingError "relation … does
    # not exist" (a missing *database* is an OperationalError "database … does not exist").
    missing_table = "no such table" in cause or (
        isinstance(exc, sqlalchemy.exc.ProgrammingError) and "does not exist" in cause
    )
    if missing_table:
        return DatabaseProblem(
            f"the database at {where} has no saas-tasks tables ({cause}); "
            "run `saas-tasks db upgrade`"
        )
    return DatabaseProblem(
        f"cannot use the database at {where} ({cause}): is it running? "
        "did you run `saas-tasks db upgrade`?"
    )


def _database_url() -> str:
    from saas_tasks.db import database_url

    try:
        return redact_url(database_url())
    except SaasTasksError:
        return "?"


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
