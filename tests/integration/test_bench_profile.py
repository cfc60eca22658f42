"""`python -m bench.profile_predict` times the product's own functions: each part it times is run
here against a real database, so a change of the product's signatures cannot leave the profile
timing an error (its default run once failed on the use case's `layout` argument)."""

import asyncio
from datetime import timedelta

import pytest
import sqlalchemy as sa
from support import count_rows

from auth import Scope, mint_token
from bench.profile_predict import BATCH, Profile, profile_settings
from graph.app import build_runtime

SECRET = "bench-profile-" + "s" * 40


@pytest.fixture
def profile(db_url, db_engine, active_model):
    settings = profile_settings(db_url, SECRET)
    services = build_runtime(settings)
    services.models.refresh_sync()
    token = mint_token(settings.auth_config(), "profile", {Scope.PREDICT}, timedelta(minutes=5))
    yield Profile(services, token, budget_s=0.002)
    services.engine.dispose()


def test_the_default_profiles_parts_run_and_store_what_they_time(profile, db_engine):
    before = count_rows(db_engine, "prediction")
    timings = profile.sync_parts() + profile.explain_parts()
    assert all(timing.micros > 0 for timing in timings)
    # The commit parts stored their rows: one, 32 of one, and BATCH, each at least once.
    assert count_rows(db_engine, "prediction") >= before + 1 + 32 + BATCH


def test_the_profiles_graphql_parts_run(profile):
    timings = asyncio.run(profile.async_parts(None))
    names = {timing.name for timing in timings}
    assert "compiled plan: predict, prepared context" in names
    assert all(timing.micros > 0 for timing in timings)


def test_the_concurrent_profile_sends_its_requests_through_the_app_and_stores_them(
    profile, db_engine
):
    before = count_rows(db_engine, "prediction")
    timings = asyncio.run(profile.concurrent_parts(requests=64, at_once=8))
    cpu = {timing.name: timing.micros for timing in timings}
    head = "predict, 8 at a time through the app: CPU per request"
    assert cpu[head] > 0 and cpu[f"{head}, event loop's thread"] > 0
    # the writer processes are a part of their own (their CPU, read from /proc, may be 0 ticks)
    assert f"{head}, the group commits' writer processes" in cpu
    assert cpu["{ __typename }, 8 at a time through the app: CPU per request"] > 0
    assert cpu["predict + explanation, 8 at a time through the app: CPU per request"] > 0
    # every predict answered 200 (asgi_call checks) and stored: the warm-up's 16, then 64,
    # with and without explanation
    assert count_rows(db_engine, "prediction") == before + 2 * (16 + 64)
    with db_engine.connect() as connection:
        explained = "SELECT count(*) FROM prediction WHERE explanation IS NOT NULL"
        assert connection.execute(sa.text(explained)).scalar_one() >= 16 + 64
