"""Predictor: raw text in, character offsets out; a saved run predicts exactly what the trained
model did; long text goes through windows (fault 8 in docs/faults.md: an entity at character
700 is found)."""
import json
import random
from types import SimpleNamespace

import pytest
from torch import nn

from knowfree.__main__ import main as knowfree_main
from knowfree.data.formats import read, write
from knowfree.data.sample import Sample, Span
from knowfree.data.schema import LabelSchema
from knowfree.encoder import build_tiny_encoder
from knowfree.metrics import evaluate
from knowfree.model import ModelConfig, build_model
from knowfree.predict import Predictor, load_weights, merge_windows, split_text, token_windows
from knowfree.train import train

FILLER = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过"
PEOPLE = ["王小明", "赵丽", "孙悟空"]
PLACES = ["东京", "巴黎市"]


def sentences(n, seed, prefix):
    r = random.Random(seed)
    out = []
    for i in range(n):
        tokens, spans = r.choices(FILLER, k=r.randint(0, 6)), []
        for _ in range(r.randint(1, 2)):
            label, name = ("PER", r.choice(PEOPLE)) if r.random() < 0.6 else ("LOC", r.choice(PLACES))
            spans.append(Span(len(tokens), len(tokens) + len(name), label))
            tokens += list(name) + r.choices(FILLER, k=r.randint(1, 6))
        out.append(Sample(tokens, spans, id=f"{prefix}-{i}"))
    return out


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny KnowFREE model trained to tag the names and places above."""
    root = tmp_path_factory.mktemp("predict")
    encoder = build_tiny_encoder(root / "encoder", [FILLER + "".join(PEOPLE + PLACES)])
    write(sentences(48, 0, "train"), root / "train.jsonl", "jsonl")
    write(sentences(16, 1, "dev"), root / "dev.jsonl", "jsonl")
    write(sentences(16, 2, "test"), root / "test.jsonl", "jsonl")
    config = {
        "data": {"train_file": str(root / "train.jsonl"), "dev_file": str(root / "dev.jsonl"),
                 "test_file": str(root / "test.jsonl")},
        "model": {"encoder": encoder, "channels": 32, "biaffine_heads": 2, "attention_heads": 4,
                  "size_embedding": 8, "dropout": 0.1},
        "train": {"epochs": 12, "batch_size": 8, "encoder_lr": 1e-3, "head_lr": 5e-3,
                  "threads": 1},
    }
    metrics = train(config, root / "run", progress=False)
    assert metrics["test"]["f1"] > 0.9
    return root / "run", metrics, config


def test_split_text_offsets():
    assert split_text(" 北京 欢迎你", "zh") == (list("北京欢迎你"), [(1, 2), (2, 3), (4, 5), (5, 6), (6, 7)])
    tokens, offsets = split_text("  New York\tis\nbig. ", "en")
    assert tokens == ["New", "York", "is", "big."]
    assert offsets == [(2, 5), (6, 10), (11, 13), (14, 18)]
    assert split_text(" \n\u3000", "ja") == ([], [])


def test_korean_text_is_split_into_morphemes_with_surface_offsets():
    text = "각각 영국과 프랑스 과학활동의 특성으로 자라났다."
    tokens, offsets = split_text(text, "ko")
    # the names come apart from their particles, as in the KMOU training tokens
    assert tokens[:5] == ["각각", "영국", "과", "프랑스", "과학"]
    assert text[offsets[1][0]:offsets[1][1]] == "영국"
    assert text[offsets[3][0]:offsets[3][1]] == "프랑스"
    assert all(0 <= a < b <= len(text) for a, b in offsets)
    assert [a for a, _ in offsets] == sorted(a for a, _ in offsets)
    # every character that is not a space is read by some morpheme
    covered = {i for a, b in offsets for i in range(a, b)}
    assert covered == {i for i, c in enumerate(text) if not c.isspace()}
    assert split_text("  \n", "ko") == ([], [])


def test_saved_run_predicts_what_the_trained_model_did(run):
    run_dir, metrics, config = run
    test = sentences(16, 2, "test")
    loaded = Predictor.load(run_dir)
    predicted = loaded.predict_samples(test)
    assert evaluate(test, predicted).as_dict() == metrics["test"]

    # the same weights in a model built from the pretrained encoder folder, not the run's files
    schema = LabelSchema.load(run_dir / "schema.json")
    fresh = build_model(ModelConfig.from_dict(config["model"]), schema)
    load_weights(fresh, run_dir / "model.safetensors")
    texts = [s.text for s in test] + ["王小明和赵丽在东京"]
    assert Predictor(fresh).predict(texts, batch_size=4) == loaded.predict(texts, batch_size=4)

    # raw text and token input agree (zh: one token per character)
    by_text = loaded.predict([s.text for s in test])
    for sample, spans in zip(predicted, by_text):
        assert {(d["start"], d["end"], d["label"]) for d in spans} == \
            {(s.start, s.end, s.label) for s in sample.spans}
        assert all(d["text"] == sample.text[d["start"]:d["end"]] and 0.5 < d["prob"] <= 1
                   for d in spans)


def test_entity_at_character_700_of_a_long_text_is_found(run):
    run_dir, _, _ = run
    predictor = Predictor.load(run_dir)
    r = random.Random(7)
    text = "".join(r.choices(FILLER, k=700)) + "孙悟空" + "".join(r.choices(FILLER, k=297))
    assert len(text) == 1000
    windows = token_windows(predictor.model, [Sample(list(text))])[0]
    assert len(windows) > 1 and windows[-1][1] == 1000  # past the encoder limit, nothing cut
    spans = predictor.predict([text])[0]
    assert {"start": 700, "end": 703, "label": "PER", "text": "孙悟空"} in \
        [{k: d[k] for k in ("start", "end", "label", "text")} for d in spans]
    # the same entity in a short text gets the same answer
    short = predictor.predict([text[690:713]])[0]
    assert [(d["start"] + 690, d["end"] + 690, d["label"]) for d in short] == \
        [(d["start"], d["end"], d["label"]) for d in spans if 690 <= d["start"] and d["end"] <= 713]


def test_empty_and_whitespace_texts_give_no_spans(run):
    predictor = Predictor.load(run[0])
    out = predictor.predict(["", "   ", "\n\t\u3000", "王小明在东京"])
    assert out[:3] == [[], [], []]
    assert [d["text"] for d in out[3]] == ["王小明", "东京"]
    assert predictor.predict([]) == []


def test_cli_reads_jsonl_or_plain_lines_and_writes_jsonl(run, tmp_path):
    src = tmp_path / "in.txt"
    src.write_text('{"text": "赵丽去巴黎市", "id": 1}\n孙悟空在东京\n\n', encoding="utf-8")
    out = tmp_path / "out.jsonl"
    assert knowfree_main(["predict", str(run[0]), "--input", str(src), "--output", str(out)]) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [r["text"] for r in records] == ["赵丽去巴黎市", "孙悟空在东京", ""]
    assert records[0]["id"] == 1 and "id" not in records[1]
    assert [[(d["text"], d["label"]) for d in r["spans"]] for r in records] == \
        [[("赵丽", "PER"), ("巴黎市", "LOC")], [("孙悟空", "PER"), ("东京", "LOC")], []]


def test_cli_on_a_token_file_writes_what_eval_scores_as_the_trainer_did(run, tmp_path, capsys):
    run_dir, metrics, config = run
    gold, pred = config["data"]["test_file"], tmp_path / "pred.jsonl"
    assert knowfree_main(["predict", str(run_dir), "--tokens", "--input", gold, "--output", str(pred)]) == 0
    assert evaluate(read(gold, "jsonl").samples, read(pred, "jsonl").samples).as_dict() == metrics["test"]
    capsys.readouterr()
    assert knowfree_main(["eval", gold, str(pred), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["f1"] == metrics["test"]["f1"]
    assert knowfree_main(["predict", str(run_dir), "--tokens", "--input", gold]) == 1
    assert "--tokens needs --input FILE and --output FILE" in capsys.readouterr().err


def test_cli_refuses_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert knowfree_main(["predict", str(tmp_path), "--input", "/dev/null"]) == 1
    assert "not a trained run folder" in capsys.readouterr().err


# --- offsets for space-separated languages, and window merging ----------------------------------

class PhraseModel(nn.Module):
    """Stand-in model that tags every "New York" as LOC, to test offset mapping alone."""
    config = SimpleNamespace(flat=True)
    encoder = SimpleNamespace(windows=lambda tokens, lang, overlap: [(0, len(tokens))] if tokens else [])

    def collate(self, samples):
        return {"tokens": [s.tokens for s in samples]}

    def forward(self, batch):
        return None

    def decode(self, batch, logits):
        return [[(i, i + 2, "LOC", 0.9) for i in range(len(t) - 1) if t[i:i + 2] == ["New", "York"]]
                for t in batch["tokens"]]


def test_word_languages_map_spans_to_character_offsets():
    predictor = Predictor(PhraseModel(), lang="en")
    text = "I  love New   York ."
    assert predictor.predict([text, "New"]) == [
        [{"start": 8, "end": 18, "label": "LOC", "text": "New   York", "prob": 0.9}], []]


def test_windows_merge_by_centrality_then_probability():
    ranges = [(0, 12), (8, 20)]
    # the same span from both windows is kept once
    assert merge_windows(20, ranges, [[(9, 11, "PER", 0.9)], [(1, 3, "PER", 0.8)]], nested=False) \
        == [(9, 11, "PER", 0.9)]
    # a span at window 0's cut edge is decided by window 1, which sees it with context
    assert merge_windows(20, ranges, [[(10, 12, "PER", 0.99)], [(2, 4, "LOC", 0.6)]], nested=False) \
        == [(10, 12, "LOC", 0.6)]
    assert merge_windows(20, ranges, [[(10, 12, "PER", 0.99)], []], nested=False) == []
    # spans decided by different windows that collide: crossing ones resolved by probability
    crossing = [[(7, 10, "ORG", 0.7)], [(1, 5, "PER", 0.8)]]  # (7, 10) by window 0, (9, 13) by 1
    for nested in (False, True):
        assert merge_windows(20, ranges, crossing, nested) == [(9, 13, "PER", 0.8)]
    # (8, 11) is decided by window 0 and (10, 11) inside it by window 1: both kept if nested
    inside = [[(8, 11, "ORG", 0.7)], [(2, 3, "PER", 0.8)]]
    assert merge_windows(20, ranges, inside, nested=True) == [(8, 11, "ORG", 0.7), (10, 11, "PER", 0.8)]
    assert merge_windows(20, ranges, inside, nested=False) == [(10, 11, "PER", 0.8)]
    # a single window passes through unchanged
    assert merge_windows(5, [(0, 5)], [[(0, 2, "PER", 0.9)]], nested=False) == [(0, 2, "PER", 0.9)]
