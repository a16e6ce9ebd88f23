"""Exports: CSV, JSON Lines, JSON and XLSX files of large tables, streamed, stored, linked.

Light to import (the web app imports it to call :func:`request_export`): no openpyxl, boto3
or pandas until an export of that kind runs in the worker.
"""

from saas_tasks.exports.datasets import Dataset, Filter, register_bundle, register_dataset
from saas_tasks.exports.errors import (
    ExportFailed,
    ExportNotFound,
    ExportStorageUnavailable,
    InvalidFilter,
    LinkRefused,
    UnknownDataset,
    UnknownFormat,
)
from saas_tasks.exports.service import request_export, status

__all__ = [
    "Dataset",
    "ExportFailed",
    "ExportNotFound",
    "ExportStorageUnavailable",
    "Filter",
    "InvalidFilter",
    "LinkRefused",
    "UnknownDataset",
    "UnknownFormat",
    "register_bundle",
    "register_dataset",
    "request_export",
    "status",
]
