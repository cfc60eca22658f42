"""The real ASGI app over HTTP, on a real migrated database, with real signed tokens."""

from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from faultproxy import FaultProxy
from sqlalchemy.engine import Engine
from starlette.testclient import TestClient

from auth import ALL_SCOPES, Scope, mint_token
from graph.app import create_app
from graph.settings import Settings
from persistence import ModelVersion, is_sqlite

TEST_SECRET = "e2e-secret-" + "x" * 40

TokenFactory = Callable[..., str]


@pytest.fixture
def settings(db_url: str) -> Settings:
    """Settings of a development server on the test database."""
    return Settings(database_url=db_url, jwt_secret=TEST_SECRET, model_refresh_seconds=0.2)


@pytest.fixture
def make_token(settings: Settings) -> TokenFactory:
    """Mint a token with the given scopes (every scope by default)."""

    def make(*scopes: Scope, subject: str = "tester") -> str:
        granted = scopes or tuple(ALL_SCOPES)
        return mint_token(settings.auth_config(), subject, granted, timedelta(minutes=10))

    return make


@pytest.fixture
def auth_headers(make_token: TokenFactory) -> dict[str, str]:
    """Headers carrying a token with every scope."""
    return {"Authorization": f"Bearer {make_token()}"}


@pytest.fixture
def client(
    settings: Settings, db_engine: Engine, active_model: ModelVersion
) -> Iterator[TestClient]:
    """A client of the running app (lifespan started) with the demo model active."""
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture
def pg_url(db_url: str) -> str:
    """The PostgreSQL test database (these faults have no meaning for a SQLite file)."""
    if is_sqlite(db_url):
        pytest.skip("database loss is simulated by a TCP proxy: SQLite is a local file")
    return db_url


@pytest.fixture
def proxy(pg_url: str) -> Iterator[FaultProxy]:
    """A fault proxy in front of the test database's PostgreSQL (not started)."""
    url = sa.make_url(pg_url)
    host = "127.0.0.1" if url.host in (None, "localhost") else url.host
    with FaultProxy(url.port or 5432, host) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def proxied_url(pg_url: str, proxy: FaultProxy) -> str:
    """The test database's URL, through the proxy."""
    url = sa.make_url(pg_url).set(host="127.0.0.1", port=proxy.port)
    return url.render_as_string(hide_password=False)
