"""A trained knowfree span model without knowfree: the loader inside every exported folder.

``python -m knowfree export RUN_DIR OUT --format hf|onnx`` copies this file into OUT as
``knowfree_model.py``. It needs numpy, safetensors and transformers (for the tokenizer), plus
torch for an ``hf`` folder or onnxruntime for an ``onnx`` one, and none of the training code::

    import sys; sys.path.insert(0, "OUT")
    import knowfree_model
    model = knowfree_model.load("OUT")
    model.predict(["..."])   # per text: [{"start", "end", "label", "text", "prob"}, ...]

The training code imports the text-to-piece alignment and the span decoder from here, so an
exported model reads text and picks spans exactly as the trainer scored them. The span head is
written a second way: the trainer computes the cells packed, sentence by sentence, with a
hand-written backward (knowfree.model); here the cells lie in a band, cell (i, w) being the
span of tokens i .. i + w, computed for the whole batch in plain tensor operations that trace
into one ONNX graph. tests/test_export.py holds the two to the same spans and 1e-4 in
probability.

Text longer than the encoder's limit (``max_pieces`` pieces, about 510 characters of Chinese)
is refused here with a message; the knowfree Predictor windows it.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

FORMAT = 1
# languages written without spaces: one token per non-space character
CHAR_LANGS = ("zh", "ja")
# characters of one piece beyond this index share the last position embedding
MAX_POSITION_IN_PIECE = 8
# text of a piece that stands for a space only: SentencePiece's "▁", byte-level "Ġ"
SPACE_MARKS = "▁Ġ \t\n"


# --------------------------------------------------------------------------------------------
# Text -> tokens -> pieces
# --------------------------------------------------------------------------------------------


def separator(lang: str) -> str:
    """How tokens join back into text: characters for zh/ja, spaces otherwise."""
    return "" if lang in CHAR_LANGS else " "


def split_text(text: str, lang: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Tokens of a raw string (characters for zh/ja, whitespace words otherwise) and their
    [start, end) character offsets. Korean needs morphemes: knowfree's Predictor runs Kiwi."""
    pattern = r"\S" if lang in CHAR_LANGS else r"\S+"
    matches = list(re.finditer(pattern, text))
    return [m.group() for m in matches], [m.span() for m in matches]


def join_tokens(tokens: Sequence[str], sep: str) -> tuple[str, list[tuple[int, int]]]:
    """Text of the tokens and each token's [start, end) character range in it."""
    ranges, pos = [], 0
    for i, tok in enumerate(tokens):
        if i:
            pos += len(sep)
        ranges.append((pos, pos + len(tok)))
        pos += len(tok)
    return sep.join(tokens), ranges


@dataclass
class Alignment:
    """How one sentence's tokens sit on its pieces (piece indices include specials)."""
    n_pieces: int
    pieces: list[list[int]]  # per token: the pieces covering any of its characters
    position: list[int]      # per token: index of its first character inside its piece


def align_pieces(offsets: Sequence[tuple[int, int]], special: Sequence[int], piece_texts: Sequence[str],
                 ranges: Sequence[tuple[int, int]]) -> Alignment:
    """Tokens' pieces from the tokenizer's character offsets of each piece."""
    text_len = max((e for _, e in ranges), default=0)
    covering: list[list[int]] = [[] for _ in range(text_len)]
    marks: set[int] = set()
    for p, ((s, e), is_special, piece) in enumerate(zip(offsets, special, piece_texts)):
        if is_special:
            continue
        if not piece.strip(SPACE_MARKS):
            marks.add(p)
        for c in range(s, min(e, text_len)):
            covering[c].append(p)
    for c, ps in enumerate(covering):
        # A lone "▁" that the tokenizer prepends to the text is aligned to its first
        # character although it holds none of it; keep it only where nothing else is.
        if len(ps) > 1 and any(p in marks for p in ps):
            covering[c] = [p for p in ps if p not in marks] or ps
    pieces, position = [], []
    prev_piece, prev_pos = None, -1
    for a, b in ranges:
        seen: list[int] = []
        first_pos = None
        for c in range(a, b):
            if not covering[c]:
                continue
            # A character split over two pieces (byte-level BPE) counts as part of the
            # later one, which also holds the characters after it. Positions count
            # characters of tokens only, so separators covered by a piece such as
            # "▁word" do not shift them.
            head = covering[c][-1]
            prev_pos = prev_pos + 1 if head == prev_piece else 0
            prev_piece = head
            if first_pos is None:
                first_pos = prev_pos
            for p in covering[c]:
                if p not in seen:
                    seen.append(p)
        pieces.append(seen)
        position.append(first_pos or 0)
    return Alignment(len(offsets), pieces, position)


