"""`failcast export predictions` against a real database: the endpoint's bytes, exit codes."""

import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlencode

import pytest
from starlette.testclient import TestClient
from support import REPO_ROOT, register_version, seed_predictions

from auth import Scope, mint_token
from graph.app import create_app
from graph.runtime.export import HEADER
from graph.settings import Settings

SECRET = "cli-export-" + "s" * 40
T0 = datetime(2025, 11, 1, tzinfo=UTC)
DEVICES = ["a,b", 'say "hi"', "line\nbreak", "é-ü-日本", None, "pump-1", "pump-2", "valve-1"]


def _cli(db_url: str, *args: str, cwd: Path = REPO_ROOT) -> subprocess.CompletedProcess[bytes]:
    environment = {"PATH": "/usr/bin:/bin", "FAILCAST_DATABASE_URL": db_url}
    return subprocess.run(
        [sys.executable, "-m", "failcast", "export", "predictions", *args],
        env=environment,
        cwd=cwd,
        capture_output=True,
        timeout=120,
    )


@pytest.fixture
def seeded(db_engine, active_model, demo_artifact) -> None:
    """Predictions of two versions and two requests, with awkward device ids."""
    other = register_version(db_engine, demo_artifact, "test-2", activate=False)
    for n, version in enumerate([active_model.id, other.id]):
        rows = [(device, T0 + timedelta(hours=i, microseconds=i * 3), i / 10)
                for i, device in enumerate(DEVICES)]  # fmt: skip
        seed_predictions(db_engine, version, rows, "ops", T0 + timedelta(days=1 + n))


@pytest.fixture
def client(db_url: str, db_engine) -> Iterator[TestClient]:
    """The app on the same database, to compare the CLI with the endpoint."""
    settings = Settings(database_url=db_url, jwt_secret=SECRET, model_refresh_seconds=0.2)
    with TestClient(create_app(settings)) as test_client:
        token = mint_token(settings.auth_config(), "cli", {Scope.PREDICTIONS_READ},
                           timedelta(minutes=5))  # fmt: skip
        test_client.headers["Authorization"] = f"Bearer {token}"
        yield test_client


# (command-line options, the endpoint's query parameters for the same filter)
SAME_FILTERS = [
    ([], {}),
    (["--device-prefix", "pump"], {"deviceIdPrefix": "pump"}),
    (["--model-version", "test-2"], {"modelVersion": "test-2"}),
    (["--observed-from", "2025-11-01T03:00:00+01:00", "--observed-to", "2025-11-01T05:00:00Z"],
     {"observedFrom": "2025-11-01T03:00:00+01:00", "observedTo": "2025-11-01T05:00:00Z"}),
    (["--created-from", "2025-11-03T00:00:00Z", "--created-to", "2026-01-01T00:00:00Z"],
     {"createdFrom": "2025-11-03T00:00:00Z", "createdTo": "2026-01-01T00:00:00Z"}),
    (["--device-prefix", "nobody"], {"deviceIdPrefix": "nobody"}),
]  # fmt: skip


@pytest.mark.parametrize(("options", "parameters"), SAME_FILTERS, ids=range(len(SAME_FILTERS)))
def test_the_cli_writes_the_endpoints_bytes(db_url, seeded, client, tmp_path, options, parameters):
    answer = client.get(f"/exports/predictions.csv?{urlencode(parameters)}")
    assert answer.status_code == 200, answer.text
    target = tmp_path / "predictions.csv"
    done = _cli(db_url, *options, "--output", str(target))
    assert done.returncode == 0, done.stderr
    assert target.read_bytes() == answer.content
    to_stdout = _cli(db_url, *options)
    assert to_stdout.returncode == 0 and to_stdout.stdout == answer.content
    assert list(tmp_path.iterdir()) == [target]  # no partial file left beside it


def test_an_empty_result_is_just_the_header(db_url, db_engine):
    done = _cli(db_url)
    assert (done.returncode, done.stdout) == (0, HEADER)


BAD = [
    (["--observed-from", "2025-11-01T00:00:00"], "--observed-from needs a UTC offset"),
    (["--created-to", "tomorrow"], "--created-to is not an ISO 8601 time"),
    (["--device-prefix", ""], "--device-prefix must be 1..64 characters"),
    (["--model-version", "v\x1b[31m"], "--model-version must not contain control characters"),
]


@pytest.mark.parametrize(("options", "message"), BAD, ids=[o[0] for o, _ in BAD])
def test_bad_options_exit_2_with_one_line(db_url, db_engine, tmp_path, options, message):
    target = tmp_path / "out.csv"
    done = _cli(db_url, *options, "--output", str(target))
    assert done.returncode == 2
    [line] = done.stderr.decode().splitlines()
    assert line.startswith(f"failcast: {message}"), line
    assert done.stdout == b"" and not target.exists()


def test_an_unreachable_database_exits_1_and_leaves_no_file(tmp_path):
    target = tmp_path / "out.csv"
    done = _cli(f"sqlite:///{tmp_path}/missing/dir/x.db", "--output", str(target))
    assert done.returncode == 1
    assert "database" in done.stderr.decode() and str(target) in done.stderr.decode()
    assert list(tmp_path.iterdir()) == []
