"""Parsing LLM answers and aligning their strings to tokens.

The alignment tests are the guard against fault 9 in docs/faults.md: the authors kept
only the first span per start position and dropped every single-character span."""
import random

import pytest

from knowfree.data.sample import Sample
from knowfree.knowledge.align import (CharTokenMap, align_entities, align_words, layout,
                                      parse_pairs)

# --- parsing ----------------------------------------------------------------------------


def test_strict_json_list_is_ok():
    p = parse_pairs('[{"entity": "北京", "type": "地点"}, {"entity": "李明", "type": "人名"}]', "entity")
    assert p.status == "ok" and p.pairs == [("北京", "地点"), ("李明", "人名")] and p.invalid_items == 0


@pytest.mark.parametrize("text, pairs, status", [
    ('```json\n[{"entity": "北京", "type": "地点"}]\n```', [("北京", "地点")], "repaired"),
    ('Sure, here it is:\n[{"entity": "北京", "type": "地点"}, {"entity": "李明", "type": "人',
     [("北京", "地点"), ("李明", "人")], "repaired"),
    ("[{'entity': '北京', 'type': '地点'},]", [("北京", "地点")], "repaired"),
    ('{"entities": [{"entity": "北京", "type": "地点"}]}', [("北京", "地点")], "repaired"),
    ('{"北京": "地点", "李明": "人名"}', [("北京", "地点"), ("李明", "人名")], "repaired"),
    ('{"人名": ["李明", "王五"], "地点": ["北京"]}', [("李明", "人名"), ("王五", "人名"), ("北京", "地点")],
     "repaired"),
    ('[["北京", "地点"]]', [("北京", "地点")], "repaired"),
    ('[{"实体": "北京", "类型": "城市"}]', [("北京", "城市")], "ok"),
])
def test_repairable_shapes_are_repaired_and_counted(text, pairs, status):
    p = parse_pairs(text, "entity")
    assert (p.pairs, p.status) == (pairs, status)


@pytest.mark.parametrize("text, status", [
    ("", "empty"), ("   \n", "empty"), (None, "empty"),
    ("no json here at all", "failed"), ("null", "failed"), ("42", "failed"), ("[1, 2, 3]", "failed"),
    ("[]", "ok"),
])
def test_empty_and_unparseable_answers_get_a_status(text, status):
    p = parse_pairs(text, "entity")
    assert p.status == status and p.pairs == []


def test_items_without_required_fields_are_counted():
    p = parse_pairs('[{"entity": "北京"}, {"entity": "上海", "type": "城市"}, 7]', "entity")
    assert p.pairs == [("上海", "城市")] and p.invalid_items == 2


def test_pos_word_without_tag_still_segments():
    p = parse_pairs('[{"word": "我", "pos": "PRON"}, {"word": "爱"}]', "pos")
    assert p.pairs == [("我", "PRON"), ("爱", "")]


def test_parser_never_raises_on_garbage():
    r = random.Random(0)
    alphabet = '[]{}",:\'`\\ntrue5.-北京'
    for _ in range(300):
        text = "".join(r.choice(alphabet) for _ in range(r.randint(0, 40)))
        p = parse_pairs(text, r.choice(["entity", "pos"]))
        assert p.status in ("ok", "repaired", "empty", "failed")


# --- entity alignment (fault 9 in docs/faults.md) ----------------------------------------


TOKENS = list("北京大学在北京。京")


def test_every_occurrence_becomes_a_span():
    al = align_entities(TOKENS, [("北京", "地点")])
    assert [(a, b) for a, b, _ in al.spans] == [(0, 2), (5, 7)]


def test_several_spans_may_start_at_the_same_token():
    al = align_entities(TOKENS, [("北京", "地点"), ("北京大学", "机构")])
    starts_at_0 = sorted((b, t) for a, b, t in al.spans if a == 0)
    assert starts_at_0 == [(2, "地点"), (4, "机构")]


def test_single_character_spans_are_kept():
    al = align_entities(TOKENS, [("京", "简称")])
    assert [(a, b) for a, b, _ in al.spans] == [(1, 2), (6, 7), (8, 9)]


