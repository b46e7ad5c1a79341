"""The KnowFREE span model, the `cnn` baseline, and the batch format every model shares (the
`tagger` baseline, a token classifier with an optional CRF, lives in knowfree/tagger.py).

Every model built by ``build_model`` offers the same interface to the trainer and predictor:

- ``collate(samples) -> batch``: encoder inputs, ``lengths`` [B], ``spans`` [S, 4] rows of
  (batch, start, end inclusive, channel), ``weights`` [B] per-sample loss weights; span models
  add ``cells`` [N, 3] and ``cell_offsets`` [B + 1], the tagger adds ``tags`` [B, L].
  Labels stay sparse here: dense targets are built per batch inside ``loss``.
- ``forward(batch) -> logits``: span models return [N, channels], one row per *valid* span
  cell (b, i, j) with i <= j < length, in the order of ``cells`` (sample, start, end). The
  lower triangle and padding are never computed, so they can never leak into loss or output.
  The tagger returns [B, L, tags].
- ``loss(batch, logits) -> scalar``: see ``SpanModel.loss`` / ``TaggerModel.loss``. Both use
  one normalisation rule: the sum over valid units (span cells, or tokens for the tagger) of
  the label-weighted loss times the unit's sample weight, divided by the number of valid
  units in the batch. A padded batch therefore equals its samples computed alone and
  combined as sum_b n_b * w_b * loss_b / sum_b n_b (n_b: units of sample b, loss_b: its loss
  alone with weight 1); a sample of weight 0 adds nothing to the numerator.
- ``decode(batch, logits) -> [[(start, end_exclusive, label, prob), ...] per sample]``,
  sorted by position; extension channels never take part.
- ``param_groups(encoder_lr, head_lr, weight_decay)`` for ``torch.optim.AdamW``.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from knowfree.data.sample import Sample, is_extension
from knowfree.config import ModelConfig  # the head settings, typed with every other config key
from knowfree.data.schema import LabelSchema
from knowfree.errors import ConfigError
from knowfree.portable import greedy_spans


def build_model(cfg: ModelConfig, schema: LabelSchema, encoder: nn.Module | None = None) -> "NerModel":
    """The model ``cfg.head`` names; ``encoder`` (a TokenEncoder-like module) overrides ``cfg.encoder``."""
    if schema.n_targets == 0:
        raise ConfigError("the label schema has no target labels")
    if encoder is None:
        from knowfree.encoder import TokenEncoder
        encoder = TokenEncoder(cfg.encoder, piece_position=cfg.piece_position,
                               attention=cfg.encoder_attention)
    if cfg.freeze_embeddings or cfg.freeze_layers:
        encoder.freeze(embeddings=cfg.freeze_embeddings, layers=cfg.freeze_layers)
    if cfg.head == "tagger":
        from knowfree.tagger import TaggerModel  # the baseline subclasses NerModel from here
        return TaggerModel(cfg, schema, encoder)
    return SpanModel(cfg, schema, encoder)


def move_batch(batch: dict, device) -> dict:
    """The batch with every tensor (also inside the encoder inputs) on ``device``."""
    return {k: move_batch(v, device) if isinstance(v, dict)
            else v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}


# --- span features shared by the KnowFREE and CNN heads --------------------------------------

class SpanFeatures(nn.Module):
    """Token vectors [B, L, H] -> C-channel features of span cells (i, j) = tokens i..j.

    Biaffine: per head k, head_i^k W_k tail_j^k with head_i^k multiplied into W_k once per
    token, so each cell costs one (C/K x C/K) product per head. Affine: the map of
    [head_i; 1; tail_j; 1; size(j - i)] is split into per-token terms W_h head_i + b and
    W_t tail_j and a per-length term W_s size, added per cell, instead of a Linear
    over a 2C + 27 wide concatenation built for every cell.
    Lengths are bucketed as min(j - i, size_buckets - 1): only j >= i is ever used, so the
    authors' signed buckets for j < i would be dead weights.
    """

    def __init__(self, hidden: int, cfg: ModelConfig):
        super().__init__()
        c, k = cfg.channels, cfg.biaffine_heads
        self.heads = k
        self.head_mlp = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(hidden, c), nn.LeakyReLU())
        self.tail_mlp = nn.Sequential(nn.Dropout(cfg.dropout), nn.Linear(hidden, c), nn.LeakyReLU())
        self.biaffine = nn.Parameter(torch.randn(k, c // k, c // k, c // k) / (c // k))
        self.affine_head = nn.Linear(c, c)
        self.affine_tail = nn.Linear(c, c, bias=False)
        self.size_embedding = nn.Embedding(cfg.size_buckets, cfg.size_embedding)
        self.affine_size = nn.Linear(cfg.size_embedding, c, bias=False)

    def forward(self, x: torch.Tensor, cells: torch.Tensor | None = None) -> torch.Tensor:
        """Features of the packed ``cells`` [N, 3] -> [N, C], or of the whole grid if None."""
        terms = self.token_terms(x)
        if cells is None:
            h, t, per_head, per_tail, per_size = terms
            b, n, c = h.shape
            pos = torch.arange(n, device=x.device)
            size = (pos[None, :] - pos[:, None]).clamp(0, self.size_embedding.num_embeddings - 1)
            return (self._biaffine(h, t).reshape(b, n, n, c) + per_head[:, :, None]
                    + per_tail[:, None, :] + per_size[size])
        out = [self.sentence(terms, sent, cells[a:z, 1], cells[a:z, 2])
               for sent, a, z in _sentence_blocks(cells[:, 0])]
        return torch.cat(out) if out else x.new_zeros(0, self.affine_head.out_features)

    def token_terms(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """What ``sentence`` needs, computed once per batch: head and tail vectors [B, L, C],
        their affine terms [B, L, C] and the per-length term [size_buckets, C]."""
        h, t = self.head_mlp(x), self.tail_mlp(x)
        per_size = self.affine_size(self.size_embedding.weight)
        return h, t, self.affine_head(h), self.affine_tail(t), per_size

    def sentence(self, terms: tuple[torch.Tensor, ...], sent: int, i: torch.Tensor,
                 j: torch.Tensor) -> torch.Tensor:
        """Features [n, C] of cells (i, j) of sample ``sent``. The biaffine runs on the
        sentence's own grid: the batch's padded L x L grid made it work on padding, and its
        [B, L, L, C] result far outgrew the caches."""
        h, t, per_head, per_tail, per_size = terms
        m = int(j.max()) + 1  # i <= j: the grid these cells need
        bi = self._biaffine(h[sent:sent + 1, :m], t[sent:sent + 1, :m])[0]
        # gathering from the einsum's strided result skips a copy of the whole grid
        f = bi[i, j].flatten(1)
        top = self.size_embedding.num_embeddings - 1
        return f.add_(per_head[sent, i]).add_(per_tail[sent, j]).add_(per_size[(j - i).clamp(max=top)])

    def _biaffine(self, h: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """[B, n, C] head and tail vectors -> [B, n, n, heads, C / heads], a strided view.

        The tail side is contracted first, so the product comes out as [B, heads, i, j, C /
        heads]: a cell's channels lie in ``heads`` contiguous runs, which makes the gather of
        the cells cheap (2.4x faster than the head side first at n = 120, where each channel
        lay n floats from the next)."""
        b, n, c = h.shape
        k, d = self.heads, c // self.heads
        tw = torch.einsum("bjkq,kpoq->bkpjo", t.view(b, n, k, d), self.biaffine)
        bi = torch.einsum("bikp,bkpjo->bkijo", h.view(b, n, k, d), tw)
        return bi.permute(0, 2, 3, 1, 4)


def _sentence_blocks(sample: torch.Tensor) -> list[tuple[int, int, int]]:
    """(sample, a, b): cells [a, b) of the packed, sample-ordered cells belong to ``sample``."""
    ids, counts = torch.unique_consecutive(sample, return_counts=True)
    ends = counts.cumsum(0).tolist()
    return [(s, e - n, e) for s, n, e in zip(ids.tolist(), counts.tolist(), ends)]


class BandedAttention(nn.Module):
    """Each span cell (i, j) attends to the cells (i, j') of its own row with |j - j'| <= w;
    the result goes through LayerNorm and is added back to the input.

    Input cells come packed and ordered by (sample, i, j), so cell m's neighbours are cells
    m - w .. m + w wherever they share its row (``row`` = sample * L + i): band edges, row ends
    and padding are all the same "different row" mask. Memory O(N * (d + heads * w)): no
    per-row L x L matrix, no [N, 2w+1, d] neighbour copy (see ``_BandedCore``).

    Rows never attend across rows, so the cells are processed in blocks of whole rows of
    about ``block_cells`` cells: the same result, but each block's q, k, v and intermediates
    (a few MB) stay in cache, where the whole batch at once streamed them through memory.
    Together with span features per sentence (``SpanHead.forward``) the head took 5.1 instead
    of 10.6 CPU-s on the Weibo test set (benchmarks/bench_inference.py, 1 thread, batch 8).
    It also bounds the q, k, v that the backward recomputes.
    """

    def __init__(self, channels: int, heads: int, window: int, block_cells: int = 2048):
        super().__init__()
        self.heads, self.window, self.block_cells = heads, window, block_cells
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)
        self.norm = nn.LayerNorm(channels)

    def forward(self, x: torch.Tensor, row: torch.Tensor) -> torch.Tensor:
        compute = (torch.get_autocast_dtype(x.device.type)
                   if torch.is_autocast_enabled(x.device.type) else x.dtype)
        out = []
        for a, b in _row_blocks(row, self.block_cells):
            context = _BandedCore.apply(x[a:b], self.qkv.weight, self.qkv.bias, row[a:b],
                                        self.heads, self.window, compute)
            out.append(x[a:b] + self.norm(self.out(context)))
        return torch.cat(out) if len(out) > 1 else out[0]


def _band_ranges(n: int, w: int) -> list[tuple[int, int, int, int]]:
    """(slot, offset, lo, hi): cell m meets its neighbour m + offset for m in [lo, hi)."""
    out = []
    for slot, o in enumerate(range(-w, w + 1)):
        lo = min(n, max(0, -o))
        out.append((slot, o, lo, max(lo, n - max(0, o))))
    return out


class _BandedCore(torch.autograd.Function):
    """Banded multi-head attention of packed cells, q, k, v = x W^T + b projected inside.

    Scores and mixtures run one neighbour offset at a time on slices of q, k, v. The backward
    is written by hand because autograd would keep q, k, v (3 x [N, C]) alive and then hold
    them, their gradients and a stacked copy of those at once: the head's memory peak. Here
    only x and the [N, heads, 2w+1] probabilities are kept; the backward recomputes q, k, v
    (the caller hands over one block of rows at a time, so that stays small) and projects
    their gradients straight onto x. Measured at L = 256, before the rows were blocked: peak
    0.67 instead of 1.2 GiB for about 8 % more head time (benchmarks/bench_head.py).
    """

    @staticmethod
    def forward(ctx, x, weight, bias, row, heads, window, compute):
        # ``compute``: dtype of the two projections (bf16 under autocast). Scores, softmax and
        # mixtures run in fp32 whatever it is: they are elementwise work, no faster in bf16 on
        # a CPU, and a 7-wide softmax is where bf16 rounding would hurt.
        n, c = x.shape
        work = torch.promote_types(compute, torch.float32)
        qkv = F.linear(x.to(compute), weight.to(compute), bias.to(compute)).to(work)
        q, k, v = qkv.view(n, 3, heads, c // heads).unbind(1)
        scale = 1 / math.sqrt(c // heads)
        ranges = _band_ranges(n, window)
        scores = q.new_zeros(n, heads, 2 * window + 1)
        for slot, o, lo, hi in ranges:
            scores[lo:hi, :, slot] = (q[lo:hi] * k[lo + o:hi + o]).sum(-1)
        same_row = F.pad(row, (window, window), value=-1).unfold(0, 2 * window + 1, 1) == row[:, None]
        scores = (scores * scale).masked_fill_(~same_row[:, None, :], -math.inf)
        # softmax written out: F.softmax over a last axis only 2w+1 = 7 wide does not
        # vectorise and took 5x as long (53 vs 11 ms on [40000, 10, 7]). The max is finite:
        # a cell is always in its own row.
        p = (scores - scores.amax(-1, keepdim=True)).exp_()
        p /= p.sum(-1, keepdim=True)
        out = torch.zeros_like(q)
        for slot, o, lo, hi in ranges:
            out[lo:hi].addcmul_(p[lo:hi, :, slot, None], v[lo + o:hi + o])
        ctx.save_for_backward(x, weight, bias, p)
        ctx.window, ctx.scale, ctx.compute, ctx.work = window, scale, compute, work
        return out.reshape(n, c)

    @staticmethod
    def backward(ctx, grad_out):
        x, weight, bias, p = ctx.saved_tensors
        n, c = x.shape
        heads = p.shape[1]
        g = grad_out.to(ctx.work).reshape(n, heads, c // heads)
        xc, wc = x.to(ctx.compute), weight.to(ctx.compute)
        q, k, v = F.linear(xc, wc, bias.to(ctx.compute)).to(ctx.work).view(n, 3, heads, c // heads).unbind(1)
        ranges = _band_ranges(n, ctx.window)
        grad_p, grad_v = torch.zeros_like(p), torch.zeros_like(v)
        for slot, o, lo, hi in ranges:
            grad_p[lo:hi, :, slot] = (g[lo:hi] * v[lo + o:hi + o]).sum(-1)
            grad_v[lo + o:hi + o].addcmul_(p[lo:hi, :, slot, None], g[lo:hi])
        grad_s = p * (grad_p - (grad_p * p).sum(-1, keepdim=True)) * ctx.scale
        grad_q, grad_k = torch.zeros_like(q), torch.zeros_like(k)
        for slot, o, lo, hi in ranges:
            grad_q[lo:hi].addcmul_(grad_s[lo:hi, :, slot, None], k[lo + o:hi + o])
            grad_k[lo + o:hi + o].addcmul_(grad_s[lo:hi, :, slot, None], q[lo:hi])
        grad_qkv = torch.stack([grad_q, grad_k, grad_v], 1).reshape(n, 3 * c)
        gc = grad_qkv.to(ctx.compute)
        return ((gc @ wc).to(x.dtype), (gc.t() @ xc).to(weight.dtype), grad_qkv.sum(0).to(bias.dtype),
                None, None, None, None)


def _row_blocks(row: torch.Tensor, size: int) -> list[tuple[int, int]]:
    """[a, b) ranges of about ``size`` cells that start and end on row boundaries."""
    starts = torch.cat([row.new_zeros(1), torch.nonzero(row[1:] != row[:-1]).squeeze(1) + 1])
    wanted = torch.arange(0, len(row), size, device=row.device)
    cuts = starts[torch.searchsorted(starts, wanted, right=True) - 1].unique().tolist()
    return list(zip(cuts, cuts[1:] + [len(row)]))


class MaskedConv(nn.Module):
    """CNN-Nested-NER refinement: 3x3 convolutions over the span grid, added back as a residual.

    Cells outside i <= j < length are zeroed before every convolution, so what a valid cell
    sees does not depend on padding (batching) or on the never-trained lower triangle."""

    def __init__(self, channels: int, layers: int):
        super().__init__()
        self.norms = nn.ModuleList(nn.LayerNorm(channels) for _ in range(layers))
        self.convs = nn.ModuleList(nn.Conv2d(channels, channels, 3, padding=1) for _ in range(layers))

    def forward(self, grid: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        y = grid
        for norm, conv in zip(self.norms, self.convs):
            y = F.gelu(norm(y)) * valid[..., None]
            y = conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return grid + y


class SpanHead(nn.Module):
    """Token vectors + packed cells -> logits [N, labels]; refinement by banded attention
    (``knowfree``), masked convolutions (``cnn``) or nothing (``knowfree`` without attention).
    ``knowfree/reference.py`` writes the same function out densely: it is the specification
    (``DenseSpanHead.from_fast(head)`` holds this head's weights; tests compare the two)."""

    def __init__(self, hidden: int, cfg: ModelConfig, n_labels: int):
        super().__init__()
        self.features = SpanFeatures(hidden, cfg)
        self.attention = (BandedAttention(cfg.channels, cfg.attention_heads, cfg.window)
                          if cfg.head == "knowfree" and cfg.local_attention else None)
        self.conv = MaskedConv(cfg.channels, cfg.cnn_layers) if cfg.head == "cnn" else None
        self.classifier = nn.Linear(cfg.channels, n_labels)
        # about the attention's row block: big enough that per-op overhead stays small,
        # small enough ([2048, 200] fp32 = 1.6 MB per tensor) to stay in cache
        self.chunk_cells = 2048

    def forward(self, x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        b, i, j = cells.unbind(1)
        if self.conv is not None:
            grid = self.features(x)
            valid = torch.zeros(grid.shape[:3], dtype=grid.dtype, device=grid.device)
            valid[b, i, j] = 1
            return self.classifier(self.conv(grid, valid)[b, i, j])
        # Chunk by chunk of whole sentences (a long sentence is a chunk of its own, which the
        # attention splits further into blocks of rows): features, attention and classifier
        # of a chunk run while its [cells, C] tensors are still in cache, and only the
        # narrow logits are concatenated. The same result as the whole batch at once.
        if len(cells) == 0:
            return self.classifier(x.new_zeros(0, self.classifier.in_features))
        terms = self.features.token_terms(x)
        row = b * x.shape[1] + i
        logits, pending, start = [], [], 0
        for sent, a, z in _sentence_blocks(b):
            pending.append(self.features.sentence(terms, sent, i[a:z], j[a:z]))
            if z - start >= self.chunk_cells or z == len(cells):
                feats = torch.cat(pending) if len(pending) > 1 else pending[0]
                if self.attention is not None:
                    feats = self.attention(feats, row[start:z])
                logits.append(self.classifier(feats))
                pending, start = [], z
        return torch.cat(logits) if len(logits) > 1 else logits[0]


# --- models -----------------------------------------------------------------------------------

class NerModel(nn.Module):
    """What every head shares: the encoder, the label channels, collation, optimiser groups."""

    def __init__(self, cfg: ModelConfig, schema: LabelSchema, encoder: nn.Module, n_channels: int):
        super().__init__()
        self.config, self.schema, self.encoder = cfg, schema, encoder
        self.channel_names = schema.names[:n_channels]
        self._channel = {name: c for c, name in enumerate(self.channel_names)}
        self.input_norm = nn.LayerNorm(encoder.hidden_size) if cfg.input_norm else nn.Identity()

    def collate(self, samples: list[Sample]) -> dict:
        samples = list(samples)
        if not samples:
            raise ValueError("collate needs at least one sample")
        for s in samples:
            if not s.tokens:
                raise ValueError(f"sample {s.id!r} has no tokens; drop empty sentences before batching")
            s.check()
        spans = []
        for b, s in enumerate(samples):
            for sp in s.spans:
                channel = self._channel.get(sp.label)
                if channel is not None:
                    spans.append((b, sp.start, sp.end - 1, channel))
                elif not is_extension(sp.label):
                    self.schema.index(sp.label)  # raises InputError naming the known labels
                # an extension label without a channel (extensions off, or unseen in training)
                # only ever fed the loss, so it is simply not used
        return {
            "enc": self.encoder.tokenize([s.tokens for s in samples], lang=[s.lang for s in samples]),
            "lengths": torch.tensor([len(s) for s in samples]),
            "spans": torch.tensor(spans, dtype=torch.long).reshape(-1, 4),
            "weights": torch.tensor([s.weight for s in samples], dtype=torch.float),
        }

    def param_groups(self, encoder_lr: float, head_lr: float, weight_decay: float) -> list[dict]:
        """AdamW groups. ``encoder_lr`` reaches the pretrained backbone only; the head and the
        encoder's freshly initialised add-ons (e.g. its position-in-piece embedding) take
        ``head_lr``. Decay only on weight matrices (ndim >= 2), never on biases, norms or
        embedding tables."""
        backbone = getattr(self.encoder, "backbone", self.encoder)
        pretrained = {id(p) for p in backbone.parameters()}
        embeddings = {id(p) for m in self.modules() if isinstance(m, nn.Embedding)
                      for p in m.parameters(recurse=False)}
        groups: dict[tuple[str, bool], list] = {}
        for p in self.parameters():
            if p.requires_grad:
                part = "encoder" if id(p) in pretrained else "head"
                decay = p.ndim >= 2 and id(p) not in embeddings
                groups.setdefault((part, decay), []).append(p)
        return [{"name": f"{part}.{'decay' if decay else 'no_decay'}", "params": params,
                 "lr": encoder_lr if part == "encoder" else head_lr,
                 "weight_decay": weight_decay if decay else 0.0}
                for (part, decay), params in sorted(groups.items())]

    def _token_vectors(self, batch: dict) -> torch.Tensor:
        x = self.encoder(batch["enc"])
        if x.shape[1] < int(batch["lengths"].max()):
            raise RuntimeError(f"encoder returned {x.shape[1]} token vectors for sentences of "
                               f"up to {int(batch['lengths'].max())} tokens")
        # padding rows stay zero, as the encoder returns them
        mask = batch["enc"]["token_mask"].to(x.device)[..., None]
        return self.input_norm(x) * mask


def span_cells(lengths: torch.Tensor, max_width: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Every valid cell (b, i, j), i <= j < lengths[b] and j - i < max_width (None: no limit),
    ordered by b, i, j; and where each sample's block of cells starts (offsets [B + 1])."""
    cells, counts = [], []
    for b, n in enumerate(lengths.tolist()):
        i, j = torch.triu_indices(n, n)
        if max_width is not None:
            keep = j - i < max_width
            i, j = i[keep], j[keep]
        cells.append(torch.stack([torch.full_like(i, b), i, j], 1))
        counts.append(len(i))
    offsets = F.pad(torch.tensor(counts).cumsum(0), (1, 0))
    return torch.cat(cells), offsets


def row_offsets(lengths: torch.Tensor, max_width: int | None = None) -> torch.Tensor:
    """[B, L]: index in the packed cells of ``span_cells`` where row (b, i) starts."""
    n = int(lengths.max())
    i = torch.arange(n)
    width = (lengths[:, None] - i[None, :]).clamp(min=0)  # cells of row i: j = i .. n-1
    if max_width is not None:
        width = width.clamp(max=max_width)
    starts = F.pad(width.flatten().cumsum(0), (1, 0))[:-1].view(len(lengths), n)
    return starts


class SpanModel(NerModel):
    """KnowFREE (``head="knowfree"``) and CNN-Nested-NER (``head="cnn"``) span classifiers:
    one sigmoid logit per cell and label, target labels then (if used) extension labels."""

    def __init__(self, cfg: ModelConfig, schema: LabelSchema, encoder: nn.Module):
        n_channels = len(schema) if cfg.use_extensions else schema.n_targets
        super().__init__(cfg, schema, encoder, n_channels)
        self.head = SpanHead(encoder.hidden_size, cfg, n_channels)
        self.register_buffer("label_weights", torch.tensor(schema.weights()[:n_channels]),
                             persistent=False)

    def collate(self, samples: list[Sample]) -> dict:
        batch = super().collate(samples)
        width = self.config.max_span_length
        if width is not None:
            # spans longer than the widest cell cannot be learnt: left out here, counted by the
            # trainer for every split (data.json), never silently
            keep = batch["spans"][:, 2] - batch["spans"][:, 1] < width
            batch["spans"] = batch["spans"][keep]
        batch["cells"], batch["cell_offsets"] = span_cells(batch["lengths"], width)
        batch["row_offsets"] = row_offsets(batch["lengths"], width)
        return batch

    def forward(self, batch: dict) -> torch.Tensor:
        return self.head(self._token_vectors(batch), batch["cells"])

    def loss_units(self, batch: dict) -> int:
        """What ``loss`` divides by: the batch's valid cells."""
        return len(batch["cells"])

    def loss(self, batch: dict, logits: torch.Tensor) -> torch.Tensor:
        """sum over valid cells and labels of label_weight * BCE * sample_weight, divided by
        the number of valid cells in the batch."""
        # the batch's dense label grid, packed like the logits: cell (b, i, j) sits j - i cells
        # after the start of its row (b, i)
        target = torch.zeros_like(logits)
        b, i, j, c = batch["spans"].unbind(1)
        target[batch["row_offsets"][b, i] + j - i, c] = 1.0
        bce = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
        per_cell = (bce * self.label_weights).sum(1) * batch["weights"][batch["cells"][:, 0]]
        return per_cell.sum() / max(len(logits), 1)

    @torch.no_grad()
    def decode(self, batch: dict, logits: torch.Tensor) -> list[list[tuple[int, int, str, float]]]:
        """Cells whose best target probability exceeds the threshold, labelled by that target;
        taken by falling probability, dropping spans that overlap (flat) or cross (nested) a
        span already taken."""
        prob, label = logits[:, :self.schema.n_targets].float().sigmoid().max(1)
        keep = (prob > self.config.threshold).nonzero().squeeze(1)
        candidates: list[list] = [[] for _ in range(len(batch["lengths"]))]
        for (b, i, j), c, p in zip(batch["cells"][keep].tolist(), label[keep].tolist(), prob[keep].tolist()):
            candidates[b].append((i, j + 1, self.channel_names[c], p))
        # the rule every exported model applies too (knowfree/portable.py)
        return [greedy_spans(c, self.config.flat) for c in candidates]
