"""Config files read numbers the way YAML 1.2 (and every user) expects."""
from knowfree import yamlio


def test_yaml_reads_scientific_numbers_as_floats():
    d = yamlio.load("a: 5e-5\nb: 2.0e-5\nc: 3\nd: '5e-5'\ne: 1_000\n")
    assert d == {"a": 5e-5, "b": 2e-5, "c": 3, "d": "5e-5", "e": 1000}
    assert isinstance(d["a"], float) and isinstance(d["c"], int)
