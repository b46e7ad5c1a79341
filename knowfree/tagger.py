"""The `tagger` baseline: BIO token classification over the same encoder, with an optional
linear-chain CRF (``model.tagger_crf``). Nested gold is written longest first, so each token
gets one tag; decoding reads the BIO runs back into spans."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from knowfree.data.sample import Sample
from knowfree.data.schema import LabelSchema
from knowfree.model import ModelConfig, NerModel

class CRF(nn.Module):
    """Linear-chain CRF; sequences are left-aligned, ``mask`` true on their tokens."""

    def __init__(self, n_tags: int):
        super().__init__()
        self.transitions = nn.Parameter(torch.zeros(n_tags, n_tags))  # [from, to]
        self.start = nn.Parameter(torch.zeros(n_tags))
        self.end = nn.Parameter(torch.zeros(n_tags))

    def nll(self, emissions: torch.Tensor, tags: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood of ``tags`` per sequence, [B]."""
        last = tags.gather(1, (mask.sum(1, keepdim=True) - 1)).squeeze(1)
        gold = (self.start[tags[:, 0]] + self.end[last]
                + (emissions.gather(2, tags[..., None]).squeeze(2) * mask).sum(1)
                + (self.transitions[tags[:, :-1], tags[:, 1:]] * mask[:, 1:]).sum(1))
        alpha = self.start + emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            step = torch.logsumexp(alpha[:, :, None] + self.transitions + emissions[:, t, None], 1)
            alpha = torch.where(mask[:, t, None], step, alpha)
        return torch.logsumexp(alpha + self.end, 1) - gold

    def viterbi(self, emissions: torch.Tensor, mask: torch.Tensor) -> list[list[int]]:
        score, back = self.start + emissions[:, 0], []
        for t in range(1, emissions.shape[1]):
            best, arg = (score[:, :, None] + self.transitions).max(1)
            score = torch.where(mask[:, t, None], best + emissions[:, t], score)
            back.append(arg)
        score = score + self.end
        paths = []
        for b, n in enumerate(mask.sum(1).tolist()):
            tag = int(score[b].argmax())
            path = [tag]
            for t in range(n - 1, 0, -1):
                tag = int(back[t - 1][b, tag])
                path.append(tag)
            paths.append(path[::-1])
        return paths


class TaggerModel(NerModel):
    """Softmax (or CRF) BIO tagger over target labels; extension labels are ignored.

    Tags: 0 = O, 1 + 2t = B-target_t, 2 + 2t = I-target_t. Nested gold targets cannot be
    written in BIO: spans are written longest first and a span touching an already tagged
    token is left out. A decoded span's probability is the mean over its tokens of the
    softmax probability of the decoded tag (with the CRF, of the emission softmax: a
    confidence score, not a CRF marginal)."""

    def __init__(self, cfg: ModelConfig, schema: LabelSchema, encoder: nn.Module):
        super().__init__(cfg, schema, encoder, schema.n_targets)
        n_tags = 1 + 2 * schema.n_targets
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(encoder.hidden_size, n_tags)
        self.crf = CRF(n_tags) if cfg.tagger_crf else None

    def collate(self, samples: list[Sample]) -> dict:
        batch = super().collate(samples)
        tags = torch.zeros(len(batch["lengths"]), int(batch["lengths"].max()), dtype=torch.long)
        for b, s, e, c in sorted(batch["spans"].tolist(), key=lambda x: (x[0], x[1] - x[2], x[1])):
            if not tags[b, s:e + 1].any():
                tags[b, s], tags[b, s + 1:e + 1] = 1 + 2 * c, 2 + 2 * c
        batch["tags"] = tags
        return batch

    def forward(self, batch: dict) -> torch.Tensor:
        x = self._token_vectors(batch)[:, :batch["tags"].shape[1]]
        return self.classifier(self.dropout(x))

    def _mask(self, batch: dict) -> torch.Tensor:
        steps = torch.arange(batch["tags"].shape[1], device=batch["lengths"].device)
        return steps[None, :] < batch["lengths"][:, None]

    def loss_units(self, batch: dict) -> int:
        """What ``loss`` divides by: the batch's tokens."""
        return int(self._mask(batch).sum())

    def loss(self, batch: dict, logits: torch.Tensor) -> torch.Tensor:
        """sum over sentences of sample_weight * (token cross-entropies, or the CRF negative
        log-likelihood), divided by the number of tokens in the batch."""
        mask = self._mask(batch)
        if self.crf is not None:
            per_sentence = self.crf.nll(logits, batch["tags"], mask)
        else:
            ce = F.cross_entropy(logits.transpose(1, 2), batch["tags"], reduction="none")
            per_sentence = (ce * mask).sum(1)
        return (per_sentence * batch["weights"]).sum() / mask.sum()

    @torch.no_grad()
    def decode(self, batch: dict, logits: torch.Tensor) -> list[list[tuple[int, int, str, float]]]:
        mask = self._mask(batch)
        probs = logits.float().softmax(-1)
        if self.crf is not None:
            paths = self.crf.viterbi(logits.float(), mask)
        else:
            paths = [p[:n] for p, n in zip(probs.argmax(-1).tolist(), batch["lengths"].tolist())]
        out = []
        for b, path in enumerate(paths):
            p = probs[b, torch.arange(len(path)), torch.tensor(path)].tolist()
            out.append([(s, e, self.channel_names[c], sum(p[s:e]) / (e - s))
                        for s, e, c in bio_spans(path)])
        return out


def bio_spans(tags: list[int]) -> list[tuple[int, int, int]]:
    """(start, end exclusive, target) from tag ids; an I- tag that does not continue a span of
    its label opens one, as conlleval does."""
    spans, start, label = [], None, None
    for k, tag in enumerate(list(tags) + [0]):
        inside = tag > 0 and tag % 2 == 0
        tag_label = (tag - 1) // 2 if tag else None
        if start is not None and not (inside and tag_label == label):
            spans.append((start, k, label))
            start = None
        if tag and start is None:
            start, label = k, tag_label
    return spans
