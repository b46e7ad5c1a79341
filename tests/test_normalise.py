"""Alias tables: free-form types and tagger tags -> the extension-label inventory; unknown
types are counted and never merged into a catch-all (fault 9 in docs/faults.md)."""
import pytest

from knowfree.errors import InputError
from knowfree.knowledge import normalise
from knowfree.knowledge.normalise import (ENT_PREFIX, POS_PREFIX, SEG_WORD, Normaliser, alias_tables,
                                          inventory, wants_segment)


def test_tables_load_and_every_target_is_in_the_inventory():
    t = alias_tables()
    assert t.entity_classes == ("PER", "ROLE", "ORG", "GPE", "LOC", "TIME", "NUM", "PRODUCT", "EVENT",
                                "WORK", "MISC")
    assert set(t.pos_aliases.values()) <= set(t.upos)
    assert set(t.entity_aliases.values()) <= set(t.entity_classes)
    inv = inventory()
    assert len(inv["pos"]) == 17 and inv["seg"] == [SEG_WORD]


def test_an_alias_under_two_classes_is_refused():
    with pytest.raises(InputError, match="maps to both"):
        normalise._invert({"PER": ["person"], "ORG": ["Person"]}, "entity type")


@pytest.mark.parametrize("raw, cls", [
    ("人名", "PER"), ("人物", "PER"), ("PERSON", "PER"), ("person name", "PER"), ("인물", "PER"), ("人物名", "PER"),
    ("地点", "LOC"), ("地名", "LOC"), ("location", "LOC"), ("施設名", "LOC"), ("장소", "LOC"),
    ("城市", "GPE"), ("国家", "GPE"), ("country", "GPE"), ("도시", "GPE"),
    ("组织", "ORG"), ("公司", "ORG"), ("机构", "ORG"), ("法人名", "ORG"), ("회사", "ORG"), ("sports teams", "ORG"),
    ("时间", "TIME"), ("日期", "TIME"), ("date", "TIME"), ("날짜", "TIME"),
    ("产品", "PRODUCT"), ("品牌", "PRODUCT"), ("製品名", "PRODUCT"),
    ("作品", "WORK"), ("电视剧", "WORK"), ("TV series", "WORK"), ("歌曲名", "WORK"),
    ("事件", "EVENT"), ("イベント名", "EVENT"), ("职业", "ROLE"), ("金额", "NUM"), ("民族", "MISC"),
])
def test_free_form_entity_types(raw, cls):
    assert Normaliser("zh").entity(raw) == ENT_PREFIX + cls


@pytest.mark.parametrize("raw, cls, how", [
    ("公司名称", "ORG", "exact"),         # generic suffix dropped
    ("人物（演员）", "PER", "part"),       # first part that resolves
    ("PER.NAM", "PER", "part"),
    ("足球运动员", "ROLE", "head"),        # longest alias ending the string
    ("中国城市", "GPE", "head"),
    ("football club", "ORG", "head"),      # last word of a spaced string
])
def test_fallbacks_are_recorded(raw, cls, how):
    n = Normaliser("zh")
    assert n.entity(raw) == ENT_PREFIX + cls
    assert n.entity_how == {how: 1}


def test_unknown_types_are_counted_and_dropped_not_merged():
    n = Normaliser("zh")
    assert n.entity("网络流行语") is None and n.entity("xyz") is None and n.entity("xyz") is None
    rep = n.report()
    assert rep["unknown_entity_types"] == {"xyz": 2, "网络流行语": 1}
    assert rep["entity_resolution"] == {"unknown": 3}
    # MISC is a listed class, never the destination of unknown types
    assert n.entity("其他") == ENT_PREFIX + "MISC"


def test_other_policy_keeps_unknown_types_as_an_explicit_label():
    n = Normaliser("zh", unknown_entities="other")
    assert n.entity("网络流行语") == ENT_PREFIX + "OTHER"
    assert n.report()["unknown_entity_types"] == {"网络流行语": 1}
    with pytest.raises(InputError):
        Normaliser("zh", unknown_entities="misc")


