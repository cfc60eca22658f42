"""The command line against a real database: audit seal/verify and token minting."""

import json
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


def test_models_activate_rollback_and_history_write_the_same_history_as_the_api(
    db_url, db_engine, active_model, demo_estimator
):
    from support import register_version

    from model import DEVICE_FEATURES, ArtifactMetadata, dump_artifact

    metadata = ArtifactMetadata("decision_tree", DEVICE_FEATURES, 0.6, {"max_depth": 4})
    register_version(db_engine, dump_artifact(demo_estimator, metadata), "v2", activate=False)
    done = _cli(db_url, "models", "activate", "v2", "--reason", "canary passed")
    assert (done.returncode, done.stdout) == (0, "v2 is active\n"), done.stderr
    again = _cli(db_url, "models", "activate", "v2")
    assert again.stdout == "v2 was already active\n"
    back = _cli(db_url, "models", "rollback", "--reason", "pager went off")
    assert (back.returncode, back.stdout) == (0, f"{active_model.version} is active\n")
    history = _cli(db_url, "models", "history", "--limit", "2")
    lines = history.stdout.splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(f"v2 -> {active_model.version} (cli)  pager went off")
    assert lines[1].endswith(f"{active_model.version} -> v2 (cli)  canary passed")


def test_models_activate_refuses_a_version_that_cannot_serve(db_url, db_engine, active_model):
    with db_engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE model_version SET artifact_sha256 = :s WHERE version = :v"),
            {"s": "0" * 64, "v": active_model.version},
        )
        connection.execute(sa.text("UPDATE model_version SET is_active = false"))
    done = _cli(db_url, "models", "activate", active_model.version)
    assert done.returncode == 1
    assert "cannot be served: artifact bytes do not match" in done.stderr


def test_models_rollback_without_a_previous_version_fails_clearly(db_url, db_engine, active_model):
    done = _cli(db_url, "models", "rollback")
    assert done.returncode == 1 and "nothing to roll back to" in done.stderr


def test_train_with_a_horizon_registers_it_and_models_list_shows_it(db_url, db_engine, tmp_path):
    reports = str(tmp_path / "reports")
    done = _cli(db_url, "train", "--horizon-days", "7", "--algorithm", "logistic_regression",
                "--report-dir", reports)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "(logistic_regression) registered (not active)" in done.stdout
    listed = _cli(db_url, "models", "list")
    assert listed.returncode == 0 and "horizon=7d" in listed.stdout
    with db_engine.connect() as connection:
        stored = connection.execute(sa.text("SELECT horizon_days FROM model_version")).scalar_one()
    assert stored == 7


def test_train_without_cross_validation_registers_the_plain_pipeline(db_url, db_engine, tmp_path):
    # --cv-folds 0: nothing chosen, nothing calibrated, nothing refitted (the original pipeline)
    done = _cli(db_url, "train", "--cv-folds", "0", "--algorithm", "logistic_regression",
                "--feature-set", "counters", "--report-dir", str(tmp_path / "reports"))  # fmt: skip
    assert done.returncode == 0, done.stderr
    with db_engine.connect() as connection:
        params, metrics, lineage = connection.execute(
            sa.text("SELECT params, metrics, lineage FROM model_version")
        ).one()
    params, metrics, lineage = (v if isinstance(v, dict) else json.loads(v)
                                for v in (params, metrics, lineage))  # fmt: skip
    assert params["calibration"] is None and params["transform"] == "log1p"
    assert metrics["cross_validation"] is None and metrics["fitted_on"]["devices"] == "training"
    assert lineage["options"]["cv_folds"] == 0 and not lineage["refit_on_all_devices"]
    refused = _cli(db_url, "train", "--cv-folds", "1", "--report-dir", str(tmp_path))
    assert refused.returncode == 2 and "cv_folds must be 0 (skip) or >= 2" in refused.stderr


def test_train_refuses_a_horizon_outside_a_year(db_url, db_engine, tmp_path):
    done = _cli(db_url, "train", "--horizon-days", "0", "--report-dir", str(tmp_path))
    assert done.returncode == 2 and "horizon_days must be between 1 and 365" in done.stderr
