"""Download links (local HMAC links and the mounted helper; S3 presigned URLs against moto's
S3 server on loopback) expire and refuse tampering; S3 storage publishes and links a file."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from saas_tasks.exports import LinkRefused, links
from saas_tasks.exports.storage import LocalStorage, S3Storage, storage_from_url

BASE = "http://app.example/exports/download"


def test_a_signed_local_link_verifies_until_it_expires() -> None:
    url = links.sign(BASE, "abc/invoices.csv", int(time.time()) + 60)
    assert links.verify_url(url, BASE) == "abc/invoices.csv"
    with pytest.raises(LinkRefused, match="expired"):
        links.verify_url(url, BASE, now=time.time() + 61)


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda u: u.replace("invoices.csv", "payments.csv"), "signature"),
        (lambda u: u.replace("expires=", "expires=9"), "signature"),
        (lambda u: u[:-2] + ("00" if not u.endswith("00") else "11"), "signature"),
        (lambda u: u.replace("abc/invoices.csv", "abc/../../etc/passwd"), "invalid export key"),
    ],
)
def test_a_tampered_local_link_is_refused(change: object, reason: str) -> None:
    url = links.sign(BASE, "abc/invoices.csv", int(time.time()) + 60)
    with pytest.raises(LinkRefused, match=reason):
        links.verify_url(change(url), BASE)  # type: ignore[operator]


def test_the_mounted_download_helper_serves_a_valid_link_and_refuses_a_tampered_one(
    tmp_path: Path,
) -> None:
    (tmp_path / "abc").mkdir()
    (tmp_path / "abc" / "invoices.csv").write_bytes(b"id\r\n1\r\n")
    storage = LocalStorage(tmp_path, BASE)
    url = storage.url("abc/invoices.csv", 60, "invoices.csv")

    async def fetch(target: str) -> httpx.Response:
        transport = httpx.ASGITransport(app=links.download_app(tmp_path))
        async with httpx.AsyncClient(transport=transport, base_url="http://app.example") as c:
            return await c.get(target.replace("http://app.example/exports/download", ""))

    good = asyncio.run(fetch(url))
    bad = asyncio.run(fetch(url.replace("signature=", "signature=0")))
    assert good.status_code == 200 and good.content == b"id\r\n1\r\n"
    assert "attachment" in good.headers["content-disposition"]
    assert bad.status_code == 403 and b"altered" in bad.content


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> S3Storage:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    storage = storage_from_url(
        f"s3://exports-bucket/tenant-exports?endpoint_url={s3_endpoint}&region=us-east-1", BASE
    )
    assert isinstance(storage, S3Storage)
    storage.client.create_bucket(Bucket="exports-bucket")
    return storage


def test_s3_storage_publishes_the_staged_file_and_its_presigned_link_downloads_it(
    s3: S3Storage,
) -> None:
    staged = s3.staging_path("e1/users.csv", "t1")
    staged.write_bytes(b"id,name\r\n1,Zo\xc3\xab\r\n")
    assert not s3.exists("e1/users.csv")

    size = s3.publish(staged, "e1/users.csv", "text/csv; charset=utf-8")

    assert size == staged.stat().st_size and s3.exists("e1/users.csv")
    response = httpx.get(s3.url("e1/users.csv", 60, "users.csv"))
    assert response.status_code == 200 and response.content == staged.read_bytes()
    staged.unlink()


def test_an_s3_link_is_presigned_to_expire_after_the_link_ttl(s3: S3Storage) -> None:
    # moto does not check signatures or expiry (S3 does); what the pack controls is the expiry
    # it signs into the link.
    url = httpx.URL(s3.url("e2/users.csv", 90, "users.csv"))
    expires = int(url.params["Expires"])
    assert time.time() + 85 <= expires <= time.time() + 91
    assert "Signature" in url.params