@pytest.mark.parametrize("lang, raw, upos", [
    ("zh", "名词", "NOUN"), ("zh", "人称代词", "PRON"), ("zh", "标点符号", "PUNCT"), ("zh", "语气词", "PART"),
    ("zh", "量词", "NOUN"), ("zh", "nr", "PROPN"), ("zh", "v", "VERB"),  # ICTCLAS codes from an LLM
    ("en", "NOUN", "NOUN"), ("en", "proper noun", "PROPN"), ("en", "NNP", "PROPN"), ("en", "Auxiliary verb", "AUX"),
    ("ja", "名詞", "NOUN"), ("ja", "助動詞", "AUX"), ("ja", "格助詞", "ADP"), ("ja", "形状詞", "ADJ"),
    ("ko", "명사", "NOUN"), ("ko", "조사", "ADP"), ("ko", "어미", "PART"), ("ko", "NNG", "NOUN"),
])
def test_free_form_pos(lang, raw, upos):
    assert Normaliser(lang).pos(raw) == POS_PREFIX + upos


def test_unknown_pos_is_counted_and_punctuation_is_read_off_the_characters():
    n = Normaliser("zh")
    assert n.pos("呵呵") is None
    assert n.pos("呵呵", word="。") == POS_PREFIX + "PUNCT"
    assert n.pos("???", word="+$") == POS_PREFIX + "SYM"
    assert n.report()["unknown_pos"] == {"呵呵": 1}


@pytest.mark.parametrize("tagset, tag, upos, how", [
    ("lac", "PER", "PROPN", "exact"), ("lac", "TIME", "NOUN", "exact"), ("lac", "vd", "ADV", "exact"),
    ("ictclas", "nrt", "PROPN", "prefix"), ("ictclas", "uj", "PART", "prefix"), ("ictclas", "vshi", "AUX", "exact"),
    ("sudachi", "名詞-固有名詞-人名-姓", "PROPN", "prefix"), ("sudachi", "助詞-接続助詞", "SCONJ", "exact"),
    ("sudachi", "補助記号-句点", "PUNCT", "prefix"),
    ("sejong", "VV-R", "VERB", "prefix"), ("sejong", "JKS", "ADP", "exact"), ("sejong", "NNP", "PROPN", "exact"),
    ("penn", "VBD", "VERB", "prefix"), ("penn", "PRP$", "PRON", "exact"),
])
def test_tagger_pos(tagset, tag, upos, how):
    n = Normaliser("zh")
    assert n.tagger_pos(tagset, tag) == POS_PREFIX + upos
    assert n.pos_how == {how: 1}


def test_tagger_whitespace_gives_no_pos_and_unknown_tagset_is_an_error():
    n = Normaliser("ja")
    assert n.tagger_pos("sudachi", "空白") is None
    with pytest.raises(InputError, match="no POS table"):
        n.tagger_pos("nosuch", "n")


@pytest.mark.parametrize("tagset, tag, cls", [
    ("lac", "PER", "PER"), ("lac", "LOC", "LOC"), ("lac", "ORG", "ORG"), ("lac", "TIME", "TIME"), ("lac", "nw", "WORK"),
    ("lac", "nz", None), ("lac", "n", None),
    ("ictclas", "nr", "PER"), ("ictclas", "nrfg", "PER"), ("ictclas", "ns", "LOC"), ("ictclas", "nt", "ORG"),
    ("ictclas", "nz", None), ("ictclas", "v", None),
    ("sudachi", "名詞-固有名詞-人名-名", "PER"), ("sudachi", "名詞-固有名詞-地名-国", "GPE"),
    ("sudachi", "名詞-固有名詞-地名-一般", "LOC"), ("sudachi", "名詞-固有名詞-一般", None),
    ("sejong", "NNP", None),
])
def test_tagger_entity_classes(tagset, tag, cls):
    assert Normaliser("zh").tagger_entity(tagset, tag) == (None if cls is None else ENT_PREFIX + cls)


def test_readable_type_for_prompts():
    assert Normaliser("zh").readable_type("PER.NAM") == "人物"
    assert Normaliser("en").readable_type("GPE.NOM") == "country or city"
    assert Normaliser("ko").readable_type("PS") == "인물"
    assert Normaliser("ja").readable_type("製品名") == "製品名"
    assert Normaliser("zh").readable_type("HCCX") == "HCCX"


def test_segmentation_rule():
    assert wants_segment("", 1)          # zh/ja: one character is a word on its own
    assert not wants_segment(" ", 1)     # en/ko: a one-token word restates the tokenisation
    assert wants_segment(" ", 2)