def load_tokenizer(folder: str | Path):
    """The folder's own tokenizer.json, as written (AutoTokenizer may swap in a class
    registered for the model type that rebuilds the pipeline and loses pieces)."""
    folder = Path(folder)
    if (folder / "tokenizer.json").is_file():
        try:
            from transformers.tokenization_utils_tokenizers import TokenizersBackend
            return TokenizersBackend.from_pretrained(str(folder))
        except ImportError:  # transformers 4
            from transformers import PreTrainedTokenizerFast
            return PreTrainedTokenizerFast.from_pretrained(str(folder))
    from transformers import AutoTokenizer
    return AutoTokenizer.from_pretrained(str(folder))


def encode(tokenizer, token_lists: Sequence[Sequence[str]], lang: str, max_pieces: int,
           pad_id: int) -> dict[str, np.ndarray]:
    """The model's inputs for a batch of token lists, as int64 arrays: ``input_ids`` and
    ``attention_mask`` [B, P]; ``token_pieces`` and ``token_piece_mask`` [B, L, K] (the pieces
    covering each token, K the most any token has); ``token_position`` and ``token_mask`` [B, L]."""
    texts, ranges = zip(*(join_tokens(t, separator(lang)) for t in token_lists))
    enc = tokenizer(list(texts), add_special_tokens=True, return_offsets_mapping=True,
                    return_special_tokens_mask=True, return_attention_mask=False, truncation=False,
                    verbose=False)
    alignments = []
    for i, (ids, off, spec, r) in enumerate(zip(enc["input_ids"], enc["offset_mapping"],
                                                enc["special_tokens_mask"], ranges)):
        if len(ids) > max_pieces:
            raise ValueError(f"text {i} ({len(token_lists[i])} tokens) needs {len(ids)} pieces, more "
                             f"than this model's {max_pieces}: split it (knowfree's Predictor "
                             "windows long text)")
        alignments.append(align_pieces(off, spec, tokenizer.convert_ids_to_tokens(ids), r))
    B = len(token_lists)
    P = max(len(ids) for ids in enc["input_ids"])
    L = max(len(t) for t in token_lists)
    K = max([1] + [len(ps) for al in alignments for ps in al.pieces])
    out = {"input_ids": np.full((B, P), pad_id, np.int64), "attention_mask": np.zeros((B, P), np.int64),
           "token_pieces": np.zeros((B, L, K), np.int64), "token_piece_mask": np.zeros((B, L, K), np.int64),
           "token_position": np.zeros((B, L), np.int64), "token_mask": np.zeros((B, L), np.int64)}
    for b, (ids, al) in enumerate(zip(enc["input_ids"], alignments)):
        out["input_ids"][b, :len(ids)] = ids
        out["attention_mask"][b, :len(ids)] = 1
        out["token_mask"][b, :len(al.pieces)] = 1
        out["token_position"][b, :len(al.position)] = np.minimum(al.position, MAX_POSITION_IN_PIECE - 1)
        for t, ps in enumerate(al.pieces):
            out["token_pieces"][b, t, :len(ps)] = ps
            out["token_piece_mask"][b, t, :len(ps)] = 1
    return out


# --------------------------------------------------------------------------------------------
# Cells -> spans
# --------------------------------------------------------------------------------------------


def conflict(s1: int, e1: int, s2: int, e2: int, flat: bool) -> bool:
    """Spans [s1, e1) and [s2, e2) cannot both be kept: they overlap (flat decoding) or cross
    (nested decoding, where one inside the other is allowed)."""
    overlap = s1 < e2 and s2 < e1
    if flat:
        return overlap
    nested = (s1 <= s2 and e2 <= e1) or (s2 <= s1 and e1 <= e2)
    return overlap and not nested


