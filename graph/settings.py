"""Service settings: one object, read from FAILCAST_* variables, validated at start-up."""

import hashlib
import hmac
import ipaddress
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from auth import AuthConfig, check_production_ready, parse_scopes_strict
from model import DEVICE_FEATURES
from persistence import is_sqlite, is_sqlite_file


@dataclass(frozen=True)
class Limits:
    """The ceilings every document must stay under (each a FAILCAST_MAX_* setting)."""

    max_query_bytes: int = 65_536
    max_tokens: int = 2000
    max_depth: int = 10
    max_aliases: int = 15
    max_cost: int = 10_000
    max_fragment_spreads: int = 100
    max_fields: int = 5000
    max_field_pairs: int = 2000
    check_budget_ms: float = 50.0
    # Lists without `first` whose length has a bound of its own ("Type.field", rows): the
    # cost counts them at that bound, as it counts a page at its `first`.
    list_bounds: tuple[tuple[str, int], ...] = ()


# Lists are comma-separated in the environment (JSON arrays are accepted too).
CommaList = Annotated[list[str], NoDecode]

MAX_WEBHOOKS = 100  # `webhooks` is a plain list: at most this many exist
DEV_SECRET_FILE = Path(".failcast/dev-jwt-secret")
ANY_ORIGIN = "*"  # FAILCAST_CORS_ORIGINS entry that allows every origin (refused in production)
_HOST = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*")


class SettingsError(Exception):
    """The settings cannot run a server; the message says which one and why."""

    code = "BAD_SETTINGS"


