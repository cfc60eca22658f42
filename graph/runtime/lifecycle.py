"""Switching the serving model through the API: activate a version, roll back, read the history.

A switch is decided here and made with the request's audit row, in the same transaction
(`RequestAudit.add_effect`): the client is told the version is active only once that commit
went through, and the audit trail and the activation history never disagree. Before that, the
version is loaded and verified (digest, features, golden set) by this process, so a version no
server could serve is refused up front instead of being activated and then refused by every
server; once committed, this process serves it at once, and the others hear of it through
PostgreSQL's NOTIFY or their next poll.
"""

import asyncio
from dataclasses import dataclass

from sqlalchemy.engine import Engine
from sqlmodel import Session

from graph.errors import ErrorCode, FailcastError, bad_input
from graph.runtime.audit import RequestAudit
from graph.runtime.models import ModelService
from graph.runtime.strings import has_control_characters
from graph.runtime.usecases import Page, read
from model import ModelError
from persistence import ModelVersion, ModelVersionRepository, NotFound, lifecycle

MAX_REASON = 1000


@dataclass(frozen=True)
class _Plan:
    target: ModelVersion
    current: int | None


def check_reason(reason: str | None) -> None:
    """BAD_USER_INPUT unless a reason is 1..MAX_REASON characters of one line of text."""
    if reason is None:
        return
    if not reason.strip() or len(reason) > MAX_REASON:
        raise bad_input(f"reason must be 1..{MAX_REASON} characters of text", "reason")
    if has_control_characters(reason):
        raise bad_input("reason must not contain control characters", "reason")


def _activation_plan(session: Session, version: str) -> _Plan:
    try:
        target = ModelVersionRepository(session).get(version)
    except NotFound:
        raise FailcastError(
            ErrorCode.NOT_FOUND, f"no model version {version!r}", field="version"
        ) from None
    return _Plan(target, lifecycle.active_id(session))


def _rollback_plan(session: Session) -> _Plan:
    previous = lifecycle.previous_id(session)
    if previous is None:
        message = "no version was active before the current one: there is nothing to roll back to"
        raise FailcastError(ErrorCode.CONFLICT, message)
    target = ModelVersionRepository(session).get_many([previous])[previous]
    return _Plan(target, lifecycle.active_id(session))


async def activate(
    engine: Engine, models: ModelService, audit: RequestAudit, version: str, reason: str | None
) -> ModelVersion:
    """Make `version` the active one (committed with the request); the version as it will be."""
    check_reason(reason)
    plan = await read(engine, lambda s: _activation_plan(s, version))
    return await _switch(models, audit, plan, reason)


async def rollback(
    engine: Engine, models: ModelService, audit: RequestAudit, reason: str | None
) -> ModelVersion:
    """Re-activate the version that was active before the current one."""
    check_reason(reason)
    plan = await read(engine, _rollback_plan)
    return await _switch(models, audit, plan, reason)


async def _switch(
    models: ModelService, audit: RequestAudit, plan: _Plan, reason: str | None
) -> ModelVersion:
    target = plan.target
    assert target.id is not None
    if target.id == plan.current:  # already active: nothing changes, nothing is recorded
        return target
    try:
        loaded = await asyncio.to_thread(models.prepare_sync, target.version)
    except ModelError as error:
        message = f"model version {target.version} cannot be served: {error}"
        raise FailcastError(ErrorCode.CONFLICT, message) from error
    except NotFound as error:  # deleted meanwhile
        raise FailcastError(ErrorCode.NOT_FOUND, str(error)) from error
    change = lifecycle.Activation(target.id, plan.current, "api", audit.subject, reason, audit.id)
    audit.add_effect(change, on_commit=lambda: models.swap_in(loaded))
    target.is_active = True
    target.activated_at = change.activated_at
    return target


async def activation_page(
    engine: Engine, first: int, before: int | None
) -> Page[lifecycle.ActivationEntry]:
    """One page of the activation history, newest first."""
    rows = await read(engine, lambda s: lifecycle.activation_page(s, first + 1, before))
    return Page(rows[:first], len(rows) > first)


async def activation_count(engine: Engine) -> int:
    """How many switches the history holds."""
    return await read(engine, lifecycle.activation_count)
