"""Webhooks: where alerts may be POSTed, how they are signed, written and delivered.

- **Targets** (`TargetPolicy`): a webhook URL's host must match FAILCAST_WEBHOOK_ALLOWED_HOSTS:
  an entry is a host (`hooks.example.com`, `10.0.0.7`), listed explicitly, or a wildcard
  (`*.example.com`, any host below it). `http://` is accepted for explicitly listed hosts
  only. At every attempt the host is resolved and, unless it is listed explicitly, refused when
  any of its addresses is not a public one (loopback, private, link-local, ...): so a public
  name pointing into the internal network is no way in. The POST goes to the address that was
  checked (the name stays in Host and in TLS), and a redirect is followed only when it is a
  307 or 308 to a target that passes the same checks.
- **Signing** (`signature`): `Failcast-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of
  "<t>.<raw body>" keyed with the webhook's secret>`, made anew at each attempt;
  `Failcast-Delivery: <delivery id>` stays the same across attempts (the receiver's
  idempotency key).
- **The outbox** (`outbox_rows`): the predictions' effect (graph/runtime/alerts.py) writes one
  delivery per matching webhook and prediction in the transaction that stores the
  predictions, with the exact body to POST; the matcher is the subscription's.
- **Delivery** (`Deliveries`, in every server process): due rows are claimed (with a lease),
  POSTed, and the outcome recorded; a failure is retried after `backoff` (exponential, with
  jitter: the first retry within FAILCAST_WEBHOOK_RETRY_BASE_SECONDS, never more than
  FAILCAST_WEBHOOK_RETRY_MAX_SECONDS apart), and after FAILCAST_WEBHOOK_MAX_ATTEMPTS the
  delivery is dead (kept, and shown by `webhookDeliveries`). At least once: a process that dies
  between a POST and its record leaves the row to be claimed and sent again.
"""

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import random
import secrets
import socket
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import orjson
from sqlalchemy.engine import Connection, Engine

from graph.errors import ErrorCode, FailcastError, bad_input
from graph.runtime.alerts import AlertFilter, alert_filter
from graph.runtime.audit import RequestAudit
from graph.runtime.usecases import Page, read
from graph.settings import MAX_WEBHOOKS
from model import DEVICE_FEATURES
from persistence import PredictionBlock, Webhook, WebhookDelivery, new_id, webhooks

log = logging.getLogger("failcast.webhooks")

MAX_URL = 2048
MAX_REDIRECTS = 3
CLAIM_BATCH = 16
USER_AGENT = "failcast-webhooks/1"
SIGNATURE_HEADER = "Failcast-Signature"
DELIVERY_HEADER = "Failcast-Delivery"
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
_RANDOM = random.Random()  # jitter only: spreads retries, guards nothing


class Refused(Exception):
    """A target the policy does not allow (the message says why, for `lastError`)."""


@dataclass(frozen=True)
class Target:
    """A checked URL: where to connect, and whether its host is listed explicitly."""

    url: str
    scheme: str
    host: str  # lower-case; an IPv6 address without brackets
    port: int
    explicit: bool


class TargetPolicy:
    """FAILCAST_WEBHOOK_ALLOWED_HOSTS, and the checks of a target against it."""

    def __init__(self, allowed_hosts: Sequence[str]) -> None:
        self.hosts = frozenset(h for h in allowed_hosts if not h.startswith("*."))
        self.suffixes = tuple(h[1:] for h in allowed_hosts if h.startswith("*."))  # ".x.com"

    def check(self, url: str) -> Target:
        """The target of a URL the allow-list accepts; Refused (saying why) otherwise."""
        if len(url) > MAX_URL or not url.isprintable() or any(c.isspace() for c in url):
            raise Refused(f"a URL of at most {MAX_URL} characters without spaces")
        parts = urlsplit(url)
        if parts.scheme not in ("https", "http"):
            raise Refused("the URL must be https:// (or http:// for a host listed explicitly)")
        if parts.username is not None or parts.password is not None or "@" in parts.netloc:
            raise Refused("the URL must not carry a user name or password")
        host = (parts.hostname or "").rstrip(".").lower()
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError:
            raise Refused("the URL's port is not a number in 1..65535") from None
        if not host:
            raise Refused("the URL has no host")
        explicit = host in self.hosts
        if not explicit and not any(host.endswith(s) for s in self.suffixes):
            raise Refused(f"the host {host} is not on FAILCAST_WEBHOOK_ALLOWED_HOSTS")
        if parts.scheme == "http" and not explicit:
            raise Refused(f"http:// only for hosts listed explicitly; use https://{host}")
        return Target(url, parts.scheme, host, port, explicit)

    async def address(self, target: Target) -> Address:
        """The address to connect to: resolved now, and public unless listed explicitly."""
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                target.host, target.port, type=socket.SOCK_STREAM
            )
        except OSError as error:
            raise Refused(f"{target.host} does not resolve: {error}") from error
        found = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]
        if not found:
            raise Refused(f"{target.host} has no address")
        if not target.explicit:
            inner = [a for a in found if not _public(a)]
            if inner:
                raise Refused(
                    f"{target.host} resolves to {inner[0]}, an address that is not public: "
                    "list the host explicitly in FAILCAST_WEBHOOK_ALLOWED_HOSTS to allow it"
                )
        return found[0]