class Settings(BaseSettings):
    """Everything the service reads from its environment (prefix FAILCAST_)."""

    model_config = SettingsConfigDict(env_prefix="FAILCAST_", extra="ignore")

    database_url: str = "sqlite:///./failcast.db"
    env: Literal["development", "production"] = "development"
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    log_level: str = "info"
    log_format: Literal["auto", "json", "text"] = "auto"  # auto: json in production

    jwt_secret: str | None = None
    jwt_secret_file: Path | None = None
    jwt_public_key: str | None = None
    jwt_jwks_url: str | None = None
    jwt_algorithms: CommaList = Field(default_factory=lambda: ["HS256"])
    jwt_issuer: str = "failcast"
    jwt_audience: str = "failcast-api"
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    jwt_roles: dict[str, list[str]] = Field(default_factory=dict)
    jwt_jwks_cache_seconds: float = Field(default=300.0, gt=0)
    jwt_jwks_min_refresh_seconds: float = Field(default=30.0, gt=0)
    jwt_jwks_failure_cache_seconds: float = Field(default=10.0, gt=0)
    cursor_secret: str | None = None  # default: derived from the JWT secret or public key

    enable_graphiql: bool | None = None  # default: on in development, off in production
    enable_introspection: bool | None = None
    model_refresh_seconds: float = Field(default=5.0, gt=0)
    db_pool_size: int = Field(default=8, ge=1, le=100)
    db_statement_timeout_ms: int = Field(default=5000, ge=0)
    db_writers: int | None = Field(default=None, ge=1, le=16)  # default: 1 SQLite, 2 PostgreSQL
    writer_process: bool = False  # group commits written by processes of their own (opt-in)
    # The page cache of the connection that writes the group commits to a SQLite file
    sqlite_writer_cache_mib: int = Field(default=16, ge=1, le=1024)
    compiled_plans: bool = True  # predict documents answered by graph/plans.py, not the executor
    max_batch_size: int = Field(default=1000, ge=1, le=10000)
    max_page_size: int = Field(default=500, ge=1, le=10000)
    max_stats_rows: int = Field(default=5000, ge=1, le=100_000)  # rows of predictionStats
    # Devices whose latest observations a process keeps for history features (LRU)
    history_cache_devices: int = Field(default=100_000, ge=0, le=10_000_000)
    max_query_depth: int = Field(default=10, ge=1)
    max_aliases: int = Field(default=15, ge=0)
    max_tokens: int = Field(default=2000, ge=10)
    max_query_cost: int = Field(default=10_000, ge=1)
    max_query_bytes: int = Field(default=65_536, ge=1024)
    max_fragment_spreads: int = Field(default=100, ge=0)
    max_fields: int = Field(default=5000, ge=10)
    max_field_pairs: int = Field(default=2000, ge=0)
    max_check_ms: float = Field(default=50.0, gt=0)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_response_bytes: int = Field(default=8 * 1024 * 1024, ge=1024)
    document_cache_bytes: int = Field(default=32 * 1024 * 1024, ge=0)
    document_cache_nodes: int = Field(default=25_000, ge=0)  # each full GC walks them all
    request_timeout_seconds: float = Field(default=10.0, gt=0)
    body_timeout_seconds: float = Field(default=10.0, gt=0)
    commit_timeout_seconds: float = Field(default=3.0, gt=0)
    idempotency_ttl_hours: float = Field(default=24.0, gt=0, le=24 * 30)
    idempotency_wait_seconds: float = Field(default=5.0, ge=0, le=60)  # a repeat waits this long
    anonymous_rate_limit: tuple[float, float] = (20.0, 40.0)  # per client address: (per s, burst)
    trusted_proxies: CommaList = Field(default_factory=list)  # addresses or networks
    cors_origins: CommaList = Field(default_factory=list)  # browser apps' origins; * dev only
    # failureAlerts over WebSocket (graph/edge/subscriptions.py), per server process.
    subscription_init_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    subscription_connections_per_subject: int = Field(default=5, ge=1, le=1000)
    subscriptions_per_connection: int = Field(default=10, ge=1, le=100)
    # Webhooks (graph/runtime/webhooks.py): where they may point, and how they are retried.
    webhook_allowed_hosts: CommaList = Field(default_factory=list)  # hosts or *.domain
    webhook_max_attempts: int = Field(default=8, ge=1, le=100)
    webhook_retry_base_seconds: float = Field(default=4.0, gt=0, le=5)
    webhook_retry_max_seconds: float = Field(default=600.0, gt=0, le=600)
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    refusal_tally_seconds: float = Field(default=10.0, gt=0)
    refusal_tally_max_addresses: int = Field(default=1000, ge=1)
    metrics_require_token: bool | None = None  # default: required in production
    rate_limits: dict[str, tuple[float, float]] = Field(
        default_factory=lambda: {
            "predict": (1000.0, 2000.0),
            "predictions:read": (50.0, 100.0),
            "models:read": (50.0, 100.0),
            "audit:read": (20.0, 40.0),
            "webhooks:read": (20.0, 40.0),
            "webhooks:write": (5.0, 10.0),
        }
    )  # scope -> (per second, burst), per subject, for the whole deployment
    heartbeat_seconds: float = Field(default=5.0, gt=0)
    audit_seal_interval_seconds: float = Field(default=30.0, gt=0)
    audit_seal_lag_seconds: float = Field(default=120.0, ge=0)
    # Model monitoring: drift of inputs against the training profile, outcomes, live performance.
    drift_window_hours: float = Field(default=24.0, gt=0, le=24 * 366)  # drift's default window
    drift_min_sample: int = Field(default=500, ge=1)  # fewer predictions: INSUFFICIENT_DATA
    drift_sample: int = Field(default=5000, ge=100, le=100_000)  # rows of a window KS reads
    drift_refresh_seconds: float = Field(default=300.0, gt=0)  # the drift gauges of /metrics
    drift_gauge_rows: int = Field(default=100_000, ge=1)  # the gauges read the latest ones
    outcome_horizon_days: int = Field(default=1, ge=1, le=365)  # what an outcome labels
    performance_tolerance: float = Field(default=0.1, ge=0, le=1)  # absolute, below training
    performance_min_failures: int = Field(default=10, ge=1)  # labeled failures before `degraded`
    # Connection guards of `failcast serve` (graph/edge/connections.py), per worker process.
    header_timeout_seconds: float = Field(default=10.0, gt=0)
    max_header_bytes: int = Field(default=32768, ge=1024)
    max_connections: int = Field(default=1000, ge=1)

    @field_validator(
        "jwt_algorithms", "trusted_proxies", "cors_origins", "webhook_allowed_hosts", mode="before"
    )
    @classmethod
    def _split_list(cls, value: object) -> object:
        if isinstance(value, str):
            if value.lstrip().startswith("["):
                return json.loads(value)
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _check_networks(cls, value: list[str]) -> list[str]:
        for item in value:
            ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("cors_origins")
    @classmethod
    def _check_origins(cls, value: list[str]) -> list[str]:
        return [item if item == ANY_ORIGIN else canonical_origin(item) for item in value]

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _check_hosts(cls, value: list[str]) -> list[str]:
        return [allowed_host(item) for item in value]

    @model_validator(mode="after")
    def _check_drift_gauge_rows(self) -> "Settings":
        if self.drift_gauge_rows < self.drift_min_sample:
            message = (
                f"FAILCAST_DRIFT_GAUGE_ROWS ({self.drift_gauge_rows}) is below "
                f"FAILCAST_DRIFT_MIN_SAMPLE ({self.drift_min_sample}): the drift gauges would "
                "never read enough predictions for a status"
            )
            raise ValueError(message)
        return self

    @property
    def limits(self) -> Limits:
        """The abuse limits every GraphQL document is checked against."""
        return Limits(
            max_query_bytes=self.max_query_bytes,
            max_tokens=self.max_tokens,
            max_depth=self.max_query_depth,
            max_aliases=self.max_aliases,
            max_cost=self.max_query_cost,
            max_fragment_spreads=self.max_fragment_spreads,
            max_fields=self.max_fields,
            max_field_pairs=self.max_field_pairs,
            check_budget_ms=self.max_check_ms,
            list_bounds=(
                ("Query.predictionStats", self.max_stats_rows),
                ("DriftReport.features", len(DEVICE_FEATURES)),  # one entry per model input
                ("Query.webhooks", MAX_WEBHOOKS),
                # one explanation per row of a predictColumns answer: at most a batch's rows
                ("PredictColumnsPayload.explanation", self.max_batch_size),
            ),
        )

    @property
    def metrics_token(self) -> bool:
        """Whether /metrics needs a bearer token with the metrics:read scope."""
        return self.production if self.metrics_require_token is None else self.metrics_require_token

    @property
    def writer_processes(self) -> int:
        """How many writer processes write the group commits (0: threads of this process),
        with `writer_process` on (graph/runtime/writers.py): one per commit that may run at
        once (`writers`); none for an in-memory SQLite database, which lives in this process."""
        if not self.writer_process:
            return 0
        if is_sqlite(self.database_url):
            return 1 if is_sqlite_file(self.database_url) else 0
        return self.writers

    @property
    def writers(self) -> int:
        """How many group commits may run at once (SQLite serialises writers: 1)."""
        if self.db_writers is not None:
            return 1 if is_sqlite(self.database_url) else self.db_writers
        return 1 if is_sqlite(self.database_url) else 2

    @property
    def json_logs(self) -> bool:
        """Whether log lines are JSON objects."""
        return self.log_format == "json" or (self.log_format == "auto" and self.production)

    @property
    def production(self) -> bool:
        """Whether the service runs in production mode."""
        return self.env == "production"

    @property
    def graphiql(self) -> bool:
        """Whether GET /graphql serves the GraphiQL page."""
        return (not self.production) if self.enable_graphiql is None else self.enable_graphiql

    @property
    def introspection(self) -> bool:
        """Whether schema introspection is allowed."""
        if self.enable_introspection is None:
            return not self.production
        return self.enable_introspection

    def secret(self) -> str | None:
        """The HS secret: the variable, else the contents of the secret file."""
        if self.jwt_secret:
            return self.jwt_secret
        if self.jwt_secret_file and self.jwt_secret_file.is_file():
            return self.jwt_secret_file.read_text(encoding="utf-8").strip() or None
        return None

    def cursor_key(self) -> bytes:
        """The key cursors are signed with: the same in every process of a deployment."""
        material = (
            self.cursor_secret
            or self.secret()
            or self.jwt_public_key
            or self.jwt_jwks_url
            or self.database_url
        )
        return hmac.new(b"failcast-cursors", material.encode(), hashlib.sha256).digest()

    def auth_config(self) -> AuthConfig:
        """The token-verification configuration these settings describe."""
        roles = {name: parse_scopes_strict(scopes) for name, scopes in self.jwt_roles.items()}
        return AuthConfig(
            issuer=self.jwt_issuer,
            audience=self.jwt_audience,
            algorithms=tuple(self.jwt_algorithms),
            secret=self.secret(),
            public_key_pem=self.jwt_public_key,
            jwks_url=self.jwt_jwks_url,
            leeway_seconds=self.jwt_leeway_seconds,
            roles=roles,
            jwks_cache_seconds=self.jwt_jwks_cache_seconds,
            jwks_min_refresh_seconds=self.jwt_jwks_min_refresh_seconds,
            jwks_failure_cache_seconds=self.jwt_jwks_failure_cache_seconds,
        )

    def check_startable(self) -> None:
        """Refuse settings a server must not run with (raises SettingsError)."""
        config = self.auth_config()
        try:
            config.validate()
            if self.production:
                check_production_ready(config, known_dev_secrets=_dev_secrets(self))
        except Exception as error:
            raise SettingsError(f"cannot start: {error}") from error
        if self.production and ANY_ORIGIN in self.cors_origins:
            raise SettingsError(
                "cannot start: FAILCAST_CORS_ORIGINS=* is for development only; "
                "list the browser apps' origins (scheme://host[:port])"
            )


