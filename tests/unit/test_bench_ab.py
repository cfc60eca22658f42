"""bench.ab's table: medians per tree over its rounds, and the ratio to the first tree."""

import argparse
from pathlib import Path

from bench.ab import Sample, report


def test_each_tree_gets_its_medians_and_its_ratio_to_the_first(tmp_path: Path) -> None:
    base, mine = tmp_path / "base", tmp_path / "mine"
    samples = [
        Sample(str(base), 2000.0, 500.0, 380.0, 0.81, 14.0, 24.0),
        Sample(str(mine), 2300.0, 450.0, 340.0, 0.80, 13.0, 23.0),
        Sample(str(base), 2200.0, 480.0, 370.0, 0.79, 14.5, 25.0),
        Sample(str(mine), 2100.0, 470.0, 350.0, 0.78, 13.5, 22.0),
        Sample(str(base), 2100.0, 490.0, 375.0, 0.80, 14.2, 26.0),
        Sample(str(mine), 2400.0, 440.0, 330.0, 0.82, 12.5, 21.0),
    ]
    args = argparse.Namespace(explain=True, connections=32, seconds=10, rounds=3)
    lines = report([base, mine], samples, args).splitlines()
    assert lines[0].startswith("single-row `predict` + explanation on SQLite, 32 connections")
    base_row, mine_row = lines[-2], lines[-1]
    assert (
        base_row.startswith(f"| {base} | ?")
        and "| 2,100.00 [2,000.00-2,200.00] | 1.000x |" in base_row
    )
    assert "| 2,300.00 [2,100.00-2,400.00] | 1.095x |" in mine_row  # 2,300 / 2,100
    assert "| 340.00 [330.00-350.00] | 0.80 [0.78-0.82] |" in mine_row