def greedy_spans(candidates: Iterable[tuple[int, int, str, float]], flat: bool
                 ) -> list[tuple[int, int, str, float]]:
    """Candidates (start, end exclusive, label, prob), given in cell order (start, then end),
    taken by falling probability (cell order among equals), each dropped if it conflicts with
    one already taken; sorted."""
    found: list[tuple[int, int, str, float]] = []
    for s, e, label, p in sorted(candidates, key=lambda c: -c[3]):
        if not any(conflict(s, e, a, b, flat) for a, b, _, _ in found):
            found.append((s, e, label, p))
    return sorted(found)


def decode_band(probs: np.ndarray, token_mask: np.ndarray, labels: Sequence[str], threshold: float,
                flat: bool) -> list[list[tuple[int, int, str, float]]]:
    """Spans per sentence from target probabilities [B, L, W, T] of the band cells."""
    out = []
    best, label = probs.max(-1), probs.argmax(-1)
    for b in range(probs.shape[0]):
        i, w = np.nonzero(best[b] > threshold)  # in (i, w) order: cell order
        n = int(token_mask[b].sum())
        cands = [(int(a), int(a + d + 1), labels[int(label[b, a, d])], float(best[b, a, d]))
                 for a, d in zip(i, w) if a + d < n]
        out.append(greedy_spans(cands, flat))
    return out


# --------------------------------------------------------------------------------------------
# The model (torch)
# --------------------------------------------------------------------------------------------


