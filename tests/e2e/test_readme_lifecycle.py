"""The README's Model lifecycle snippets (the activation history, Drift, Outcomes and live
performance, Evaluation as a gate) run, as written, against a real server."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from servers import make_token, run_server
from support import REPO_ROOT, seed_predictions

SUBSECTIONS = ("### Drift", "### Outcomes and live performance", "### Evaluation as a gate")


def _snippets() -> tuple[str, list[str]]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    analysts = readme.split("## Analysts", 1)[1].split("\n## ", 1)[0]
    helper = re.findall(r"```python\n(.*?)```", analysts, re.S)[0]
    lifecycle = readme.split("\n## Model lifecycle", 1)[1].split("\n## ", 1)[0]
    # The section's opening part (promote, roll back, history), then its subsections.
    found = re.findall(r"```python\n(.*?)```", lifecycle.split("\n### ", 1)[0], re.S)
    for title in SUBSECTIONS:
        text = lifecycle.split(f"\n{title}\n", 1)[1].split("\n### ", 1)[0]
        found += re.findall(r"```python\n(.*?)```", text, re.S)
    return helper, found


def test_every_lifecycle_snippet_runs_and_answers(db_url, db_engine, active_model, tmp_path: Path):
    start = datetime(2026, 11, 2, tzinfo=UTC)
    rows = [("S1F01085", start + timedelta(hours=i), (i % 10) / 10) for i in range(48)]
    seed_predictions(db_engine, active_model.id, rows, subject="station")
    helper, snippets = _snippets()
    assert len(snippets) == 5, "the Model lifecycle section changed: update this test"
    with run_server(db_url, {}, tmp_path / "uvicorn.log") as server:
        namespace: dict[str, object] = {}
        helper = helper.replace(
            'API, TOKEN = "http://127.0.0.1:8000", "..."',
            f'API, TOKEN = "{server.base}", "{make_token("analyst")}"',
        )
        for code in [helper, *snippets]:
            exec(compile(code, "README.md", "exec"), namespace)  # our own README
    history = namespace["history"]
    assert isinstance(history, list) and history[0]["toVersion"] == active_model.version
    report = namespace["report"]
    assert isinstance(report, dict) and report["sampleSize"] == 48
    assert report["status"] == "INSUFFICIENT_DATA" and namespace["drifting"] == []
    assert namespace["done"] == {
        "deviceId": "S1F01085",
        "day": "2026-11-03",
        "labeledPredictions": 24,
    }
    live = namespace["live"]
    assert isinstance(live, dict) and (live["labeled"], live["unlabeled"]) == (24, 24)
    assert live["degraded"] is None and namespace["runs"] == []
