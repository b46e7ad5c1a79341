"""The KnowFREE span head written the plain way: the specification of what ``SpanHead`` computes.

``knowfree.model.SpanHead`` is fast: it works on packed span cells, splits the affine map into
per-token terms, runs the biaffine per sentence and the local attention as a band over packed
cells with a hand-written backward. This module computes the same function densely, over the
whole L x L grid of every sentence, the way a reader would write it from the paper (and the
way the authors' code computes it): it is the oracle of the parity tests
(``tests/test_model.py``) and the baseline of ``benchmarks/bench_head.py``. Never used in
training.

For a sentence with token vectors x_1..x_L (hidden H), C channels, K biaffine heads of d = C/K:

    h_i = LeakyReLU(W_h x_i + b_h),   t_j = LeakyReLU(W_t x_j + b_t)                  (C each)
    biaffine:  b_ij[k] = h_i[k]^T U_k t_j[k]        U_k: d x d x d, one d-vector per head
    affine:    a_ij = A [h_i; 1; t_j; 1; s(j - i)] + a   s: size embedding of the span length
    g_ij = b_ij + a_ij                                 (the span cell (i, j), i <= j < L)
    local attention over the row: cell (i, j) attends to the cells (i, j') with |j - j'| <= w
    that exist (i <= j' < L, and j' - i < max_width when a width is set), multi-head;
    g_ij <- g_ij + LayerNorm(O context_ij + o)
    logits_ij = classifier(g_ij)

Span lengths are bucketed as min(j - i, size_buckets - 1): only i <= j is ever a span. Dropout is
left out: compare with the fast head in eval mode (or with dropout 0).
"""
from __future__ import annotations

import math

import torch
from torch import nn


class DenseSpanHead(nn.Module):
    """Token vectors [B, L, H] and lengths [B] -> logits [B, L, L, labels] of every grid cell
    (cells outside i <= j < length are computed too; read only the valid ones)."""

    def __init__(self, hidden: int, channels: int, biaffine_heads: int, size_embedding: int,
                 size_buckets: int, n_labels: int, attention_heads: int | None = None, window: int = 3):
        super().__init__()
        c, k = channels, biaffine_heads
        self.k, self.attention_heads, self.window = k, attention_heads, window
        self.head_mlp = nn.Sequential(nn.Linear(hidden, c), nn.LeakyReLU())
        self.tail_mlp = nn.Sequential(nn.Linear(hidden, c), nn.LeakyReLU())
        self.biaffine = nn.Parameter(torch.randn(k, c // k, c // k, c // k) / (c // k))
        self.size_embedding = nn.Embedding(size_buckets, size_embedding)
        self.affine = nn.Linear(2 * c + 2 + size_embedding, c)  # over [h_i; 1; t_j; 1; s(j - i)]
        if attention_heads:
            self.qkv, self.out, self.norm = nn.Linear(c, 3 * c), nn.Linear(c, c), nn.LayerNorm(c)
        self.classifier = nn.Linear(c, n_labels)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor, max_width: int | None = None) -> torch.Tensor:
        b, n, _ = x.shape
        h, t = self.head_mlp(x), self.tail_mlp(x)
        c, k = h.shape[-1], self.k
        d = c // k
        # b_ij[k, o] = sum_pq h_i[k, p] U[k, p, o, q] t_j[k, q]
        bi = torch.einsum("bikp,kpoq,bjkq->bijko", h.view(b, n, k, d), self.biaffine,
                          t.view(b, n, k, d)).reshape(b, n, n, c)
        pos = torch.arange(n, device=x.device)
        size = self.size_embedding((pos[None, :] - pos[:, None]).clamp(0, self.size_embedding.num_embeddings - 1))
        one = h.new_ones(b, n, n, 1)
        cat = torch.cat([h[:, :, None].expand(b, n, n, c), one, t[:, None].expand(b, n, n, c), one,
                         size.expand(b, n, n, -1)], -1)
        grid = bi + self.affine(cat)
        if self.attention_heads:
            grid = grid + self.norm(self.out(self.attend(grid, lengths, max_width)))
        return self.classifier(grid)

    def attend(self, grid: torch.Tensor, lengths: torch.Tensor, max_width: int | None) -> torch.Tensor:
        """Multi-head attention of every cell (i, j) over its row's cells (i, j'), masked to the
        band |j - j'| <= w and to the cells that exist; [B, L, L, C] -> context [B, L, L, C]."""
        b, n, _, c = grid.shape
        heads = self.attention_heads
        q, k, v = self.qkv(grid).view(b, n, n, 3, heads, c // heads).unbind(3)
        scores = torch.einsum("bijhd,bikhd->bihjk", q, k) / math.sqrt(c // heads)
        pos = torch.arange(n, device=grid.device)
        band = (pos[:, None] - pos[None, :]).abs() <= self.window                        # [j, j']
        width = n if max_width is None else max_width
        exists = ((pos[None, None, :] >= pos[None, :, None]) & (pos[None, None, :] < lengths[:, None, None])
                  & (pos[None, None, :] - pos[None, :, None] < width))                     # [b, i, j']
        mask = band[None, None] & exists[:, :, None, :]                                    # [b, i, j, j']
        p = scores.masked_fill(~mask[:, :, None], -math.inf).softmax(-1).nan_to_num(0.0)  # rows of no cell
        return torch.einsum("bihjk,bikhd->bijhd", p, v).reshape(b, n, n, c)

    @classmethod
    def from_fast(cls, head: nn.Module) -> "DenseSpanHead":
        """A reference holding the same weights as ``knowfree.model.SpanHead`` ``head`` (the
        ``knowfree`` head with or without local attention; ``cnn`` refines with convolutions
        over the dense grid already). Its affine map is the fast head's three terms joined
        into one matrix over the concatenation; the two constant-1 columns get weight 0 (the
        bias already plays their part)."""
        f, att = head.features, head.attention
        if head.conv is not None:
            raise ValueError("the cnn head has no dense reference here: it runs on the dense grid itself")
        c, s = f.affine_head.out_features, f.size_embedding.embedding_dim
        ref = cls(f.head_mlp[1].in_features, c, f.heads, s, f.size_embedding.num_embeddings,
                  head.classifier.out_features, att.heads if att is not None else None,
                  att.window if att is not None else 3).to(f.biaffine.dtype)
        with torch.no_grad():
            ref.head_mlp[0].load_state_dict(f.head_mlp[1].state_dict())
            ref.tail_mlp[0].load_state_dict(f.tail_mlp[1].state_dict())
            ref.biaffine.copy_(f.biaffine)
            ref.size_embedding.load_state_dict(f.size_embedding.state_dict())
            zero = f.affine_head.weight.new_zeros(c, 1)
            ref.affine.weight.copy_(torch.cat([f.affine_head.weight, zero, f.affine_tail.weight, zero,
                                               f.affine_size.weight], 1))
            ref.affine.bias.copy_(f.affine_head.bias)
            if att is not None:
                for name in ("qkv", "out", "norm"):
                    getattr(ref, name).load_state_dict(getattr(att, name).state_dict())
            ref.classifier.load_state_dict(head.classifier.state_dict())
        return ref


def cell_logits(ref: DenseSpanHead, x: torch.Tensor, lengths: torch.Tensor, cells: torch.Tensor,
                max_width: int | None = None) -> torch.Tensor:
    """The reference's logits at packed ``cells`` [N, 3] of (sample, i, j): the fast head's output layout."""
    b, i, j = cells.unbind(1)
    return ref(x, lengths, max_width)[b, i, j]