def _torch_model_classes():
    """Defined on first use, so that an onnx folder loads without torch."""
    import torch
    from torch import nn
    import torch.nn.functional as F

    class Features(nn.Module):
        """Band of span features [B, L, W, C]: biaffine + affine terms of head token i and tail
        token i + w, plus a term per span length (the names are those of knowfree.model)."""

        def __init__(self, hidden: int, c: int, heads: int, size_embedding: int, size_buckets: int):
            super().__init__()
            self.heads = heads
            self.head_mlp = nn.Sequential(nn.Identity(), nn.Linear(hidden, c), nn.LeakyReLU())
            self.tail_mlp = nn.Sequential(nn.Identity(), nn.Linear(hidden, c), nn.LeakyReLU())
            self.biaffine = nn.Parameter(torch.zeros(heads, c // heads, c // heads, c // heads))
            self.affine_head = nn.Linear(c, c)
            self.affine_tail = nn.Linear(c, c, bias=False)
            self.size_embedding = nn.Embedding(size_buckets, size_embedding)
            self.affine_size = nn.Linear(size_embedding, c, bias=False)

        def forward(self, x, width: int):
            B, L, _ = x.shape
            h, t = self.head_mlp(x), self.tail_mlp(x)
            c = h.shape[-1]
            k, d = self.heads, c // self.heads
            tail = torch.arange(L)[:, None] + torch.arange(width)[None, :]  # [L, W]: token i + w
            tail = tail.clamp(max=L - 1)  # cells past the end are masked by the caller
            # biaffine of head i and tail i + w per head: the head side is contracted with the
            # weight first ([B, L, k, d, d]), then with each of the band's W tails
            hw = torch.einsum("bikp,kpoq->bikoq", h.view(B, L, k, d), self.biaffine)
            tb = t[:, tail].view(B, L, width, k, d)
            bi = torch.einsum("bikoq,biwkq->biwko", hw, tb).reshape(B, L, width, c)
            size = torch.arange(width).clamp(max=self.size_embedding.num_embeddings - 1)
            per_size = self.affine_size(self.size_embedding.weight)[size]
            return bi + self.affine_head(h)[:, :, None] + self.affine_tail(t)[:, tail] + per_size

    class Attention(nn.Module):
        """Each cell (i, w) attends to cells (i, w + o), |o| <= window, of its own row that hold
        a span; LayerNorm of the result added back."""

        def __init__(self, c: int, heads: int, window: int):
            super().__init__()
            self.heads, self.window = heads, window
            self.qkv = nn.Linear(c, 3 * c)
            self.out = nn.Linear(c, c)
            self.norm = nn.LayerNorm(c)

        def forward(self, x, valid):
            B, L, W, c = x.shape
            n, w = self.heads, self.window
            q, k, v = self.qkv(x).view(B, L, W, 3, n, c // n).unbind(3)
            kp, vp = (F.pad(z, (0, 0, 0, 0, w, w)) for z in (k, v))
            ok = F.pad(valid, (w, w))
            scores = torch.stack([(q * kp[:, :, s:s + W]).sum(-1) for s in range(2 * w + 1)], -1)
            seen = torch.stack([ok[:, :, s:s + W] for s in range(2 * w + 1)], -1)[:, :, :, None]
            # a finite floor, not -inf: a cell outside the band has no valid neighbour, and its
            # softmax must stay a number (its output is masked) for the ONNX graph to be clean
            scores = (scores / (c // n) ** 0.5).masked_fill(~seen, torch.finfo(scores.dtype).min)
            p = scores.softmax(-1)
            ctx = sum(p[..., s, None] * vp[:, :, s:s + W] for s in range(2 * w + 1))
            return x + self.norm(self.out(ctx.reshape(B, L, W, c)))

    class Head(nn.Module):
        def __init__(self, hidden: int, cfg: dict, n_channels: int):
            super().__init__()
            c = cfg["channels"]
            self.features = Features(hidden, c, cfg["biaffine_heads"], cfg["size_embedding"],
                                     cfg["size_buckets"])
            self.attention = (Attention(c, cfg["attention_heads"], cfg["window"])
                              if cfg["local_attention"] else None)
            self.classifier = nn.Linear(c, n_channels)

    class SpanNet(nn.Module):
        """Encoder -> one vector per token (max over its pieces) -> band of span cells ->
        sigmoid probabilities of the target labels [B, L, W, T], 0 outside the band."""

        def __init__(self, backbone, cfg: dict, n_channels: int, n_targets: int):
            super().__init__()
            hidden = int(backbone.config.hidden_size)
            self.backbone, self.cfg, self.n_targets = backbone, cfg, n_targets
            self.position_in_piece = (nn.Embedding(MAX_POSITION_IN_PIECE, hidden)
                                      if cfg["piece_position"] else None)
            self.no_piece = nn.Parameter(torch.zeros(hidden))
            self.input_norm = nn.LayerNorm(hidden) if cfg["input_norm"] else nn.Identity()
            self.head = Head(hidden, cfg, n_channels)

        def forward(self, input_ids, attention_mask, token_pieces, token_piece_mask, token_position,
                    token_mask):
            hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            B, L, K = token_pieces.shape
            rows = torch.arange(B)[:, None, None].expand(B, L, K)
            has = token_piece_mask.bool()
            pooled = hidden[rows, token_pieces].masked_fill(~has[..., None], float("-inf")).amax(2)
            x = torch.where(has.any(2)[..., None], pooled, self.no_piece)
            if self.position_in_piece is not None:
                x = x + self.position_in_piece(token_position)
            tmask = token_mask.to(x.dtype)[..., None]
            x = self.input_norm(x * tmask) * tmask
            width = self.cfg["max_span_length"] or L
            cells = self.head.features(x, width)
            lengths = token_mask.sum(1)
            tail = torch.arange(L)[:, None] + torch.arange(width)[None, :]
            valid = tail[None] < lengths[:, None, None]  # [B, L, W]: token i + w is in the text
            if self.head.attention is not None:
                cells = self.head.attention(cells, valid)
            logits = self.head.classifier(cells)[..., :self.n_targets]
            return logits.sigmoid() * valid[..., None].to(logits.dtype)

    return SpanNet


# --------------------------------------------------------------------------------------------
# Loading an exported folder
# --------------------------------------------------------------------------------------------

INPUTS = ("input_ids", "attention_mask", "token_pieces", "token_piece_mask", "token_position",
          "token_mask")


class Exported:
    """An exported folder: ``predict(texts)`` and ``predict_tokens(token_lists)``."""

    def __init__(self, folder: str | Path, run: callable):
        folder = Path(folder)
        self.folder = folder
        self.card = json.loads((folder / "knowfree.json").read_text(encoding="utf-8"))
        if self.card.get("format") != FORMAT:
            raise ValueError(f"{folder}: knowfree.json format {self.card.get('format')!r}; this "
                             f"loader reads format {FORMAT}")
        self.tokenizer = load_tokenizer(folder / "tokenizer")
        self.labels = self.card["labels"]["targets"]
        self.lang = self.card["lang"]
        self._run = run

    def predict_tokens(self, token_lists: Sequence[Sequence[str]], batch_size: int = 16
                       ) -> list[list[tuple[int, int, str, float]]]:
        """Spans (start, end exclusive, label, prob) in tokens per token list."""
        m = self.card["model"]
        out: list = [[] for _ in token_lists]
        # similar lengths together: less padding; results do not depend on the batch
        order = sorted((i for i, t in enumerate(token_lists) if len(t)), key=lambda i: len(token_lists[i]))
        for a in range(0, len(order), batch_size):
            idx = order[a:a + batch_size]
            inputs = encode(self.tokenizer, [token_lists[i] for i in idx], self.lang,
                            self.card["encoder"]["max_pieces"], self.card["encoder"]["pad_id"])
            probs = self._run(inputs)
            for i, spans in zip(idx, decode_band(probs, inputs["token_mask"], self.labels,
                                                 m["threshold"], m["flat"])):
                out[i] = spans
        return out

    def predict(self, texts: Sequence[str], batch_size: int = 16) -> list[list[dict]]:
        """Spans per text: dicts start, end (character offsets, end exclusive), label, text, prob."""
        split = [split_text(t, self.lang) for t in texts]
        found = self.predict_tokens([tokens for tokens, _ in split], batch_size)
        results = []
        for text, (_, offsets), spans in zip(texts, split, found):
            results.append([{"start": offsets[s][0], "end": offsets[e - 1][1], "label": label,
                             "text": text[offsets[s][0]:offsets[e - 1][1]], "prob": p}
                            for s, e, label, p in spans])
        return results


def load_torch(folder: str | Path, device: str = "cpu"):
    """(SpanNet module, card) of an hf folder, in eval mode, float32."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoConfig, AutoModel

    folder = Path(folder)
    card = json.loads((folder / "knowfree.json").read_text(encoding="utf-8"))
    config = AutoConfig.from_pretrained(str(folder / "encoder"))
    extra = {"add_pooling_layer": False} if config.model_type in ("bert", "roberta", "xlm-roberta") else {}
    backbone = AutoModel.from_pretrained(str(folder / "encoder"), dtype=torch.float32,
                                         attn_implementation="eager", **extra)
    net = _torch_model_classes()(backbone, card["model"], len(card["labels"]["channels"]),
                                 len(card["labels"]["targets"]))
    missing, unexpected = net.load_state_dict(load_file(str(folder / "head.safetensors")), strict=False)
    missing = [k for k in missing if not k.startswith("backbone.")]
    if missing or unexpected:
        raise ValueError(f"{folder}/head.safetensors does not fit: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    return net.to(device).eval(), card


def load(folder: str | Path, device: str = "cpu", threads: int | None = None) -> Exported:
    """An exported folder, run by onnxruntime if it holds model.onnx, else by torch.
    ``threads``: onnxruntime's intra-op threads (None: its default, every core); torch takes
    its own setting (torch.set_num_threads)."""
    folder = Path(folder)
    if (folder / "model.onnx").is_file():
        import onnxruntime as ort

        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(folder / "model.onnx"), options,
                                       providers=["CPUExecutionProvider"])
        return Exported(folder, lambda inputs: session.run(["probs"], {k: inputs[k] for k in INPUTS})[0])
    import torch

    net, _ = load_torch(folder, device)

    def run(inputs):
        with torch.inference_mode():
            return net(*(torch.from_numpy(inputs[k]).to(device) for k in INPUTS)).float().cpu().numpy()
    return Exported(folder, run)