def _dev_secrets(settings: Settings) -> list[str]:
    # A secret generated for local development must never guard a production deployment.
    path = settings.jwt_secret_file or DEV_SECRET_FILE
    if path.is_file():
        return [path.read_text(encoding="utf-8").strip()]
    return []


def canonical_origin(text: str) -> str:
    """`scheme://host[:port]` as browsers send it in Origin; ValueError if `text` is not one."""
    parts = urlsplit(text.strip())
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not _is_host(host):
        raise ValueError(f"CORS origin {text!r} is not scheme://host[:port] (http or https)")
    if parts.path or any(mark in text for mark in "@?#"):
        raise ValueError(f"CORS origin {text!r} must have no path, query, fragment or user")
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0:
        raise ValueError(f"CORS origin {text!r} has no valid port (1..65535)")
    default = 443 if parts.scheme == "https" else 80
    # Browsers send the host lower-cased, IPv6 in brackets and the scheme's default port left out.
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}" + ("" if port in (None, default) else f":{port}")


def allowed_host(text: str) -> str:
    """An entry of FAILCAST_WEBHOOK_ALLOWED_HOSTS, lower-cased: a host name, an IP address or
    `*.domain`; ValueError for anything else (a URL, a port, a bare `*`)."""
    entry = text.strip().lower().rstrip(".")
    name = entry[2:] if entry.startswith("*.") else entry
    if name.startswith("[") and name.endswith("]"):
        name, entry = name[1:-1], name[1:-1]
    if not name or not (_is_host(name) or _is_ip(name)) or (entry != name and _is_ip(name)):
        raise ValueError(
            f"webhook host {text!r} is not a host name, an IP address or *.domain "
            "(no scheme or port)"
        )
    return entry


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_host(host: str) -> bool:
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return False
        return True
    return _HOST.fullmatch(host) is not None