def _public(address: Address) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_global
    return address.is_global


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The Failcast-Signature header: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>">."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def backoff(attempts: int, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failures: exponential with jitter, in
    [d/2, d] for d = min(cap, base * 2^(attempts - 1))."""
    ceiling: float = min(cap, base * 2.0 ** min(attempts - 1, 60))
    jitter: float = (rng or _RANDOM).random()
    return ceiling / 2 + jitter * ceiling / 2


# -- the outbox --------------------------------------------------------------------------------


def outbox_rows(
    connection: Connection, block: PredictionBlock, model_version: str
) -> list[dict[str, Any]]:
    """The deliveries a committed block makes: one per matching webhook and prediction."""
    hooks = webhooks.targets(connection)
    if not hooks:
        return []
    rows = []
    for hook in hooks:
        where = AlertFilter(hook.min_probability, hook.device_id_prefix)
        for i, probability in enumerate(block.failure_probability):
            if where.matches(probability, block.threshold, block.device_ids[i]):
                delivery = new_id()
                body = _body(delivery, hook.id, block, i, model_version)
                rows.append(
                    {
                        "id": delivery,
                        "webhook_id": hook.id,
                        "prediction_id": block.ids[i],
                        "created_at": block.created_at,
                        "body": body,
                    }
                )
    return rows


def _outcome(attempt: webhooks.Attempt, retry_at: datetime | None) -> str:
    if attempt.delivered:
        return "delivered"
    return "dead" if retry_at is None else "retried"


def write_outbox(connection: Connection, block: PredictionBlock, model_version: str) -> int:
    """Write the deliveries of a block being stored (on its transaction); how many."""
    rows = outbox_rows(connection, block, model_version)
    webhooks.enqueue(connection, rows)
    return len(rows)


def _body(
    delivery: uuid.UUID, webhook: uuid.UUID, block: PredictionBlock, i: int, version: str
) -> bytes:
    """What is POSTed: the prediction as the API shows it, and which delivery this is."""
    failure = bool(block.is_failure[i])
    prediction = {
        "id": str(block.ids[i]),
        "createdAt": block.created_at.isoformat(),
        "observedAt": block.observed_at[i].isoformat(),
        "deviceId": block.device_ids[i],
        "label": "FAILURE" if failure else "NON_FAILURE",
        "failureProbability": block.failure_probability[i],
        "threshold": block.threshold,
        "modelVersion": version,
        "input": {name: block.metrics[name][i] for name in DEVICE_FEATURES},
    }
    return orjson.dumps(
        {
            "type": "failureAlert",
            "deliveryId": str(delivery),
            "webhookId": str(webhook),
            "prediction": prediction,
        }
    )


# -- creating, listing and deleting -------------------------------------------------------------


@dataclass(frozen=True)
class CreateWebhook:
    """A new webhook, stored with the request that creates it (an Effect)."""

    row: dict[str, Any]

    def apply(self, connection: Connection) -> None:
        """Store it on the request's transaction."""
        webhooks.insert(connection, self.row)


@dataclass(frozen=True)
class DeleteWebhook:
    """A webhook deleted with its deliveries, with the request that deletes it (an Effect)."""

    webhook_id: uuid.UUID

    def apply(self, connection: Connection) -> None:
        """Delete it on the request's transaction (NotFound if it went meanwhile)."""
        webhooks.delete(connection, self.webhook_id)


def check_url(policy: TargetPolicy, url: str) -> Target:
    """BAD_USER_INPUT naming `url` unless the policy accepts it."""
    try:
        return policy.check(url)
    except Refused as refused:
        raise bad_input(f"url refused: {refused}", "url") from None


async def create(
    engine: Engine,
    policy: TargetPolicy,
    audit: RequestAudit,
    url: str,
    min_probability: float | None,
    device_id_prefix: str | None,
) -> tuple[Webhook, str]:
    """A webhook and its secret, stored with the request (the secret is never shown again)."""
    check_url(policy, url)
    alert_filter(min_probability, device_id_prefix)  # the matcher's own checks
    if await read(engine, webhooks.count) >= MAX_WEBHOOKS:
        message = f"at most {MAX_WEBHOOKS} webhooks: delete one first"
        raise FailcastError(ErrorCode.CONFLICT, message)
    secret = "whsec_" + secrets.token_urlsafe(32)
    row: dict[str, Any] = {
        "id": new_id(),
        "url": url,
        "min_probability": min_probability,
        "device_id_prefix": device_id_prefix,
        "secret": secret,
        "created_at": datetime.now(UTC),
        "subject": audit.subject[:255] if audit.subject else None,
        "request_id": audit.id,
    }
    audit.add_effect(CreateWebhook(row))
    return Webhook(**row), secret


async def delete(engine: Engine, audit: RequestAudit, webhook_id: uuid.UUID) -> Webhook:
    """Delete a webhook and its deliveries with the request; NOT_FOUND naming `id`."""
    found = await read(engine, lambda s: webhooks.get(s, webhook_id))
    if found is None:
        raise FailcastError(ErrorCode.NOT_FOUND, "no webhook with this id", field="id")
    audit.add_effect(DeleteWebhook(webhook_id))
    return found


async def listed(engine: Engine) -> list[Webhook]:
    """Every webhook, oldest first."""
    return await read(engine, webhooks.list_all)


async def delivery_page(
    engine: Engine, webhook_id: uuid.UUID, first: int, before: uuid.UUID | None
) -> Page[WebhookDelivery]:
    """A page of a webhook's deliveries, newest first; NOT_FOUND naming `webhookId`."""

    def work(session: Any) -> list[WebhookDelivery] | None:
        if webhooks.get(session, webhook_id) is None:
            return None
        return webhooks.delivery_page(session, webhook_id, first + 1, before)

    rows = await read(engine, work)
    if rows is None:
        raise FailcastError(ErrorCode.NOT_FOUND, "no webhook with this id", field="webhookId")
    return Page(rows[:first], len(rows) > first)


async def delivery_count(engine: Engine, webhook_id: uuid.UUID) -> int:
    """How many deliveries a webhook has."""
    return await read(engine, lambda s: webhooks.delivery_count(s, webhook_id))


# -- delivering ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class DeliverySettings:
    """How deliveries are made and retried (FAILCAST_WEBHOOK_*)."""

    max_attempts: int = 8
    retry_base_seconds: float = 4.0
    retry_max_seconds: float = 600.0
    timeout_seconds: float = 10.0
    poll_seconds: float = 1.0


class Deliveries:
    """The delivery worker of one process: claims due deliveries, POSTs them, records how."""

    def __init__(
        self,
        engine: Engine,
        policy: TargetPolicy,
        settings: DeliverySettings,
        counted: Callable[[str], None] | None = None,
    ) -> None:
        self.engine = engine
        self.policy = policy
        self.settings = settings
        self.counted = counted  # each attempt's outcome: delivered, retried or dead
        self._due = asyncio.Event()
        self._next_retry: float | None = None  # loop time of the earliest retry this one set

    def wake(self) -> None:
        """Deliveries were committed: look for them now rather than at the next poll."""
        self._due.set()

    async def run(self) -> None:
        """Deliver for ever (the lifespan cancels it)."""
        limits = httpx.Limits(max_connections=CLAIM_BATCH, max_keepalive_connections=4)
        async with httpx.AsyncClient(follow_redirects=False, limits=limits) as client:
            while True:
                try:
                    busy = await self.deliver_due(client)
                except Exception as error:  # the database went away, or a bug: keep going
                    log.warning("webhook deliveries skipped a turn: %r", error)
                    busy = False
                if not busy:
                    await self._wait()

    async def _wait(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self.settings.poll_seconds
        if self._next_retry is not None:
            wait = max(0.0, min(wait, self._next_retry - loop.time()))
        try:
            async with asyncio.timeout(wait):
                await self._due.wait()
        except TimeoutError:
            pass
        self._due.clear()
        if self._next_retry is not None and self._next_retry <= loop.time():
            self._next_retry = None

    async def deliver_due(self, client: httpx.AsyncClient) -> bool:
        """Claim and deliver one batch of due deliveries; whether the batch was full."""
        lease = timedelta(seconds=self.settings.timeout_seconds * (MAX_REDIRECTS + 1) + 30)
        now = datetime.now(UTC)
        claimed = await asyncio.to_thread(webhooks.claim_due, self.engine, now, CLAIM_BATCH, lease)
        await asyncio.gather(*(self._deliver(client, c) for c in claimed))
        return len(claimed) == CLAIM_BATCH

    async def _deliver(self, client: httpx.AsyncClient, claimed: webhooks.Claimed) -> None:
        attempt = await self.post(client, claimed)
        retry_at = None
        attempts = claimed.attempts + 1
        if not attempt.delivered and attempts < self.settings.max_attempts:
            settings = self.settings
            delay = backoff(attempts, settings.retry_base_seconds, settings.retry_max_seconds)
            retry_at = attempt.at + timedelta(seconds=delay)
            at = asyncio.get_running_loop().time() + delay
            self._next_retry = at if self._next_retry is None else min(self._next_retry, at)
        try:
            kept = await asyncio.to_thread(
                webhooks.record_attempt, self.engine, claimed, attempt, retry_at
            )
        except Exception as error:  # sent, but not recorded: it is sent again after the lease
            log.error("webhook delivery %s sent but not recorded: %r", claimed.id, error)
            return
        if self.counted is not None:
            self.counted(_outcome(attempt, retry_at))
        if not kept:
            log.warning("webhook delivery %s: its claim was lost meanwhile", claimed.id)
        elif not attempt.delivered:
            state = "dead" if retry_at is None else "will be retried"
            log.warning(
                "webhook delivery %s failed (attempt %d, %s): %s",
                claimed.id,
                attempts,
                state,
                attempt.error or attempt.status_code,
            )

    async def post(self, client: httpx.AsyncClient, claimed: webhooks.Claimed) -> webhooks.Attempt:
        """POST a delivery (following allowed 307/308 redirects); how it went."""
        started = datetime.now(UTC)
        try:
            async with asyncio.timeout(self.settings.timeout_seconds * (MAX_REDIRECTS + 1)):
                status = await self._post_following(client, claimed)
        except Refused as refused:
            return webhooks.Attempt(started, False, error=f"refused: {refused}")
        except TimeoutError:
            return webhooks.Attempt(started, False, error="timed out")
        except httpx.HTTPError as error:
            return webhooks.Attempt(started, False, error=f"{type(error).__name__}: {error}")
        if isinstance(status, str):  # a redirect that is not followed
            return webhooks.Attempt(started, False, error=status)
        ok = 200 <= status < 300
        why = None if ok else f"the receiver answered HTTP {status}"
        return webhooks.Attempt(started, ok, status_code=status, error=why)

    async def _post_following(
        self, client: httpx.AsyncClient, claimed: webhooks.Claimed
    ) -> int | str:
        url = claimed.url
        for _ in range(MAX_REDIRECTS + 1):
            target = self.policy.check(url)
            address = await self.policy.address(target)
            response = await self._post_once(client, target, address, claimed)
            status = response.status_code
            location = response.headers.get("location")
            if status not in (301, 302, 303, 307, 308) or location is None:
                return status
            if status not in (307, 308):
                return f"the receiver redirected with HTTP {status}: only 307 and 308 are followed"
            url = str(httpx.URL(url).join(location))
            try:
                self.policy.check(url)
            except Refused as refused:
                raise Refused(f"redirect to {url}: {refused}") from None
        return f"more than {MAX_REDIRECTS} redirects"

    async def _post_once(
        self,
        client: httpx.AsyncClient,
        target: Target,
        address: Address,
        claimed: webhooks.Claimed,
    ) -> httpx.Response:
        """One POST to the address that was checked; the name stays in Host and TLS."""
        shown = f"[{address}]" if address.version == 6 else str(address)
        url = httpx.URL(target.url).copy_with(host=shown.strip("[]"))
        default = 443 if target.scheme == "https" else 80
        host = f"[{target.host}]" if ":" in target.host else target.host
        headers = {
            "Host": host if target.port == default else f"{host}:{target.port}",
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            SIGNATURE_HEADER: signature(claimed.secret, int(time.time()), claimed.body),
            DELIVERY_HEADER: str(claimed.id),
        }
        extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
        request = client.build_request(
            "POST",
            url,
            content=claimed.body,
            headers=headers,
            extensions=extensions,
            timeout=self.settings.timeout_seconds,
        )
        response = await client.send(request)
        await response.aclose()
        return response
