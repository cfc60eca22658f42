"""bench.ab's table: medians per side over its rounds, and the ratio to the first side."""

import argparse
from pathlib import Path

from bench.ab import Sample, Side, report


def _samples(base: str, mine: str) -> list[Sample]:
    return [
        Sample(base, 2000.0, 500.0, 380.0, 0.81, 14.0, 24.0),
        Sample(mine, 2300.0, 450.0, 340.0, 0.80, 13.0, 23.0),
        Sample(base, 2200.0, 480.0, 370.0, 0.79, 14.5, 25.0),
        Sample(mine, 2100.0, 470.0, 350.0, 0.78, 13.5, 22.0),
        Sample(base, 2100.0, 490.0, 375.0, 0.80, 14.2, 26.0),
        Sample(mine, 2400.0, 440.0, 330.0, 0.82, 12.5, 21.0),
    ]


def test_each_tree_gets_its_medians_and_its_ratio_to_the_first(tmp_path: Path) -> None:
    base, mine = tmp_path / "base", tmp_path / "mine"
    sides = [Side(str(base), base, {}), Side(str(mine), mine, {})]
    args = argparse.Namespace(explain=True, connections=32, seconds=10, rounds=3, batch=0)
    lines = report(sides, _samples(str(base), str(mine)), args).splitlines()
    assert lines[0].startswith("single-row `predict` + explanation on SQLite, 32 connections")
    assert "| requests/s | x first | server CPU us/request" in lines[2]
    base_row, mine_row = lines[-2], lines[-1]
    assert (
        base_row.startswith(f"| {base} | ?")
        and "| 2,100.00 [2,000.00-2,200.00] | 1.000x |" in base_row
    )
    assert "| 2,300.00 [2,100.00-2,400.00] | 1.095x |" in mine_row  # 2,300 / 2,100
    assert "| 340.00 [330.00-350.00] | 0.80 [0.78-0.82] |" in mine_row


def test_one_tree_against_itself_with_a_setting_is_told_apart_by_its_label(tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    label = f"{tree} FAILCAST_WRITER_PROCESS=true"
    sides = [Side(str(tree), tree, {}), Side(label, tree, {"FAILCAST_WRITER_PROCESS": "true"})]
    args = argparse.Namespace(explain=False, connections=4, seconds=20, rounds=3, batch=1000)
    lines = report(sides, _samples(str(tree), label), args).splitlines()
    assert lines[0].startswith("`predictBatch` x1,000 on SQLite, 4 connections, 20 s runs")
    assert "| predictions/s | x first | server CPU us/prediction" in lines[2]
    assert lines[-2].startswith(f"| {tree} | ?") and "| 1.000x |" in lines[-2]
    assert lines[-1].startswith(f"| {label} | ?") and "| 1.095x |" in lines[-1]
