"""The interval tables of the evaluation stage: ``value [low, high]`` cells, and differences
between systems with their intervals, from the long table notebook 07 saves."""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest

from flowllm_kit.evaluate import Estimate, rate_estimate
from flowllm_kit.stages import differences_table, intervals_table, table_with_intervals


def _intervals() -> pd.DataFrame:
    reports = {
        "a": {"stable %": rate_estimate([True] * 56 + [False] * 14),
              "wdist density": Estimate(1.0, 0.7, 1.3, n=70, method="bootstrap-normal")},
        "b": {"stable %": rate_estimate([True] * 48 + [False] * 32),
              "wdist density": Estimate(0.5, 0.1, 0.9, n=80, method="bootstrap-normal")},
        "c": {"stable %": rate_estimate([True] * 3, min_count=10)},  # not computable
    }  # fmt: skip

    class Saved:  # what intervals_table reads from a report
        def __init__(self, estimates: dict) -> None:
            self.estimates = estimates

    table = intervals_table({name: Saved(e) for name, e in reports.items()})
    return pd.read_csv(io.StringIO(table.to_csv(index=False)))  # as saved and read back


def test_table_with_intervals_formats_each_cell_and_marks_what_is_not_computable() -> None:
    table = table_with_intervals(_intervals(), spec=".3g")
    assert list(table.index) == ["a", "b", "c"]
    assert list(table.columns) == ["stable %", "wdist density"]
    assert table.loc["a", "stable %"] == "80 [69.2, 87.7]"
    assert table.loc["b", "wdist density"] == "0.5 [0.1, 0.9]"
    assert table.loc["c", "stable %"] == "n/c" and table.loc["c", "wdist density"] == "n/c"
    only = table_with_intervals(_intervals(), metrics=["wdist density"])
    assert list(only.columns) == ["wdist density"]


def test_differences_table_gives_newcombes_interval_for_rates() -> None:
    # Newcombe (1998), Table II, example (a): 56/70 - 48/80, method 10: 0.0524 to 0.3339.
    rows = differences_table(_intervals(), [("a", "b"), ("a", "c")], ["stable %", "wdist density"])
    stable = rows[(rows.second == "b") & (rows.metric == "stable %")].iloc[0]
    assert stable.difference == pytest.approx(20.0)
    assert (stable.low, stable.high) == pytest.approx((5.24, 33.39), abs=0.01)
    assert stable.method == "newcombe" and stable.excludes_zero
    distance = rows[(rows.second == "b") & (rows.metric == "wdist density")].iloc[0]
    assert (distance.low, distance.high) == pytest.approx((0.0, 1.0))
    assert distance.method == "mover" and not distance.excludes_zero  # touches 0
    versus_c = rows[rows.second == "c"]
    assert list(versus_c.metric) == ["stable %"]  # c has no wdist: no row
    assert math.isnan(versus_c.iloc[0].difference) and not versus_c.iloc[0].excludes_zero