def test_strings_not_in_the_sentence_are_hallucinations():
    al = align_entities(TOKENS, [("上海", "地点"), ("北京", "地点"), ("", "x")])
    assert al.hallucinated == ["上海", ""] and al.found == 1


def test_word_tokens_match_ignoring_whitespace_and_width():
    tokens = "The U.S. troops left Dr. Smith 's house in ２０１９".split()
    al = align_entities(tokens, [("U.S. troops", "ORG"), ("Smith's", "PER"), ("2019", "DATE"), ("S", "X")])
    assert {(a, b, t) for a, b, t in al.spans} == {(1, 3, "ORG"), (5, 7, "PER"), (9, 10, "DATE")}
    assert al.hallucinated == ["S"]  # inside a token: not on token boundaries


def test_case_insensitive_fallback_is_counted():
    al = align_entities(["Apple", "launched", "iPhone"], [("apple", "ORG"), ("iPhone", "PRODUCT")])
    assert len(al.spans) == 2 and al.casefold_matches == 1


def test_whitespace_tokens_are_never_span_edges():
    tokens = ["周", " ", "杰", "伦"]
    al = align_entities(tokens, [("周杰伦", "人名"), ("周", "姓")])
    assert {(a, b) for a, b, _ in al.spans} == {(0, 4), (0, 1)}


# --- POS alignment ----------------------------------------------------------------------


def test_pos_words_align_in_order_to_their_own_positions():
    tokens = list("我的书和你的书")
    words = [("我", "r"), ("的", "u"), ("书", "n"), ("和", "c"), ("你", "r"), ("的", "u"), ("书", "n")]
    al = align_words(tokens, words)
    assert [(a, b) for a, b, _, _ in al.words] == [(i, i + 1) for i in range(7)]
    assert al.coverage == 1.0


def test_a_missing_word_is_dropped_without_moving_the_cursor():
    tokens = list("北京欢迎你，北京")
    words = [("北京", "ns"), ("火星", "n"), ("欢迎", "v"), ("你", "r"), ("北京", "ns")]
    al = align_words(tokens, words)
    assert al.hallucinated == ["火星"]
    assert [(a, b) for a, b, _, _ in al.words] == [(0, 2), (2, 4), (4, 5), (6, 8)]
    assert al.covered_chars == 7 and al.total_chars == 8 and al.coverage == pytest.approx(7 / 8)


def test_pos_coverage_counts_non_space_characters():
    al = align_words(["I", "love", "Paris", "!"], [("I", "PRON"), ("love", "VERB")])
    assert al.total_chars == 11 and al.covered_chars == 5


# --- character layout for taggers ---------------------------------------------------------


def test_char_token_map_joins_groups_and_refuses_inner_boundaries():
    m = CharTokenMap(["나", "도", "때늦", "은"], " ", groups=[1, 1, 2, 2])
    assert m.text == "나도 때늦은"
    assert m.to_tokens(0, 2) == (0, 2)
    assert m.to_tokens(3, 6) == (2, 4)
    assert m.to_tokens(3, 4) is None  # 때 alone splits the token 때늦
    assert m.to_tokens(1, 4) is None  # the space between groups is trimmed, then 때 splits 때늦


def test_layout_uses_kmou_eojeol_groups_only_for_korean():
    ko = Sample(["홍길동", "이", "왔", "다"], id="k", lang="ko", meta={"word": [1, 1, 2, 2]})
    en = Sample(["New", "York"], id="e", lang="en", meta={"word": [1, 1]})
    assert layout(ko).text == "홍길동이 왔다"
    assert layout(en).text == "New York"
    assert layout(Sample(list("北京"), id="z")).text == "北京"


def test_cursor_survives_case_folding_that_changes_lengths():
    al = align_words(["Straße", "ist", "STRASSE", "lang"],
                     [("strasse", "N"), ("ist", "V"), ("Strasse", "N"), ("lang", "A")])
    assert [(a, b) for a, b, _, _ in al.words] == [(0, 1), (1, 2), (2, 3), (3, 4)]
    assert al.casefold_matches == 2 and al.coverage == 1.0
