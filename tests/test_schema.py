"""Label schema invariants: targets first, extension weights by rule, lossless JSON round trip."""
import pytest

from knowfree.data.sample import Sample, Span
from knowfree.data.schema import LabelSchema, extension_weight
from knowfree.errors import InputError


def _samples(n=10):
    out = []
    for i in range(n):
        spans = [Span(0, 2, "PER.NAM"), Span(0, 1, "ext.pos.NOUN"), Span(1, 2, "ext.pos.NOUN")]
        if i % 2:
            spans.append(Span(2, 4, "ext.ent.LOC"))
        out.append(Sample(list("张三在北京"), spans, id=f"s{i}"))
    return out


def test_targets_come_first_and_counts_are_exact():
    schema = LabelSchema.from_samples(_samples(), targets=["LOC.NAM", "PER.NAM"])
    assert schema.names == ["LOC.NAM", "PER.NAM", "ext.ent.LOC", "ext.pos.NOUN"]
    assert schema.targets == ["LOC.NAM", "PER.NAM"] and schema.n_targets == 2
    counts = {l.name: l.count for l in schema.labels}
    assert counts == {"LOC.NAM": 0, "PER.NAM": 10, "ext.ent.LOC": 5, "ext.pos.NOUN": 20}


def test_count_rule_matches_authors_formula():
    schema = LabelSchema.from_samples(_samples(), targets=["LOC.NAM", "PER.NAM"])
    w = dict(zip(schema.names, schema.weights()))
    assert w["PER.NAM"] == 1.0 and w["LOC.NAM"] == 1.0
    assert w["ext.pos.NOUN"] == pytest.approx(min(10 / 20, 2 / 4))
    assert w["ext.ent.LOC"] == pytest.approx(min(10 / 5, 2 / 4))


def test_flat_and_zero_below_rules():
    assert extension_weight(100, 4, 10, 250, rule="flat") == 0.13
    assert extension_weight(100, 4, 10, 250, rule="zero_below") == 0.0
    assert extension_weight(100, 4, 10, 1000, rule="zero_below") == pytest.approx(0.1)
    with pytest.raises(InputError):
        extension_weight(1, 1, 1, 1, rule="nonsense")


def test_json_round_trip(tmp_path):
    schema = LabelSchema.from_samples(_samples(), rule="flat", value=0.2)
    schema.save(tmp_path / "schema.json")
    again = LabelSchema.load(tmp_path / "schema.json")
    assert again.to_dict() == schema.to_dict()
    assert again.index("ext.ent.LOC") == schema.index("ext.ent.LOC")


def test_bad_inputs_are_named(tmp_path):
    with pytest.raises(InputError, match="outside the given inventory"):
        LabelSchema.from_samples(_samples(), targets=["LOC.NAM"])
    schema = LabelSchema.from_samples(_samples())
    with pytest.raises(InputError, match="not in the label schema"):
        schema.index("GPE.NAM")
    p = tmp_path / "bad.json"
    p.write_text('{"labels": [{"name": "X"}]}')
    with pytest.raises(InputError, match="malformed"):
        LabelSchema.load(p)


def test_sample_rejects_span_outside_sentence():
    with pytest.raises(ValueError, match="ends past the sentence"):
        Sample.from_dict({"text": list("ab"), "entities": [{"start": 1, "end": 3, "entity": "X"}]})



# ---- the authors' weight schedules as presets

def test_weight_presets_give_the_authors_schedules():
    from knowfree.data.schema import WEIGHT_PRESETS

    def ext_weight(preset, n_train):
        rule = dict(WEIGHT_PRESETS[preset][0])
        return extension_weight(50, 2, 10, n_train, **rule)

    assert ext_weight("authors_code", 250) == min(10 / 50, 2 / 10)
    assert ext_weight("authors_notes_flat", 250) == 0.13
    assert ext_weight("authors_notes_small_data", 499) == 0.0
    assert ext_weight("authors_notes_small_data", 500) == 0.13
    assert {k: v[1] for k, v in WEIGHT_PRESETS.items()} == {
        "authors_code": 1.0, "authors_notes_flat": 1.0, "authors_notes_small_data": 1.0,
        "authors_notes_resume_0.4": 0.4, "authors_notes_resume_0.15": 0.15, "project": 0.5}
    # zero_below keeps its old meaning (count above the threshold) unless told otherwise
    assert extension_weight(50, 2, 10, 600, rule="zero_below") == min(10 / 50, 2 / 10)
