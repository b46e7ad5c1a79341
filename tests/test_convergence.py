"""The convergence rule behind every runs table: best dev F1 of the last quarter of epochs
against the best before it."""
import math

import pandas as pd
import pytest

from knowfree import results


def history(dev_by_epoch: dict[int, float], epochs: int) -> pd.DataFrame:
    return pd.DataFrame({"epoch": range(1, epochs + 1),
                         "dev_f1": [dev_by_epoch.get(e, float("nan")) for e in range(1, epochs + 1)]})


def test_a_curve_that_peaked_early_has_converged():
    out = results.convergence(history({10: 0.50, 20: 0.56, 30: 0.55, 40: 0.555}, 40))
    assert out == {"dev_rise_last_quarter": -0.5, "converged": True}


def test_a_curve_still_climbing_in_the_last_quarter_has_not():
    out = results.convergence(history({10: 0.40, 20: 0.48, 30: 0.52, 40: 0.56}, 40))
    assert out["dev_rise_last_quarter"] == pytest.approx(4.0) and out["converged"] is False


def test_the_last_quarter_starts_after_last_minus_a_quarter():
    # 60 epochs: the last quarter is 46-60, so a best at 45 belongs to the earlier part
    dev = {45: 0.60, 46: 0.603, 60: 0.59}
    out = results.convergence(history(dev, 60))
    assert out["dev_rise_last_quarter"] == pytest.approx(0.3) and out["converged"] is True
    out = results.convergence(history(dev, 60), tolerance=0.2)
    assert out["converged"] is False


def test_rise_is_measured_against_the_best_not_the_last_earlier_epoch():
    out = results.convergence(history({4: 0.30, 8: 0.62, 28: 0.50, 32: 0.60, 40: 0.61}, 40))
    assert out["dev_rise_last_quarter"] == pytest.approx(-1.0) and out["converged"]


def test_without_scored_epochs_on_both_sides_nothing_is_claimed():
    for dev in ({40: 0.5}, {10: 0.5}, {}):
        out = results.convergence(history(dev, 40))
        assert math.isnan(out["dev_rise_last_quarter"]) and out["converged"] is None
