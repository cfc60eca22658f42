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


# Scores rows with an artifact in a process where sklearn cannot be imported; prints the
# probabilities, the explanations' scores and whether sklearn got imported, as JSON.
SCORE_WITHOUT_SKLEARN = HIDE_TRAINING_STACK + (
    "import json, numpy as np\n"
    "from model import load_artifact, sha256_hex\n"
    "data = open(sys.argv[1], 'rb').read()\n"
    "predictor = load_artifact(data, sha256_hex(data))\n"
    "rows = np.load(sys.argv[2])\n"
    "probabilities, explanations = predictor.explain(rows)\n"
    "print(json.dumps({'compiled': predictor.compiled, 'probabilities': probabilities.tolist(),\n"
    "    'one': predictor.predict_proba(rows[:1]).tolist(),\n"
    "    'scores': [e['score'] for e in explanations], 'sklearn': sys.modules.get('sklearn') is not None}))\n"
)


def _compiled_shape(shape: str, X, y, devices):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import GroupKFold

    from training.estimators import build_estimator

    boosting = HistGradientBoostingClassifier(max_iter=15, early_stopping=False, random_state=0)
    if shape == "gradient_boosting":
        return boosting.fit(X, y)
    from support import HISTORY_FEATURES

    signed = build_estimator("logistic_regression", 0, features=HISTORY_FEATURES)  # deltas < 0
    inner = boosting if shape.endswith("boosting") else signed
    folds = list(GroupKFold(n_splits=3).split(X, y, devices))
    method = "sigmoid" if shape.startswith("sigmoid") else "isotonic"
    return CalibratedClassifierCV(inner, method=method, cv=folds, ensemble=False).fit(X, y)


@pytest.mark.parametrize(
    "shape", ["gradient_boosting", "sigmoid_logistic_regression", "isotonic_boosting"]
)
def test_new_compiled_shapes_serve_without_sklearn(shape, tmp_path):
    import json

    import numpy as np
    from support import HISTORY_FEATURES, history_features

    from training import generate_synthetic

    X, y, devices = history_features(generate_synthetic(devices=150, days=40, seed=5))
    estimator = _compiled_shape(shape, X, y, devices)
    artifact = dump_artifact(estimator, ArtifactMetadata(shape, HISTORY_FEATURES, 0.5))
    (tmp_path / "model.joblib").write_bytes(artifact)
    rows = X[::7]
    np.save(tmp_path / "rows.npy", rows)
    paths = [str(tmp_path / "model.joblib"), str(tmp_path / "rows.npy")]
    done = subprocess.run(
        [sys.executable, "-c", SCORE_WITHOUT_SKLEARN, *paths],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["compiled"] and not answer["sklearn"]
    expected = estimator.predict_proba(rows)[:, 1]
    assert np.abs(np.array(answer["probabilities"]) - expected).max() <= 1e-9
    assert abs(answer["one"][0] - expected[0]) <= 1e-9
    # the explanations' scores: the (inner) model's decision function
    calibrated = shape != "gradient_boosting"
    scorer = estimator.calibrated_classifiers_[0].estimator if calibrated else estimator
    assert np.abs(np.array(answer["scores"]) - scorer.decision_function(rows)).max() <= 1e-9


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
