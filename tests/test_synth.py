"""Explanation synthesis: sentence splitting, synthetic samples tied to their source, and the
pseudo-label guard against leakage across K settings (fault 10 in docs/faults.md)."""
import json

import pytest

from knowfree.data.sample import Sample, Span
from knowfree.errors import ConfigError, InputError
from knowfree.knowledge.synth import (SynthConfig, Synthesiser, check_pseudo_label_run, pseudo_label,
                                      split_sentences)


@pytest.mark.parametrize("lang, text, sentences", [
    ("zh", "北京是首都。它很大！你去过吗？是的……好吧",
     ["北京是首都。", "它很大！", "你去过吗？", "是的……", "好吧"]),
    ("zh", "他说：“我爱北京！”然后走了。", ["他说：“我爱北京！”然后走了。"]),
    ("zh", "他说：“我爱北京！”", ["他说：“我爱北京！”"]),
    ("ja", "東京大学は日本の大学です。「本当？」と聞いた。", ["東京大学は日本の大学です。", "「本当？」と聞いた。"]),
    ("en", "Dr. Smith moved to the U.S. in 2019. Prices rose 3.5 percent! Is it true? Yes.",
     ["Dr. Smith moved to the U.S. in 2019.", "Prices rose 3.5 percent!", "Is it true?", "Yes."]),
    ("en", 'J. K. Rowling wrote it, e.g. Harry Potter. He said "Go." Then left',
     ["J. K. Rowling wrote it, e.g. Harry Potter.", 'He said "Go."', "Then left"]),
    ("en", "It costs $3.50 at 10 a.m. daily. Mr. Lee agrees.", ["It costs $3.50 at 10 a.m. daily.", "Mr. Lee agrees."]),
    ("ko", "홍길동은 학생이다. 그는 서울에 산다! 정말?", ["홍길동은 학생이다.", "그는 서울에 산다!", "정말?"]),
    ("zh", "1. **第一点**：北京很大。\n- 第二点没有句号\n\n", ["第一点：北京很大。", "第二点没有句号"]),
])
def test_sentence_splitting(lang, text, sentences):
    assert split_sentences(text, lang) == sentences


def gold(text, sid, spans=()):
    return Sample(list(text), list(spans), sid)


def test_synthetic_samples_keep_source_flag_and_weight():
    src = gold("我爱北京", "weibo-train-7", [Span(2, 4, "GPE.NAM")])
    syn = Synthesiser("zh", SynthConfig(min_chars=3, weight=0.3), gold=[src])
    out = syn.from_text(src, "我爱北京。北京是中国的首都。北京是中国的首都！短。 北京有很多名胜古迹。",
                        {"template": "explain.zh.1"})
    assert [s.text for s in out] == ["北京是中国的首都。", "北京有很多名胜古迹。"]
    for i, s in enumerate(out):
        assert s.synthetic and s.source_id == "weibo-train-7" and s.weight == 0.3
        assert s.id == f"weibo-train-7-syn{i}" and s.spans == [] and s.meta["template"] == "explain.zh.1"
    st = syn.stats.to_dict()
    assert st["dropped"] == {"copy_of_gold": 1, "duplicate": 1, "too_short": 1}
    assert st["kept"] == 2 and st["synthetic_per_source"] == 2.0


def test_dedup_spans_sources_and_cap_per_source():
    a, b = gold("甲句子", "a"), gold("乙句子", "b")
    syn = Synthesiser("zh", SynthConfig(min_chars=2, max_chars=10, max_per_source=1))
    assert len(syn.from_text(a, "共同的句子。第二句。")) == 1
    assert syn.from_text(b, "共同的句子。这句话实在是太长了太长了太长了。") == []
    assert syn.from_text(b, "") == []
    st = syn.stats.to_dict()
    assert st["dropped"] == {"duplicate": 1, "over_per_source_cap": 1, "too_long": 1}
    assert st["empty_answers"] == 1 and st["sources_without_synthetic"] == 1
    assert st["synthetic_per_source"] == 0.5


def test_tokens_follow_the_dataset_granularity():
    en = Synthesiser("en", SynthConfig(min_chars=3)).from_text(Sample(["x"], id="e", lang="en"),
                                                                "Apple's U.S. sales rose 3.5% in 2019.")
    assert en[0].tokens == ["Apple", "'s", "U.S.", "sales", "rose", "3.5", "%", "in", "2019", "."]
    zh = Synthesiser("zh", SynthConfig(min_chars=3)).from_text(gold("x", "z"), "北京 欢迎你。")
    assert zh[0].tokens == list("北京欢迎你。")


def test_config_is_checked():
    with pytest.raises(ConfigError):
        SynthConfig(min_chars=10, max_chars=5)
    with pytest.raises(ConfigError):
        SynthConfig(weight=-1)


# --- pseudo-labelling (fault 10 in docs/faults.md) -----------------------------------------


def fake_run(tmp_path, name, subset=None, train_hash="t", file_sha=None, k=None):
    run = tmp_path / name
    run.mkdir()
    info = {"hashes": {"train": train_hash}, "counts": {"train": k}}
    if subset:
        info["subset"] = {"k": k, "seed": 42, "hash": subset}
    if file_sha:
        info["files"] = {"train": {"path": "fusion.jsonl", "sha256": file_sha}}
    (run / "data.json").write_text(json.dumps(info))
    return run


def test_a_model_from_the_1000_setting_is_refused_for_the_250_setting(tmp_path):
    run = fake_run(tmp_path, "k1000", subset="hash-of-1000", k=1000)
    with pytest.raises(InputError, match="1000-sentence subset.*not on this 250-sentence setting"):
        check_pseudo_label_run(run, 250, "hash-of-250", {"fusion-hash-250"})


def test_a_model_of_the_same_setting_is_accepted(tmp_path):
    same_subset = fake_run(tmp_path, "k250", subset="hash-of-250", k=250)
    assert check_pseudo_label_run(same_subset, 250, "hash-of-250")["k"] == 250
    on_fusion_file = fake_run(tmp_path, "fusion", file_sha="sha-of-fusion")
    assert check_pseudo_label_run(on_fusion_file, 250, "hash-of-250", {"sha-of-fusion"})
    on_other_file = fake_run(tmp_path, "other", train_hash="other", file_sha="sha-of-other")
    with pytest.raises(InputError, match="leak"):
        check_pseudo_label_run(on_other_file, 250, "hash-of-250", {"sha-of-fusion"})


def test_a_folder_without_data_json_is_refused(tmp_path):
    with pytest.raises(InputError, match="data.json"):
        check_pseudo_label_run(tmp_path, 250, "h")


class FakePredictor:
    def predict_samples(self, samples, batch_size=16):
        out = []
        for s in samples:
            p = s.with_spans([Span(0, 2, "PER.NAM")])
            p.meta["probs"] = {"0:2:PER.NAM": 0.9}
            out.append(p)
        return out


def test_pseudo_labels_join_the_extension_spans_and_keep_the_flags():
    s = Sample(list("王五来了"), [Span(0, 2, "ext.pos.PROPN")], "a-syn0", synthetic=True, source_id="a",
               weight=0.5)
    (out,) = pseudo_label(FakePredictor(), [s])
    assert set(out.spans) == {Span(0, 2, "ext.pos.PROPN"), Span(0, 2, "PER.NAM")}
    assert out.synthetic and out.source_id == "a" and out.weight == 0.5
    assert out.meta["pseudo_label_probs"] == {"0:2:PER.NAM": 0.9}
