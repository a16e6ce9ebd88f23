"""Standard Webhooks signatures, the SSRF address rules and the retry arithmetic, as plain
functions."""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json

import pytest

from saas_tasks.webhooks import WebhookVerificationError, generate_secret, verify_signature
from saas_tasks.webhooks.addresses import refusal, resolve
from saas_tasks.webhooks.client import retry_after, verdict_for
from saas_tasks.webhooks.errors import AddressRefused, InvalidEndpoint
from saas_tasks.webhooks.signing import signed_headers

NOW = 1_732_363_200
BODY = json.dumps({"id": "msg_1", "type": "invoice.paid", "data": {"amount": 1999}}).encode()


def test_a_secret_is_whsec_and_base64_of_32_random_bytes() -> None:
    secret = generate_secret()

    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret[6:])) == 32
    assert generate_secret() != secret


def test_the_signature_is_hmac_sha256_of_id_timestamp_and_body_as_the_standard_says() -> None:
    secret = "whsec_" + base64.b64encode(b"k" * 32).decode()
    headers = signed_headers(secret, "msg_1", BODY, now=NOW)

    expected = hmac.new(b"k" * 32, b"msg_1.%d." % NOW + BODY, hashlib.sha256).digest()
    assert headers == {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(NOW),
        "webhook-signature": "v1," + base64.b64encode(expected).decode(),
    }


def test_a_signed_body_verifies_and_comes_back_parsed_whatever_the_header_case() -> None:
    secret = generate_secret()
    headers = {k.title(): v for k, v in signed_headers(secret, "msg_1", BODY, now=NOW).items()}

    assert verify_signature(BODY, headers, secret, now=NOW + 10)["data"] == {"amount": 1999}


def test_a_tampered_body_or_another_secret_is_refused() -> None:
    secret = generate_secret()
    headers = signed_headers(secret, "msg_1", BODY, now=NOW)

    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify_signature(BODY.replace(b"1999", b"9999"), headers, secret, now=NOW)
    with pytest.raises(WebhookVerificationError, match="no webhook-signature matches"):
        verify_signature(BODY, headers, generate_secret(), now=NOW)


def test_a_replayed_old_timestamp_is_refused_even_with_a_valid_signature() -> None:
    secret = generate_secret()
    headers = signed_headers(secret, "msg_1", BODY, now=NOW)

    with pytest.raises(WebhookVerificationError, match="replayed or delayed"):
        verify_signature(BODY, headers, secret, now=NOW + 301)
    with pytest.raises(WebhookVerificationError, match="replayed or delayed"):
        verify_signature(BODY, headers, secret, now=NOW - 301)


def test_any_of_several_signatures_verifies_while_a_secret_is_rotated() -> None:
    old, new = generate_secret(), generate_secret()
    headers = signed_headers(new, "msg_1", BODY, now=NOW)
    stale = signed_headers(old, "msg_1", BODY, now=NOW)["webhook-signature"]
    headers["webhook-signature"] = f"{stale} {headers['webhook-signature']}"

    assert verify_signature(BODY, headers, new, now=NOW)["id"] == "msg_1"


def test_a_missing_header_is_named() -> None:
    with pytest.raises(WebhookVerificationError, match="missing header webhook-signature"):
        verify_signature(BODY, {"webhook-id": "x", "webhook-timestamp": str(NOW)}, "whsec_AA==")


@pytest.mark.parametrize(
    ("address", "why"),
    [
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("10.1.2.3", "private"),
        ("192.168.0.10", "private"),
        ("172.16.5.4", "private"),
        ("169.254.169.254", "metadata"),
        ("169.254.10.10", "link-local"),
        ("fe80::1", "link-local"),
        ("::ffff:127.0.0.1", "loopback"),
        ("0.0.0.0", "unspecified"),
        ("100.64.0.1", "not a public address"),
    ],
)
def test_non_public_addresses_are_refused(address: str, why: str) -> None:
    assert why in (refusal(ipaddress.ip_address(address), ()) or "")


def test_public_addresses_and_allowed_networks_pass() -> None:
    assert refusal(ipaddress.ip_address("93.184.216.34"), ()) is None
    assert (
        refusal(ipaddress.ip_address("127.0.0.1"), (ipaddress.ip_network("127.0.0.0/8"),)) is None
    )


def test_a_host_name_is_checked_after_resolution() -> None:
    with pytest.raises(AddressRefused, match=r"localhost resolves to .*loopback"):
        resolve("http://localhost:8080/hook", ())


def test_urls_without_http_or_with_credentials_are_invalid_endpoints() -> None:
    with pytest.raises(InvalidEndpoint, match="url: 'ftp://"):
        resolve("ftp://example.com/x", ())
    with pytest.raises(InvalidEndpoint, match="credentials"):
        resolve("https://user:pw@example.com/x", ())


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, "succeeded"),
        (204, "succeeded"),
        (500, "retry"),
        (503, "retry"),
        (408, "retry"),
        (429, "retry"),
        (410, "failed"),
        (400, "failed"),
        (404, "failed"),
        (301, "failed"),
    ],
)
def test_statuses_decide_between_success_retry_and_final_failure(status: int, verdict: str) -> None:
    assert verdict_for(status) == verdict


def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert retry_after("120") == 120.0
    assert retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after("soon") is None


def test_backoff_grows_exponentially_keeps_half_its_step_honours_retry_after_and_is_capped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from saas_tasks.settings import get_settings
    from saas_tasks.webhooks.service import backoff

    monkeypatch.setenv("SAAS_TASKS_WEBHOOK_RETRY_BASE", "60")
    monkeypatch.setenv("SAAS_TASKS_WEBHOOK_RETRY_CAP", "10800")
    get_settings.cache_clear()
    try:
        assert 30 <= backoff(1) <= 60
        assert 480 <= backoff(5) <= 960
        assert backoff(30) <= 10800 and backoff(30) >= 5400
        assert backoff(1, retry_after=600) >= 600
        assert backoff(1, retry_after=10**6) == 10800
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
