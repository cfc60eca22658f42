"""A serving install has no training stack: what it refuses, and what keeps it out of memory."""

import ast
import io
import subprocess
import sys
import tomllib

import joblib
import pytest
from support import HIDE_TRAINING_STACK, REPO_ROOT, TRAINING_STACK

from model import DEVICE_FEATURES, ArtifactMetadata, dump_artifact

# Every package but training: the CLI reaches the stack only through training, lazily.
STACK_FREE_PACKAGES = ("graph", "auth", "model", "persistence", "failcast", "alembic")
TRAIN_EXTRA_HINT = "pip install 'failcast[train]'"

# Runs in a process where sklearn cannot be imported; prints the refusal's class and message.
LOAD_WITHOUT_SKLEARN = HIDE_TRAINING_STACK + (
    "from model import load_artifact, sha256_hex\n"
    "data = open(sys.argv[1], 'rb').read()\n"
    "try:\n"
    "    load_artifact(data, sha256_hex(data))\n"
    "except Exception as error:\n"
    "    print(type(error).__name__, error, sep=': ')\n"
)


def _load_without_sklearn(artifact: bytes, tmp_path) -> str:
    path = tmp_path / "model.joblib"
    path.write_bytes(artifact)
    done = subprocess.run(
        [sys.executable, "-c", LOAD_WITHOUT_SKLEARN, str(path)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _format_1(estimator) -> bytes:
    payload = {
        "format": "failcast-model/1",
        "estimator": estimator,
        "algorithm": "decision_tree",
        "feature_names": list(DEVICE_FEATURES),
        "threshold": 0.5,
        "params": {},
    }
    buffer = io.BytesIO()
    joblib.dump(payload, buffer)
    return buffer.getvalue()


def test_format_1_artifact_without_sklearn_is_refused_with_the_install_hint(
    demo_estimator, tmp_path
):
    refusal = _load_without_sklearn(_format_1(demo_estimator), tmp_path)
    assert refusal.startswith("ArtifactDependencyError: artifact needs sklearn")
    assert TRAIN_EXTRA_HINT in refusal


def test_uncompiled_artifact_without_sklearn_is_refused_at_load_time(tmp_path):
    from sklearn.ensemble import RandomForestClassifier

    from training import generate_synthetic

    fleet = generate_synthetic(devices=100, days=30, seed=5)
    forest = RandomForestClassifier(n_estimators=3, max_depth=2, random_state=0)
    forest.fit(fleet.X, fleet.y)
    artifact = dump_artifact(forest, ArtifactMetadata("random_forest", DEVICE_FEATURES, 0.5))
    refusal = _load_without_sklearn(artifact, tmp_path)
    assert refusal.startswith("ArtifactDependencyError: artifact needs sklearn")


def _imported_names(tree: ast.AST) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_only_training_imports_the_training_stack():
    offences = []
    for package in STACK_FREE_PACKAGES:
        for path in (REPO_ROOT / package).rglob("*.py"):
            names = _imported_names(ast.parse(path.read_text(encoding="utf-8")))
            bad = names & set(TRAINING_STACK)
            offences += [f"{path.relative_to(REPO_ROOT)} imports {name}" for name in sorted(bad)]
    assert offences == []


def _extras() -> tuple[list[str], dict[str, list[str]]]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return project["dependencies"], project["optional-dependencies"]


@pytest.mark.parametrize("distribution", ["scikit-learn", "matplotlib", "pandas"])
def test_the_training_stack_is_not_a_serving_dependency(distribution):
    dependencies, _ = _extras()
    assert not [d for d in dependencies if d.startswith(distribution)]


def test_dev_extra_brings_the_train_extra():
    _, extras = _extras()
    assert {d.split(">")[0] for d in extras["train"]} == {"scikit-learn", "matplotlib"}
    assert "failcast[train]" in extras["dev"]
