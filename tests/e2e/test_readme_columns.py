"""The README's predictColumns example runs, as written, against a real server: a day of the
public dataset scored 1,000 rows a request, every row stored once, and a rerun replayed."""

import re
from pathlib import Path

import pytest
from servers import make_token, run_server
from support import REAL_DATA, REPO_ROOT, count_rows, needs_real_data

pd = pytest.importorskip("pandas", reason="pandas (the dev extra) runs the README's example")


def _snippet() -> str:
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Batches as columns: `predictColumns`", 1)[1].split("\n### ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


@needs_real_data
def test_the_readme_scores_a_day_column_by_column(db_url, db_engine, active_model, tmp_path: Path):
    code = _snippet()
    assert 'pd.read_csv("device_failure.csv.gz"' in code  # the file the test points at
    code = code.replace('"device_failure.csv.gz"', repr(str(REAL_DATA)))
    day = pd.read_csv(REAL_DATA, dtype={"date": str, "device": str})
    day = day[day["date"] == "2015-01-01"]
    assert len(day) > 1000  # two requests
    with run_server(db_url, {}, tmp_path / "uvicorn.log") as server:
        namespace: dict[str, object] = {}
        code = code.replace(
            'API, TOKEN = "http://127.0.0.1:8000", "..."',
            f'API, TOKEN = "{server.base}", "{make_token("fleet")}"',
        )
        exec(compile(code, "README.md", "exec"), namespace)  # our own README
        scored = namespace["scored"]
        assert isinstance(scored, pd.DataFrame)
        assert scored["deviceId"].tolist() == day["device"].tolist()
        assert scored["predictionId"].is_unique and count_rows(db_engine, "prediction") == len(day)
        assert set(scored["label"]) <= {"FAILURE", "NON_FAILURE"}
        score = namespace["score"]
        again = score(day, key="fleet/2015-01-01")  # type: ignore[operator]
        assert again["predictionId"].tolist() == scored["predictionId"].tolist()
        assert count_rows(db_engine, "prediction") == len(day)  # replayed, not stored twice
