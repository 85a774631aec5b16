"""The paper's numbers are stored as docs/METHOD.md §10 gives them, and a run's metrics line up
beside them column by column."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from flowllm_kit.evaluate.paper import (
    CLOSENESS_COLUMNS,
    PAPER_NUM_SAMPLES,
    TABLE_COLUMNS,
    beside_paper,
    paper_table,
)


def test_paper_table_holds_reference_values() -> None:
    table = paper_table()
    assert list(table.columns) == [*TABLE_COLUMNS, *CLOSENESS_COLUMNS]
    assert len(table) == 5 and PAPER_NUM_SAMPLES == 10_000
    flowllm = table.loc["FlowLLM τ=0.7 P=0.9"]
    assert flowllm["stable %"] == 17.82 and flowllm["S.U.N. %"] == 4.92
    assert flowllm["closeness match %"] == 94.9 and flowllm["relaxation steps"] == 38
    assert table.loc["FlowMM", "structural validity %"] == 96.85
    assert table.loc["CrystalLLM 70B", "wdist density"] == 0.81
    # "–" in the paper is missing, not zero; closeness exists for FlowMM and FlowLLM only.
    assert math.isnan(table.loc["CDVAE", "S.U.N. %"])
    assert table["closeness RMSD"].notna().sum() == 2


def test_rates_are_percentages_and_distances_positive() -> None:
    table = paper_table()
    rates = table[[c for c in table.columns if c.endswith("%")]]
    assert ((rates.stack() >= 0) & (rates.stack() <= 100)).all()
    assert (table[["wdist density", "wdist N_el"]] > 0).all().all()


@pytest.mark.parametrize("as_frame", [False, True])
def test_beside_paper_puts_our_rows_first(as_frame: bool) -> None:
    metrics = {
        "flowllm": {"structural validity %": 99.0, "stable %": math.nan, "unique %": 100.0},
        "real": {"structural validity %": 100.0, "coverage recall %": 50.0},
    }
    given = pd.DataFrame.from_dict(metrics, orient="index") if as_frame else metrics
    table = beside_paper(given)
    assert table.index.names == ["source", "model"]
    assert list(table.index[:2]) == [("this run", "flowllm"), ("this run", "real")]
    assert len(table) == 2 + 5
    assert table.loc[("this run", "flowllm"), "structural validity %"] == 99.0
    assert math.isnan(table.loc[("this run", "real"), "stable %"])  # not evaluated: NaN, not 0
    assert "unique %" not in table.columns
    assert table.loc[("paper", "DiffCSP"), "S.U.N. %"] == 3.34


def test_beside_paper_columns_and_label() -> None:
    table = beside_paper({"x": {"stable %": 5.0}}, columns=["stable %"], label="demo")
    assert list(table.columns) == ["stable %"]
    assert table.loc[("demo", "x"), "stable %"] == 5.0
    assert table.loc[("paper", "FlowMM"), "stable %"] == 4.65
