"""Encoder backbones on Weibo: how often pieces hide entity boundaries, and what a sentence costs.

``pieces`` (tokenizers only, fast): over the gold entities of Weibo train, the share whose
start or end falls strictly inside one word piece. Without the position-in-piece embedding
such an entity's span gets exactly the same features as a neighbouring span (the characters
of one piece receive identical copies of its vector), so this share bounds the recall a span
head loses without it. Also: characters per piece and the share of characters that share
their piece with another character.

``speed``: seconds per sentence through ``TokenEncoder`` on the first N Weibo test sentences
(batch 8), forward only (eval, no grad) and forward+backward (train mode, gradient of the sum
of the token vectors), e5-small-offline against qwen2.5-0.5b-offline (each timed twice, the
median of the repeats is kept; the first batch of each model is a warm-up and not counted).
The Qwen part is skipped, and says so, when its GGUF file has not been assembled.

    KNOWFREE_DATA_MIRROR=../shared/datasets python benchmarks/encoder_bench.py [--sentences 32]

Writes ``results/benchmarks/encoder_pieces.csv``, ``encoder_speed.csv`` and ``encoder.md``.
"""
from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowfree.data.registry import load_dataset  # noqa: E402
from knowfree.backbones import QWEN_ALIAS, qwen_offline_path  # noqa: E402
from knowfree.e5 import E5_ALIAS  # noqa: E402
from knowfree.encoder import TokenEncoder  # noqa: E402

OUT = ROOT / "results" / "benchmarks"
BATCH = 8


def piece_stats(name: str, tokenizer, samples) -> dict:
    inside = entities = chars = shared = pieces = 0
    for s in samples:
        text = "".join(s.tokens)
        enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
        # the piece holding each character: the last one covering it, as TokenEncoder
        # counts (a lone prepended "▁" and the first half of a split character lose)
        holder = [None] * len(text)
        for a, b in enc["offset_mapping"]:
            for c in range(a, b):
                holder[c] = (a, b)
        starts = [0]
        for tok in s.tokens:
            starts.append(starts[-1] + len(tok))
        pieces += len(enc["input_ids"])
        chars += len(text)
        shared += sum(1 for h in holder if h is not None and h[1] - h[0] > 1)
        for span in s.targets():
            entities += 1
            a, b = starts[span.start], starts[span.end]
            first, last = holder[a], holder[b - 1]
            inside += (first is not None and first[0] < a) or (last is not None and last[1] > b)
    return {"tokenizer": name, "entities": entities, "boundary_inside_piece": inside,
            "boundary_inside_piece_pct": round(100 * inside / entities, 1),
            "chars_per_piece": round(chars / pieces, 3),
            "chars_sharing_a_piece_pct": round(100 * shared / chars, 1)}


def time_model(encoder: TokenEncoder, sentences: list[list[str]], repeats: int) -> dict:
    batches = [encoder.tokenize(sentences[i:i + BATCH]) for i in range(0, len(sentences), BATCH)]
    encoder.eval()
    with torch.no_grad():
        encoder(batches[0])  # warm-up
        fwd = []
        for _ in range(repeats):
            t = time.perf_counter()
            for b in batches:
                encoder(b)
            fwd.append((time.perf_counter() - t) / len(sentences))
    encoder.train()
    encoder(batches[0]).sum().backward()
    encoder.zero_grad(set_to_none=True)
    train = []
    for _ in range(repeats):
        t = time.perf_counter()
        for b in batches:
            encoder(b).sum().backward()
            encoder.zero_grad(set_to_none=True)
        train.append((time.perf_counter() - t) / len(sentences))
    with torch.no_grad():
        vectors = encoder.eval()(batches[0])[batches[0]["token_mask"]]
    return {"forward_s_per_sentence": round(statistics.median(fwd), 4),
            "forward_backward_s_per_sentence": round(statistics.median(train), 4),
            "parameters_M": round(sum(p.numel() for p in encoder.parameters()) / 1e6, 1),
            "hidden": encoder.hidden_size,
            "token_vector_abs_max": round(vectors.abs().max().item(), 1),
            "token_vector_rms": round(vectors.pow(2).mean().sqrt().item(), 3)}


def write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def markdown(rows: list[dict]) -> str:
    keys = list(rows[0])
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sentences", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    data = load_dataset("weibo")
    have_qwen = qwen_offline_path().is_file()

    piece_rows, speed_rows = [], []
    sentences = [s.tokens for s in data["test"][:args.sentences]]
    for name in [E5_ALIAS] + ([QWEN_ALIAS] if have_qwen else []):
        t = time.perf_counter()
        encoder = TokenEncoder(name)
        load_s = time.perf_counter() - t
        piece_rows.append(piece_stats(name, encoder.tokenizer, data["train"]))
        row = {"encoder": name, "load_s": round(load_s, 1)}
        row.update(time_model(encoder, sentences, args.repeats))
        speed_rows.append(row)
        print(row, flush=True)
        del encoder

    OUT.mkdir(parents=True, exist_ok=True)
    write_csv(OUT / "encoder_pieces.csv", piece_rows)
    write_csv(OUT / "encoder_speed.csv", speed_rows)
    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
               f"torch {torch.__version__}, torch threads: {args.threads}, load average "
               f"{os.getloadavg()[0]:.1f} at the end (the cores are shared), repeats: {args.repeats}")
    mean_chars = statistics.mean(len(s) for s in sentences)
    text = (f"# Encoder backbones on Weibo\n\nMachine: {machine}.\n\n"
            f"## Entity boundaries inside a word piece (Weibo train, gold entities)\n\n"
            f"{markdown(piece_rows)}\n\n"
            f"## Seconds per sentence (first {len(sentences)} Weibo test sentences, "
            f"{mean_chars:.0f} characters on average, batch {BATCH})\n\n{markdown(speed_rows)}\n")
    if not have_qwen:
        text += (f"\n{QWEN_ALIAS} skipped: {qwen_offline_path()} does not exist "
                 "(python -m knowfree llm assemble 0.5b).\n")
    (OUT / "encoder.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
