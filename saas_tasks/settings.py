"""One typed settings object, read from the environment once per process.

Celery's configuration, the database engine and every task family read their knobs from here,
never from scattered ``os.environ`` look-ups, so that a bad value fails at start with the
variable's name and the fix instead of deep inside a task at 3 a.m.
"""

from __future__ import annotations

import functools
import ipaddress
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from saas_tasks.exceptions import ConfigurationError

PLACEHOLDER_SECRETS = frozenset({"", "changethis", "change-me", "changeme", "secret", "dev-secret"})
DEFAULT_SECRET = "dev-secret"  # noqa: S105 - refused outside development


def _alias(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every environment variable the pack reads (see the table in README.md)."""

    model_config = SettingsConfigDict(
        env_prefix="SAAS_TASKS_",
        extra="ignore",
        case_sensitive=False,
        populate_by_name=True,
    )

    env: Literal["development", "test", "production"] = "development"
    secret_key: str = Field(
        DEFAULT_SECRET,
        description="Signs export links and webhook material; required in production.",
    )

    # --- services -------------------------------------------------------------------------
    redis_url: str = Field(
        "redis://127.0.0.1:6379/0", validation_alias=_alias("REDIS_URL", "SAAS_TASKS_REDIS_URL")
    )
    broker_url: str | None = Field(
        None, validation_alias=_alias("BROKER_URL", "SAAS_TASKS_BROKER_URL")
    )
    result_backend: str | None = Field(
        None, validation_alias=_alias("RESULT_BACKEND", "SAAS_TASKS_RESULT_BACKEND")
    )
    database_url: str = Field(
        "sqlite:///./var/saas_tasks.db",
        validation_alias=_alias("DATABASE_URL", "SAAS_TASKS_DATABASE_URL"),
    )
    database_pool_size: int = Field(5, ge=1, le=100)

    # --- delivery guarantees --------------------------------------------------------------
    task_time_limit: int = Field(600, ge=1, description="Default hard time limit, seconds.")
    task_soft_time_limit: int = Field(540, ge=1, description="Default soft time limit, seconds.")
    visibility_timeout: int = Field(
        7200, ge=1, description="Redis visibility timeout; must exceed every hard time limit."
    )
    result_expires: int = Field(86400, ge=60, description="Seconds task results are kept.")
    publish_timeout: float = Field(
        2.0, gt=0, le=60, description="How long .delay() may wait for a dead broker."
    )
    broker_reconnect_interval_start: float = Field(
        0.5, ge=0, le=60, description="Seconds before a worker's first broker reconnect attempt."
    )
    broker_reconnect_interval_step: float = Field(
        0.5, ge=0, le=60, description="Seconds added to the wait after each failed attempt."
    )
    broker_reconnect_interval_max: float = Field(
        2.0, gt=0, le=60, description="Longest wait between a worker's reconnect attempts."
    )
    worker_max_memory_per_child: int = Field(
        512_000, ge=10_000, description="KiB a worker child may grow to before it is replaced."
    )
    worker_concurrency: int | None = Field(None, ge=1, le=512)
    default_queue: str = "default"

    # --- dead letters ---------------------------------------------------------------------
    dead_letter_retention_days: int = Field(30, ge=1)
    alert_webhook_url: str | None = None
    alert_email: str | None = None
    email_url: str = Field(
        "file://./var/outbox", validation_alias=_alias("EMAIL_URL", "SAAS_TASKS_EMAIL_URL")
    )
    email_from: str = "saas-tasks <no-reply@localhost>"
    email_templates_dir: Path | None = Field(
        None, description="Templates here override the shipped ones of the same name."
    )
    email_rate_limit: float = Field(
        0.0, ge=0, description="Messages per second across all workers; 0 means unlimited."
    )
    email_rate_burst: int = Field(
        1, ge=1, description="Messages the rate limit lets through at once after a pause."
    )
    email_timeout: float = Field(10.0, gt=0, le=300, description="SMTP socket timeout, seconds.")
    email_brand_name: str = Field("saas-tasks", description="The name the email layout shows.")
    spool_dir: Path = Field(Path("./var/spool"), description="Last-resort store for dead letters.")

    # --- subscriptions --------------------------------------------------------------------
    subscription_reminder_offsets: Annotated[tuple[int, ...], NoDecode] = Field(
        (7, 3, 1),
        description="Days before a renewal, lapse or trial end that reminders go out: 7,3,1.",
    )
    subscription_grace_days: int = Field(
        3, ge=0, le=365, description="Days past its period end before a subscription expires."
    )
    subscription_chunk_size: int = Field(
        100, ge=1, le=1000, description="Subscriptions one reminder or expiry task handles."
    )
    subscription_expire_batch_size: int = Field(
        1000, ge=1, le=100_000, description="Subscriptions expired in one transaction."
    )
    subscription_manage_url: str = Field(
        "http://localhost:8000/account/billing",
        description="Where reminder and expiry emails send the customer to manage the plan.",
    )

    # --- cleanup --------------------------------------------------------------------------
    cleanup_batch_size: int = Field(
        5000, ge=1, le=100_000, description="Rows a cleanup batch deletes in one transaction."
    )
    cleanup_time_budget: float = Field(
        240.0,
        gt=0,
        description="Seconds a cleanup run works before it hands over to a follow-up run "
        "(never more than half the task's soft time limit).",
    )
    cleanup_batch_pause: float = Field(
        0.0, ge=0, le=60, description="Seconds a cleanup run sleeps between batches."
    )
    session_retention_hours: int = Field(
        0, ge=0, description="Hours an expired session is kept after it expires."
    )
    audit_log_retention_days: int = Field(90, ge=1, description="Days audit logs are kept.")
    system_log_retention_days: int = Field(90, ge=1, description="Days system logs are kept.")
    export_retention_days: int = Field(
        7, ge=1, description="Days export files and their records are kept."
    )
    idempotency_retention_days: int = Field(
        7, ge=1, description="Days a finished task's idempotency record is kept."
    )

    # --- webhooks -------------------------------------------------------------------------
    webhook_connect_timeout: float = Field(
        5.0, gt=0, le=60, description="Seconds to connect to a webhook receiver."
    )
    webhook_read_timeout: float = Field(
        15.0, gt=0, le=120, description="Seconds a webhook receiver may take to answer."
    )
    webhook_max_attempts: int = Field(
        12, ge=1, le=50, description="POSTs of one delivery before it fails for good."
    )
    webhook_retry_base: float = Field(
        60.0, ge=0, description="Seconds before the first retry; doubles each attempt."
    )
    webhook_retry_cap: float = Field(
        10800.0, ge=0, description="Longest wait between two attempts, Retry-After included."
    )
    webhook_disable_after_failures: int = Field(
        50, ge=1, description="Failed attempts in a row after which an endpoint is disabled."
    )
    webhook_allowed_networks: str = Field(
        "",
        description="Comma-separated CIDRs that deliveries may reach although they are not "
        "public (e.g. 127.0.0.0/8 in tests); empty refuses every private address.",
    )
    webhook_dispatch_batch: int = Field(
        500, ge=1, le=10_000, description="Due retries the dispatcher enqueues per run."
    )

    # --- exports --------------------------------------------------------------------------
    export_storage_url: str = Field(
        "file://./var/exports",
        description="Where exports are stored: file://DIR or s3://BUCKET/PREFIX?endpoint_url=...",
    )
    export_base_url: str = Field(
        "http://localhost:8000/exports/download",
        description="Public URL the web app mounts the local download helper at.",
    )
    export_link_ttl: int = Field(
        86400, ge=60, le=604800, description="Seconds a download link stays valid (max 7 days)."
    )
    export_time_limit: int = Field(
        3600, ge=1, description="Hard time limit of an export, seconds (below the visibility)."
    )
    export_soft_time_limit: int = Field(
        3300, ge=1, description="Soft time limit of an export: it fails cleanly, seconds."
    )
    export_chunk_rows: int = Field(
        5000, ge=1, le=1_000_000, description="Rows fetched per round trip and progress step."
    )

    # --- billing reconciliation -----------------------------------------------------------
    billing_finance_email: str | None = Field(
        None, description="Where the nightly reconciliation report goes; unset: no email."
    )
    billing_provider: Literal["none", "stripe"] = Field(
        "none",
        description="Where reconcile fetches provider records: stripe, or none (imported).",
    )
    billing_import_dir: Path | None = Field(
        None, description="Provider export files a reconcile payload may name live here."
    )
    stripe_api_key: str | None = Field(None, description="Stripe secret key (restricted, read).")
    stripe_api_base: str | None = Field(
        None, description="Another Stripe API address (a local server in tests)."
    )

    # --- schedules and monitoring ---------------------------------------------------------
    disable_schedules: bool = False
    beat_lock_timeout: int = Field(
        30,
        ge=3,
        le=3600,
        description="Seconds a dead beat's Redis lock outlives it; a standby beat then takes over.",
    )
    flower_basic_auth: str | None = Field(
        None, validation_alias=_alias("FLOWER_BASIC_AUTH", "SAAS_TASKS_FLOWER_BASIC_AUTH")
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["text", "json"] = Field(
        "text", description="text: Celery's lines with task_name[task_id]; json: one object a line."
    )
    sentry_dsn: str | None = Field(
        None,
        validation_alias=_alias("SENTRY_DSN", "SAAS_TASKS_SENTRY_DSN"),
        description="Report errors to Sentry (the sentry extra) from worker and beat.",
    )

    # --- derived --------------------------------------------------------------------------
    @property
    def broker(self) -> str:
        return self.broker_url or self.redis_url

    @property
    def backend(self) -> str:
        return self.result_backend or self.redis_url

    @property
    def broker_is_redis(self) -> bool:
        return urlsplit(self.broker).scheme in {"redis", "rediss", "redis+socket"}

    @field_validator("redis_url", "broker_url", "result_backend")
    @classmethod
    def _url_has_scheme(cls, value: str | None) -> str | None:
        if value is not None and "://" not in value:
            raise ValueError("expected a URL such as redis://127.0.0.1:6379/0")
        return value

    @field_validator("email_url")
    @classmethod
    def _email_url(cls, value: str) -> str:
        if urlsplit(value).scheme not in {"smtp", "smtps", "file", "console"}:
            raise ValueError(
                "expected smtp://user:pass@host:587?starttls=true, smtps://host:465, "
                "file://./var/outbox or console://"
            )
        return value

    @field_validator("subscription_reminder_offsets", mode="before")
    @classmethod
    def _offsets(cls, value: object) -> object:
        if isinstance(value, str):
            value = [part for part in value.replace(" ", "").split(",") if part]
        return value

    @field_validator("subscription_reminder_offsets")
    @classmethod
    def _offsets_valid(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(day < 1 or day > 365 for day in value) or len(set(value)) != len(value):
            raise ValueError("expected distinct whole days between 1 and 365, such as 7,3,1")
        return tuple(sorted(value, reverse=True))

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        scheme = urlsplit(value).scheme.split("+")[0]
        if scheme not in {"sqlite", "postgresql", "postgres"}:
            raise ValueError(
                "expected sqlite:///path/to/file.db or postgresql://user@host:5432/dbname"
            )
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        for item in filter(None, (part.strip() for part in value.split(","))):
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(
                    f"{item!r} is not a network; expected CIDRs such as 127.0.0.0/8,::1/128"
                ) from None
        return value

    @property
    def webhook_networks(self) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
        """The networks webhook deliveries may reach although they are not public."""
        parts = (part.strip() for part in self.webhook_allowed_networks.split(","))
        return tuple(ipaddress.ip_network(part, strict=False) for part in parts if part)

    @model_validator(mode="after")
    def _coherent(self) -> Settings:
        if self.task_soft_time_limit >= self.task_time_limit:
            raise ValueError(
                "SAAS_TASKS_TASK_SOFT_TIME_LIMIT must be below SAAS_TASKS_TASK_TIME_LIMIT"
            )
        if self.export_soft_time_limit >= self.export_time_limit:
            raise ValueError(
                "SAAS_TASKS_EXPORT_SOFT_TIME_LIMIT must be below SAAS_TASKS_EXPORT_TIME_LIMIT"
            )
        if self.broker_reconnect_interval_start > self.broker_reconnect_interval_max:
            raise ValueError(
                "SAAS_TASKS_BROKER_RECONNECT_INTERVAL_START must not exceed "
                "SAAS_TASKS_BROKER_RECONNECT_INTERVAL_MAX"
            )
        if self.env == "production" and self.secret_key.strip().lower() in PLACEHOLDER_SECRETS:
            raise ValueError(
                "SAAS_TASKS_SECRET_KEY is a placeholder; set a long random value in production "
                "(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
            )
        return self


def _explain(error: ValidationError) -> str:
    lines = ["invalid configuration:"]
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "settings"
        variable = loc.upper() if loc.upper() in _PLAIN_NAMES else f"SAAS_TASKS_{loc.upper()}"
        if loc == "settings":
            variable = "settings"
        lines.append(f"  {variable}: {item['msg']} (got {item.get('input')!r})")
    return "\n".join(lines)


_PLAIN_NAMES = {
    "REDIS_URL",
    "BROKER_URL",
    "RESULT_BACKEND",
    "DATABASE_URL",
    "EMAIL_URL",
    "SENTRY_DSN",
}


def load_settings() -> Settings:
    """Read the environment now, raising :class:`ConfigurationError` that names the variable."""
    try:
        return Settings()
    except ValidationError as exc:
        raise ConfigurationError(_explain(exc)) from None


@functools.cache
def get_settings() -> Settings:
    """The process-wide settings, read once (tests call ``get_settings.cache_clear()``)."""
    return load_settings()
