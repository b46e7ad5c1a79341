"""What ``auto`` means and when bf16 is worth a warning: a CPU without bf16 hardware runs bf16
matmuls on a reference path (tens of times slower than fp32), so auto must not pick it there and
an explicit bf16 is warned about, naming the key the user set."""
import pytest

from knowfree import precision
from knowfree.errors import ConfigError


@pytest.mark.parametrize("hardware", [True, False])
def test_auto_is_bf16_only_where_the_cpu_has_it_and_explicit_bf16_is_warned_about_elsewhere(
        monkeypatch, hardware):
    monkeypatch.setattr(precision, "cpu_has_bf16", lambda: hardware)
    assert precision.resolve("auto", "cpu") == ("bf16" if hardware else "fp32")
    assert precision.slow_bf16("auto", "cpu", "train.precision") is None
    assert precision.slow_bf16("fp32", "cpu", "train.precision") is None
    note = precision.slow_bf16("bf16", "cpu", "train.precision")
    if hardware:
        assert note is None
    else:
        assert note.startswith("train.precision is bf16") and "auto" in note


def test_a_precision_outside_the_three_is_refused():
    with pytest.raises(ConfigError, match="one of"):
        precision.resolve("fp16", "cpu")
