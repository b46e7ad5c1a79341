"""Shrink an encoder folder for shipping to a remote (GPU) machine that cannot download it.

    python scripts/pack_encoder.py e5-small-offline weibo OUT_DIR [--dataset youku ...]

multilingual-e5-small's word-embedding table holds 96M of its 117M parameters (250,037 rows),
and a corpus uses a few thousand of them. This writes a copy of the encoder folder in which
every row that no piece of the named datasets' splits needs is set to zero, so that the
folder compresses from ~470 MB to a few tens of MB (`tar -I zstd`). On those datasets the
copy computes exactly what the original computes: the script checks it on every sentence's
first window before it writes anything, and writes the kept piece ids and hashes of both
folders' weights into `knowfree_pack.json` so a result trained on the copy names what it ran.

Any other text may need a zeroed row: use the copy only for the datasets it was packed for.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from knowfree.data import registry
from knowfree.backbones import resolve_encoder
from knowfree.encoder import TokenEncoder
from knowfree.provenance import atomic_write_json, sha256_file

EMBEDDING_KEY_SUFFIX = "word_embeddings.weight"


def used_piece_ids(encoder: TokenEncoder, datasets: list[str]) -> tuple[set[int], int]:
    ids: set[int] = set(encoder.tokenizer.all_special_ids)
    sentences = 0
    for name in datasets:
        for split in registry.load_dataset(name).values():
            for s in split:
                for start, end in encoder.windows(s.tokens, s.lang):
                    enc = encoder.tokenize([s.tokens[start:end]], s.lang)
                    ids.update(enc["input_ids"][0].tolist())
                sentences += 1
    return ids, sentences


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("encoder", help="alias, hub id or folder of a BERT-style encoder")
    ap.add_argument("dataset", nargs="+", help="registered dataset names whose pieces to keep")
    ap.add_argument("--out", required=True, help="folder to write (must not exist)")
    args = ap.parse_args(argv)

    source = Path(resolve_encoder(args.encoder))
    out = Path(args.out)
    if out.exists():
        print(f"error: {out} exists; pick a new folder", file=sys.stderr)
        return 2
    encoder = TokenEncoder(args.encoder, piece_position=False).eval()
    keep, n_sentences = used_piece_ids(encoder, args.dataset)

    state = load_file(source / "model.safetensors")
    keys = [k for k in state if k.endswith(EMBEDDING_KEY_SUFFIX)]
    if len(keys) != 1:
        print(f"error: expected one {EMBEDDING_KEY_SUFFIX} in {source}, found {keys}",
              file=sys.stderr)
        return 2
    table = state[keys[0]]
    mask = torch.zeros(len(table), dtype=torch.bool)
    mask[sorted(keep)] = True
    state[keys[0]] = table * mask[:, None].to(table.dtype)

    # the check: the copy's backbone gives the same hidden states on sample sentences
    trimmed = TokenEncoder(args.encoder, piece_position=False).eval()
    trimmed.backbone.load_state_dict(
        {k.removeprefix(trimmed.backbone.base_model_prefix + "."): v for k, v in state.items()},
        strict=False)
    with torch.no_grad():
        for name in args.dataset:
            split = registry.load_dataset(name)["dev"][:64]
            enc = encoder.tokenize([s.tokens[:encoder.max_tokens_hint] for s in split],
                                   [s.lang for s in split])
            a = encoder._hidden(enc["input_ids"], enc["attention_mask"])
            b = trimmed._hidden(enc["input_ids"], enc["attention_mask"])
            if not torch.equal(a, b):
                print(f"error: the trimmed copy differs on {name} dev "
                      f"(max |diff| {float((a - b).abs().max()):.3g})", file=sys.stderr)
                return 1

    out.mkdir(parents=True)
    for f in source.iterdir():
        if f.name != "model.safetensors" and f.is_file():
            (out / f.name).write_bytes(f.read_bytes())
    save_file(state, str(out / "model.safetensors"), metadata={"format": "pt"})
    atomic_write_json(out / "knowfree_pack.json", {
        "source": args.encoder, "source_weights_sha256": sha256_file(source / "model.safetensors"),
        "weights_sha256": sha256_file(out / "model.safetensors"),
        "datasets": args.dataset, "sentences_scanned": n_sentences,
        "rows_kept": len(keep), "rows": len(table)})
    print(f"{out}: kept {len(keep)} of {len(table)} embedding rows "
          f"({n_sentences} sentences of {', '.join(args.dataset)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
