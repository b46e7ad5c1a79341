"""`augment` end to end in Japanese and Korean with the real llama.cpp server and the real 0.5B
model: each language's prompts, the tolerant parser, token alignment and the alias tables on
real answers, then the same run replayed from its cache with no server.

Skipped like tests/test_llm_server.py when llama-cpp-python or the model is missing, unless
KNOWFREE_REQUIRE_LLM=1 (CI).
"""
import pytest
from test_llm_server import need_small_model

from knowfree.data.formats import read, write
from knowfree.data.sample import Sample, Span
from knowfree.knowledge.normalise import POS_PREFIX, alias_tables
from knowfree.knowledge.pipeline import augment

# (tokens, gold spans) per language, tokenised as the datasets are: Japanese by character,
# Korean by morpheme (KMOU).
SENTENCES = {
    "ja": [(list("田中さんは東京の日本銀行で働いている。"), [(0, 2, "PER"), (5, 7, "LOC"), (8, 12, "ORG")]),
           (list("昨日、大阪で山田先生に会った。"), [(3, 5, "LOC"), (6, 8, "PER")])],
    "ko": [(["김민수", "는", "부산", "에서", "삼성전자", "에", "다닌다", "."], [(0, 1, "PS"), (2, 3, "LC"), (4, 5, "OG")]),
           (["서울", "에서", "이영희", "를", "만나", "았", "다", "."], [(0, 1, "LC"), (2, 3, "PS")])],
}


def _samples(lang, rows, prefix):
    return [Sample(tokens, [Span(a, b, l) for a, b, l in spans], f"{prefix}-{i}", lang)
            for i, (tokens, spans) in enumerate(rows)]


@pytest.fixture(scope="module")
def model():
    return need_small_model()


@pytest.mark.parametrize("lang", ["ja", "ko"])
def test_real_llm_augments_japanese_and_korean_then_replays(model, tmp_path, lang):
    write(_samples(lang, SENTENCES[lang], "train"), tmp_path / "train.jsonl", "jsonl")
    write(_samples(lang, SENTENCES[lang][:1], "dev"), tmp_path / "dev.jsonl", "jsonl")
    cfg = {"train_file": str(tmp_path / "train.jsonl"), "dev_file": str(tmp_path / "dev.jsonl"), "lang": lang,
           "knowledge": "llm", "output": str(tmp_path / "live"),
           "llm": {"serve": "0.5b", "cache": str(tmp_path / "cache"), "max_tokens": 256, "concurrency": 1}}
    live = augment(cfg)
    src = live.stats["sources"]["llm"]
    assert live.complete and live.stats["llm_usage"]["answered"] == 4 and src["failed_requests"] == 0
    # Real answers parse (a 0.5B model may still break one) and give extension spans on real tokens.
    parsed = sum(k.get("parse_ok", 0) + k.get("parse_repaired", 0) for k in src["by_kind"].values())
    assert parsed >= 3, src["by_kind"]
    ext = [s for x in live.fusion for s in x.extensions()]
    assert any(s.label.startswith("ext.pos.") for s in ext), src
    pos_inventory = {POS_PREFIX + u for u in alias_tables().upos}
    assert {s.label for s in ext if s.label.startswith("ext.pos.")} <= pos_inventory
    for x in live.fusion:
        assert all(0 <= s.start < s.end <= len(x.tokens) for s in x.spans)
        assert [(t.start, t.end, t.label) for t in x.targets()] == \
            [(a, b, l) for a, b, l in next(sp for tok, sp in SENTENCES[lang] if tok == x.tokens)]

    # The same run from the cache alone: no server, no request, the same fusion set.
    cfg["llm"] = {**cfg["llm"], "mode": "replay"}
    cfg["output"] = str(tmp_path / "replay")
    replay = augment(cfg)
    assert replay.stats["llm_usage"]["http_requests"] == 0 and replay.stats["llm_usage"]["cache_hits"] == 4
    assert read(tmp_path / "replay" / "fusion.jsonl", "jsonl").samples == \
        read(tmp_path / "live" / "fusion.jsonl", "jsonl").samples
