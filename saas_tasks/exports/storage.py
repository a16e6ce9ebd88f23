"""Where export files live: a :class:`Storage` Protocol, local files and S3-compatible storage.

Publishing is atomic in both: the file is written completely under a temporary name first
(:meth:`Storage.staging_path`), then made visible under its final key in one step, a rename on
the local disk and a single PUT (or a completed multipart upload) on S3. A worker killed while
writing leaves at most a ``.partial`` staging file, never a half-written file under the final
name; the next attempt removes it.

boto3 is imported only when S3 storage is used, never at import time of the task modules.
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import parse_qs, quote, urlsplit

from saas_tasks.exceptions import ConfigurationError
from saas_tasks.exports import links
from saas_tasks.exports.errors import ExportStorageUnavailable
from saas_tasks.settings import get_settings

PARTIAL = ".partial"


class Storage(Protocol):
    """What the export task needs from a store. ``key`` is a relative path such as
    ``<export id>/invoices.csv``."""

    name: str

    def staging_path(self, key: str, attempt: str) -> Path:
        """A local path to write the file to before it is published (removed by the caller)."""

    def publish(self, staged: Path, key: str, content_type: str) -> int:
        """Make ``staged`` visible under ``key`` atomically; returns its size in bytes."""

    def exists(self, key: str) -> bool: ...

    def url(self, key: str, expires_in: int, filename: str) -> str:
        """A signed download link that stops working after ``expires_in`` seconds."""

    def discard_partials(self, key: str) -> int:
        """Remove staging files a killed attempt left for ``key``; returns how many."""

    def delete(self, key: str) -> None:
        """Remove the published file (retention); a file already gone is not an error."""


@dataclass
class LocalStorage:
    """Files under ``root`` (``./var/exports`` by default), served by the web app through
    :func:`saas_tasks.exports.links.verify` and HMAC-signed links."""

    root: Path
    base_url: str
    name: str = "local"

    def path(self, key: str) -> Path:
        return links.resolve_under(self.root, key)

    def staging_path(self, key: str, attempt: str) -> Path:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        return final.with_name(f".{final.name}.{attempt}.{uuid.uuid4().hex[:8]}{PARTIAL}")

    def publish(self, staged: Path, key: str, content_type: str) -> int:
        with staged.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(staged, self.path(key))  # atomic on one filesystem
        return self.path(key).stat().st_size

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def url(self, key: str, expires_in: int, filename: str) -> str:
        return links.sign(self.base_url, key, int(time.time()) + expires_in)

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)
        self.discard_partials(key)

    def discard_partials(self, key: str) -> int:
        final = self.path(key)
        removed = 0
        for leftover in final.parent.glob(f".{final.name}.*{PARTIAL}"):
            leftover.unlink(missing_ok=True)
            removed += 1
        return removed


@dataclass
class S3Storage:
    """An S3-compatible bucket; links are S3 presigned URLs."""

    bucket: str
    prefix: str = ""
    endpoint_url: str | None = None
    region: str | None = None
    name: str = "s3"

    def __post_init__(self) -> None:
        self._client: Any = None

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # type: ignore[import-untyped] # imported here: S3 is an extra, and heavy to import

            self._client = boto3.client(
                "s3", endpoint_url=self.endpoint_url, region_name=self.region
            )
        return self._client

    def object_key(self, key: str) -> str:
        links.check_key(key)
        return f"{self.prefix.strip('/')}/{key}" if self.prefix.strip("/") else key

    def staging_path(self, key: str, attempt: str) -> Path:
        handle, name = tempfile.mkstemp(prefix="saas-tasks-export-", suffix=PARTIAL)
        os.close(handle)
        return Path(name)

    def publish(self, staged: Path, key: str, content_type: str) -> int:
        from botocore.exceptions import BotoCoreError, ClientError  # type: ignore[import-untyped]

        try:
            # upload_file switches to multipart for big files; either way the object appears
            # only once complete.
            self.client.upload_file(
                str(staged),
                self.bucket,
                self.object_key(key),
                ExtraArgs={"ContentType": content_type},
            )
        except (BotoCoreError, ClientError) as exc:
            raise ExportStorageUnavailable(f"S3 upload to {self.bucket}: {exc}") from exc
        return staged.stat().st_size

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.head_object(Bucket=self.bucket, Key=self.object_key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                return False
            raise ExportStorageUnavailable(f"S3 head {self.bucket}: {exc}") from exc
        return True

    def url(self, key: str, expires_in: int, filename: str) -> str:
        return str(
            self.client.generate_presigned_url(
                "get_object",
                Params={
                    "Bucket": self.bucket,
                    "Key": self.object_key(key),
                    "ResponseContentDisposition": f"attachment; filename*=UTF-8''{quote(filename)}",
                },
                ExpiresIn=expires_in,
            )
        )

    def delete(self, key: str) -> None:
        from botocore.exceptions import BotoCoreError, ClientError

        try:  # S3 answers 204 for a key that is not there: missing is not an error
            self.client.delete_object(Bucket=self.bucket, Key=self.object_key(key))
        except (BotoCoreError, ClientError) as exc:
            raise ExportStorageUnavailable(f"S3 delete {self.bucket}: {exc}") from exc

    def discard_partials(self, key: str) -> int:
        return 0  # staging files live in the worker's temp dir; S3 never holds a partial object


def storage_from_url(url: str, base_url: str) -> Storage:
    """``file://DIR`` or ``s3://BUCKET/PREFIX?endpoint_url=...&region=...``."""
    parts = urlsplit(url)
    if parts.scheme == "file":
        return LocalStorage(Path((parts.netloc + parts.path) or "./var/exports"), base_url)
    if parts.scheme == "s3" and parts.netloc:
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        return S3Storage(
            parts.netloc, parts.path.strip("/"), query.get("endpoint_url"), query.get("region")
        )
    raise ConfigurationError(
        f"SAAS_TASKS_EXPORT_STORAGE_URL={url!r}: expected file://./var/exports or "
        "s3://bucket/prefix?endpoint_url=https://...&region=..."
    )


def get_storage() -> Storage:
    settings = get_settings()
    return storage_from_url(settings.export_storage_url, settings.export_base_url)
