"""The exports family's errors, placed in the pack's tree (see :mod:`saas_tasks.exceptions`).

    TransientError
    └── ExportStorageUnavailable  the storage could not be reached: retried
    PermanentError
    ├── ExportFailed              the export cannot complete as asked (too long, too big)
    ├── LinkRefused               a download link was tampered with, or has expired
    └── InvalidPayload
        ├── UnknownDataset        no dataset of that name is registered
        ├── UnknownFormat         not csv, jsonl, json or xlsx
        ├── InvalidFilter         an unknown filter field, operator or value
        └── ExportNotFound        no exports row has that id

Bad input is refused in ``request_export`` before any work, with the offending name in the
message; the same checks run again in the worker, where they dead-letter without retrying.
"""

from __future__ import annotations

from saas_tasks.exceptions import InvalidPayload, PermanentError, TransientError


class ExportStorageUnavailable(TransientError):
    """The export storage did not answer; the export is retried."""


class ExportFailed(PermanentError):
    """The export cannot complete as asked; the message says why and what to change."""


class LinkRefused(PermanentError):
    """A download link's signature does not match, or its time is up."""


class UnknownDataset(InvalidPayload):
    """No dataset of that name is registered."""


class UnknownFormat(InvalidPayload):
    """The format is not one the pack writes."""


class InvalidFilter(InvalidPayload):
    """A filter names an unknown field or operator, or its value has the wrong type."""


class ExportNotFound(InvalidPayload):
    """No export has that id."""
