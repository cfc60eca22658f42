"""The command line against a real database: audit seal/verify and token minting."""

import subprocess
import sys

import sqlalchemy as sa
from support import REPO_ROOT
from test_audit_seals import _event, _param

from persistence import RequestRecord, write_records


def _cli(db_url: str, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {"PATH": "/usr/bin:/bin", "FAILCAST_DATABASE_URL": db_url, **env}
    return subprocess.run(
        [sys.executable, "-m", "failcast", *args],
        env=environment,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_audit_verify_exits_1_and_names_an_altered_row(db_url, db_engine):
    events = [_event() for _ in range(5)]
    write_records(db_engine, [RequestRecord(audit=e) for e in events])
    sealed = _cli(db_url, "audit", "seal", "--lag", "0")
    assert sealed.returncode == 0 and "sealed 5" in sealed.stdout
    assert _cli(db_url, "audit", "verify").returncode == 0
    with db_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE audit_event SET outcome = 'ok', http_status = 201 WHERE id = :i"),
            {"i": _param(db_engine, events[1]["id"])},
        )
    verified = _cli(db_url, "audit", "verify")
    assert verified.returncode == 1
    assert f"altered: audit event {events[1]['id']}" in verified.stdout


def test_token_is_refused_without_a_configured_secret(tmp_path):
    done = _cli(f"sqlite:///{tmp_path}/x.db", "token", "--subject", "x", "--scope", "predict")
    assert done.returncode == 2
    assert "FAILCAST_JWT_SECRET" in done.stderr


def test_token_with_an_unknown_scope_is_refused(tmp_path):
    done = _cli(
        f"sqlite:///{tmp_path}/x.db",
        "token",
        "--subject",
        "x",
        "--scope",
        "predict:all",
        FAILCAST_JWT_SECRET="s" * 48,
    )
    assert done.returncode == 2
