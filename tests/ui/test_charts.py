"""The dashboard's pure figure helpers: what reaches plotly."""

from __future__ import annotations

import math

import numpy as np

from lepton.ui import charts


def test_a_long_curve_is_thinned_to_the_limit_keeping_its_ends_and_spikes():
    x = list(range(50_000))
    y = list(np.exp(-np.arange(50_000) / 5000.0))
    y[31_337] = 9.0  # one loss spike among fifty thousand steps
    y[40_000] = float("nan")  # and one diverged step
    tx, ty = charts.thin(x, y)
    assert len(tx) <= charts.MAX_POINTS and tx == sorted(tx)
    assert tx[0] == 0 and tx[-1] == 49_999 and 31_337 in tx and any(math.isnan(v) for v in ty)
    assert all(y[int(a)] == b or (math.isnan(b) and math.isnan(y[int(a)])) for a, b in zip(tx, ty))


def test_short_curves_pass_through_and_figures_never_carry_more_than_the_limit():
    assert charts.thin([3, 1, 2], [0.3, 0.1, 0.2]) == ([3, 1, 2], [0.3, 0.1, 0.2])
    fig = charts.curve({"loss": (list(range(10_000)), [1 / (i + 1) for i in range(10_000)]),
                        "val": ([1, 2], [0.5, 0.6])}, "Loss")
    assert [len(t.x) for t in fig.data] == [charts.MAX_POINTS, 2]


def test_compare_bars_puts_the_reference_on_top_and_keeps_scores_below_zero_in_view():
    fig = charts.compare_bars({"fused (every modality)": 0.9, "text alone": 0.6, "image alone": -0.2}, None, "R²")
    (bars,) = fig.data
    assert list(bars.y)[::-1] == ["fused (every modality)", "text alone", "image alone"]  # first listed, drawn on top
    assert list(bars.marker.color)[-1] == charts.ACCENT and len(set(bars.marker.color)) == 2
    lo, hi = fig.layout.xaxis.range
    assert lo < -0.2 and hi == 1.0
    share = charts.compare_bars({"every input given": 0.7, "without text": 0.4}, None, "probability", share=True)
    assert share.layout.xaxis.tickformat == ".0%" and list(share.data[0].text) == ["40.0%", "70.0%"]
