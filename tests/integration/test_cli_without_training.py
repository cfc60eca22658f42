"""The command line of a serving install (no train extra): train and evaluate say what to
install; every other command works."""

import subprocess
import sys

import pytest
from support import HIDE_TRAINING_STACK, REPO_ROOT

NEEDS_TRAIN_EXTRA = "failcast: training needs the train extra: pip install 'failcast[train]'\n"
SECRET = "cli-secret-" + "s" * 40
# The CLI's entry point, run where sklearn, matplotlib and pandas cannot be imported.
CLI_WITHOUT_TRAINING = HIDE_TRAINING_STACK + "from failcast.cli import main\nsys.exit(main())\n"


def _cli(db_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"PATH": "/usr/bin:/bin", "FAILCAST_DATABASE_URL": db_url, "FAILCAST_JWT_SECRET": SECRET}
    return subprocess.run(
        [sys.executable, "-c", CLI_WITHOUT_TRAINING, *args],
        env=env,
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "command",
    [["train", "--activate"], ["evaluate", "test-1", "--data", "fleet.csv"]],
    ids=["train", "evaluate"],
)
def test_training_commands_exit_2_naming_the_train_extra(tmp_path, command):
    done = _cli(f"sqlite:///{tmp_path}/x.db", *command)
    assert done.returncode == 2
    assert done.stderr == NEEDS_TRAIN_EXTRA


def test_train_if_no_active_with_an_active_version_needs_no_training_stack(
    db_url, db_engine, active_model
):
    done = _cli(db_url, "train", "--activate", "--if-no-active")
    assert done.returncode == 0, done.stderr
    assert f"{active_model.version} is active; nothing to train" in done.stdout


def test_db_upgrade_works_without_the_training_stack(tmp_path):
    done = _cli(f"sqlite:///{tmp_path}/fresh.db", "db", "upgrade")
    assert done.returncode == 0, done.stderr
    assert "database at head" in done.stdout


@pytest.mark.parametrize(
    "command",
    [
        ["models", "list"],
        ["models", "activate", "test-1"],
        ["token", "--subject", "ops", "--scope", "predict"],
        ["audit", "seal", "--lag", "0"],
        ["audit", "verify"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_other_commands_work_without_the_training_stack(db_url, db_engine, active_model, command):
    done = _cli(db_url, *command)
    assert done.returncode == 0, done.stderr
