"""The README's Analysts snippets run, as written, against a real server with seeded history."""

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from servers import make_token, run_server
from support import REPO_ROOT, seed_predictions

pd = pytest.importorskip("pandas", reason="pandas (the dev extra) runs the analysts' snippets")


def _snippets() -> list[str]:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Analysts", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_every_analyst_snippet_runs_and_answers(db_url, db_engine, active_model, tmp_path: Path):
    start = datetime(2026, 11, 2, tzinfo=UTC)
    rows = [("S1F01085" if i % 3 else f"D-{i % 5}", start + timedelta(hours=i), (i % 10) / 10)
            for i in range(60)]  # fmt: skip
    seed_predictions(db_engine, active_model.id, rows, subject="station")
    snippets = _snippets()
    assert len(snippets) == 6, "the Analysts section changed: update this test"
    with run_server(db_url, {}, tmp_path / "uvicorn.log") as server:
        namespace: dict[str, object] = {}
        helper = snippets[0].replace(
            'API, TOKEN = "http://127.0.0.1:8000", "..."',
            f'API, TOKEN = "{server.base}", "{make_token("analyst")}"',
        )
        for code in [helper, *snippets[1:]]:
            exec(compile(code, "README.md", "exec"), namespace)  # our own README
    assert namespace["daily"].to_numpy().sum() == sum(1 for r in rows if r[2] >= 0.5)
    assert namespace["work_list"]["rank"].iloc[0] == 1
    assert len(namespace["risk"]) == sum(1 for r in rows if r[0] == "S1F01085")
    assert len(namespace["frame"]) == sum(1 for r in rows if r[2] >= 0.5)  # the CSV's FAILUREs
