"""Export a trained run into a folder that loads without this repository's training code.

    python -m knowfree export RUN_DIR OUT --format hf     # torch + transformers
    python -m knowfree export RUN_DIR OUT --format onnx   # onnxruntime + tokenizers, no torch

Both folders hold ``knowfree_model.py`` (the loader, knowfree/portable.py verbatim), the
tokenizer, ``knowfree.json`` (labels, head settings, provenance and scores of the run) and a
``README.md`` card. ``hf`` adds the encoder as a Hugging Face folder (``encoder/``, all weights in
float32, the frozen ones included) and the head's weights (``head.safetensors``); ``onnx`` adds one
graph of encoder + span head with dynamic batch and length (``model.onnx``) instead. The export
checks itself before it lands: the folder, loaded by its own loader, must give the same spans as
the run's Predictor on the checking sentences, with probabilities within ``TOLERANCE``.

Only the KnowFREE span head on an encoder (BERT-like) backbone is exported; the cnn and tagger
baselines and decoder-only backbones are refused with a message.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from knowfree import portable
from knowfree.backbones import quiet_transformers
from knowfree.errors import ConfigError, InputError, path_given
from knowfree.provenance import git_commit, guard_outputs, install_folder, sha256_file

FORMATS = ("hf", "onnx")
# largest |difference| of a target probability between the exported folder and the run, fp32
TOLERANCE = 1e-4
CHECK_TEXTS = {
    "zh": ["北京大学的学生在阿里巴巴工作。", "我爱北京天安门，天安门上太阳升。", "张三和李四去了上海。"],
    "ja": ["東京都に住んでいる田中さんはソニーで働いています。"],
    "ko": ["서울대학교 학생이 삼성전자에서 일한다."],
    "en": ["The quick brown fox jumps over the lazy dog in New York."],
}
ONNX_OPSET = 18


def _refuse_unexportable(model, run_dir: Path) -> None:
    cfg = model.config
    if cfg.head != "knowfree":
        raise ConfigError(f"{run_dir} was trained with model.head={cfg.head!r}; export writes the "
                          "KnowFREE span head only (use `python -m knowfree predict` for the "
                          "cnn and tagger baselines)")
    if model.encoder.decoder_only:
        raise ConfigError(f"{run_dir} runs on the decoder-only backbone {model.encoder.name!r}; "
                          "export supports encoder (BERT-like) backbones only")


def head_state(model) -> dict[str, torch.Tensor]:
    """The trained tensors outside the backbone, under the names of portable.SpanNet."""
    state = model.state_dict()
    out = {k.removeprefix("encoder."): v for k, v in state.items()
           if k in ("encoder.no_piece", "encoder.position_in_piece.weight")}
    out.update((k, v) for k, v in state.items() if k.startswith(("input_norm.", "head.")))
    return {k: v.detach().float().contiguous().cpu() for k, v in out.items()}


def card(model, run_dir: Path, lang: str, fmt: str) -> dict:
    """knowfree.json: what the loader needs, and what the folder came from."""
    def run_json(name):
        path = run_dir / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    metrics, config = run_json("metrics.json"), run_json("config.json")
    cfg = model.config
    enc = model.encoder
    from knowfree.backbones import provenance as encoder_provenance
    scores = {split: {k: metrics[split][k] for k in ("precision", "recall", "f1")}
              for split in ("dev", "test") if isinstance(metrics.get(split), dict)}
    return {
        "format": portable.FORMAT, "runtime": fmt, "lang": lang,
        "labels": {"targets": model.schema.names[:model.schema.n_targets],
                   "channels": list(model.channel_names)},
        "model": {k: getattr(cfg, k) for k in (
            "channels", "biaffine_heads", "size_embedding", "size_buckets", "local_attention",
            "window", "attention_heads", "piece_position", "input_norm", "max_span_length",
            "threshold", "flat")},
        "encoder": {"name": enc.name, "max_pieces": enc.max_pieces, "pad_id": int(enc.pad_id),
                    "model_type": enc.backbone.config.model_type,
                    "licence": encoder_provenance(enc.name)["licence"]},
        "source": {"run_dir": run_dir.as_posix(), "git_commit": metrics.get("git_commit"),
                   "config_hash": metrics.get("config_hash"),
                   "data_hashes": (metrics.get("data") or {}).get("hashes"),
                   "best_epoch": metrics.get("best_epoch"),
                   "weights_sha256": sha256_file(run_dir / "model.safetensors"),
                   "dataset": (config.get("data") or {}).get("dataset"),
                   "knowledge": (config.get("data") or {}).get("train_file")},
        "scores": scores,
        "exported_by": git_commit(),
    }


def readme(info: dict, checked: dict) -> str:
    src, enc = info["source"], info["encoder"]
    scores = "; ".join(f"{split} P/R/F1 {s['precision'] * 100:.2f} / {s['recall'] * 100:.2f} / "
                       f"{s['f1'] * 100:.2f}" for split, s in info["scores"].items()) or "not scored"
    runtime = ("onnxruntime (`pip install onnxruntime transformers`; torch is not needed)"
               if info["runtime"] == "onnx" else "torch (`pip install torch transformers safetensors`)")
    return f"""# knowfree span model ({info['lang']}, {len(info['labels']['targets'])} labels)

Exported by `python -m knowfree export` (knowfree commit {info['exported_by']}) from the run
`{src['run_dir']}` (commit {src['git_commit']}, config hash {src['config_hash']}, selected epoch
{src['best_epoch']}, dataset {src['dataset']}, training file {src['knowledge'] or 'the dataset split'}).

- Labels: {', '.join(info['labels']['targets'])}
- Scores of the run: {scores}
- Encoder: `{enc['name']}` ({enc['model_type']}); licence: {enc['licence']}
- Runs on: {runtime}
- Checked at export: {checked['texts']} sentences, the same spans as the run's Predictor,
  largest probability difference {checked['max_abs_diff']:.2e}

## Use

```python
sys.path.insert(0, "path/to/this/folder")
import knowfree_model

model = knowfree_model.load("path/to/this/folder")
model.predict(["北京大学的学生在阿里巴巴工作。"])
# [[{{'start': 0, 'end': 4, 'label': ..., 'text': '北京大学', 'prob': ...}}, ...]]
```

`predict_tokens(token_lists)` takes pre-split tokens and returns (start, end exclusive, label,
prob) in tokens. Text longer than {enc['max_pieces']} pieces is refused; split it first.

## Files

- `knowfree_model.py`: the loader (tokenization, the span head, decoding), standalone
- `knowfree.json`: labels, head settings, provenance and scores
- `tokenizer/`: the encoder's tokenizer
""" + ("- `model.onnx`: encoder + span head, inputs "
       + ", ".join(portable.INPUTS) + "; output `probs` [batch, tokens, width, labels]\n"
       if info["runtime"] == "onnx" else
       "- `encoder/`: the encoder as a Hugging Face folder (float32)\n"
       "- `head.safetensors`: the span head and the token add-ons\n")


def _example_inputs(card_: dict, vocab: int) -> tuple[torch.Tensor, ...]:
    """Inputs of distinct, non-trivial sizes to trace with (B=2, P=9, L=6, K=2): a size of 1
    or two equal sizes would be fixed into the graph."""
    g = torch.Generator().manual_seed(0)
    B, P, L, K = 2, 9, 6, 2
    ids = torch.randint(5, vocab, (B, P), generator=g)
    attn = torch.ones(B, P, dtype=torch.long)
    attn[1, 7:] = 0
    pieces = torch.randint(1, 7, (B, L, K), generator=g)
    pmask = torch.ones(B, L, K, dtype=torch.long)
    pmask[:, :, 1] = 0
    pmask[0, 2, 1] = 1
    pos = torch.zeros(B, L, dtype=torch.long)
    tmask = torch.ones(B, L, dtype=torch.long)
    tmask[1, 5:] = 0
    return ids, attn, pieces, pmask, pos, tmask


def write_onnx(folder: Path, path: Path) -> None:
    net, card_ = portable.load_torch(folder)
    example = _example_inputs(card_, int(net.backbone.config.vocab_size))
    batch, pieces, tokens, cover = (torch.export.Dim(n, min=1, max=4096) for n in
                                    ("batch", "pieces", "tokens", "cover"))
    shapes = {"input_ids": {0: batch, 1: pieces}, "attention_mask": {0: batch, 1: pieces},
              "token_pieces": {0: batch, 1: tokens, 2: cover},
              "token_piece_mask": {0: batch, 1: tokens, 2: cover},
              "token_position": {0: batch, 1: tokens}, "token_mask": {0: batch, 1: tokens}}
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's own progress and deprecation chatter
        program = torch.onnx.export(net, example, dynamo=True, input_names=list(portable.INPUTS),
                                    output_names=["probs"], dynamic_shapes=shapes,
                                    opset_version=ONNX_OPSET, verbose=False)
    program.save(str(path), external_data=False)


def export_run(run_dir: str | Path, out: str | Path, fmt: str = "hf",
               check_texts: Sequence[str] | None = None) -> dict:
    """Write the export of ``run_dir`` into the new folder ``out``; returns its knowfree.json
    with the self-check's result under "checked"."""
    from knowfree.predict import Predictor

    if fmt not in FORMATS:
        raise ConfigError(f"--format must be one of {FORMATS}, got {fmt!r}")
    run_dir, out = Path(run_dir), Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InputError("exists and is not an empty folder; an export never replaces files",
                         f"OUT {out}", "name a new folder, or remove this one first")
    if out.resolve().is_relative_to(run_dir.resolve()):
        raise InputError("lies inside the run folder it exports", f"OUT {out}",
                         "write the export outside RUN_DIR")
    guard_outputs([], folders=[("OUT", out)])
    predictor = Predictor.load(run_dir, precision="fp32")
    model = predictor.model
    _refuse_unexportable(model, run_dir)
    info = card(model, run_dir, predictor.lang, fmt)

    def fill(tmp: Path) -> None:
        model.encoder.tokenizer.save_pretrained(tmp / "tokenizer")
        with quiet_transformers():
            model.encoder.backbone.save_pretrained(tmp / "encoder")
        from safetensors.torch import save_file
        save_file(head_state(model), str(tmp / "head.safetensors"),
                  metadata={"knowfree_format": str(portable.FORMAT)})
        (tmp / "knowfree.json").write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
        shutil.copyfile(Path(portable.__file__), tmp / "knowfree_model.py")
        if fmt == "onnx":
            write_onnx(tmp, tmp / "model.onnx")
            shutil.rmtree(tmp / "encoder")
            (tmp / "head.safetensors").unlink()
        texts = list(check_texts or CHECK_TEXTS.get(predictor.lang, CHECK_TEXTS["en"]))
        checked = compare(predictor, portable.load(tmp), texts)
        if not checked["same_spans"] or checked["max_abs_diff"] > TOLERANCE:
            raise RuntimeError(f"the export does not reproduce the run: {checked}")
        info["checked"] = checked
        (tmp / "knowfree.json").write_text(json.dumps(info, ensure_ascii=False, indent=1), encoding="utf-8")
        (tmp / "README.md").write_text(readme(info, checked), encoding="utf-8")

    # built in a temporary sibling and renamed only once checked: OUT is the export or nothing
    install_folder(out, fill, is_current=lambda folder: False)
    return info


def compare(predictor, exported, texts: Sequence[str]) -> dict:
    """Spans of the run's Predictor and of an exported folder on ``texts``: whether they are
    the same (start, end, label), and the largest probability difference of any target label
    in any cell of the band (not only of the spans found)."""
    from knowfree.data.sample import Sample

    split = [portable.split_text(t, predictor.lang) for t in texts]
    token_lists = [tokens for tokens, _ in split if tokens]
    ours = exported.predict_tokens(token_lists)
    samples = [Sample(list(t), [], str(i), predictor.lang) for i, t in enumerate(token_lists)]
    from knowfree.predict import predict_spans
    theirs = predict_spans(predictor.model, samples, precision="fp32")
    same = all([s[:3] for s in a] == [s[:3] for s in b] for a, b in zip(ours, theirs))
    return {"texts": len(token_lists), "same_spans": bool(same),
            "max_abs_diff": band_difference(predictor.model, exported, token_lists, predictor.lang)}


@torch.inference_mode()
def band_difference(model, exported, token_lists: Sequence[Sequence[str]], lang: str) -> float:
    """max |p_export - p_run| over every target probability of every band cell."""
    from knowfree.data.sample import Sample
    from knowfree.model import move_batch

    model.eval()
    worst = 0.0
    for a in range(0, len(token_lists), 16):
        chunk = [list(t) for t in token_lists[a:a + 16]]
        batch = move_batch(model.collate([Sample(t, [], str(i), lang) for i, t in enumerate(chunk)]), "cpu")
        theirs = model(batch)[:, :model.schema.n_targets].float().sigmoid().numpy()
        inputs = portable.encode(exported.tokenizer, chunk, lang, exported.card["encoder"]["max_pieces"],
                                 exported.card["encoder"]["pad_id"])
        ours = exported._run(inputs)
        b, i, j = batch["cells"].unbind(1)
        inside = (j - i).numpy() < ours.shape[2]
        worst = max(worst, float(np.abs(ours[b.numpy()[inside], i.numpy()[inside],
                                             (j - i).numpy()[inside]] - theirs[inside]).max(initial=0)))
    return worst


def add_arguments(p) -> None:
    p.description = "Export a trained run into a folder that loads without knowfree."
    p.add_argument("run_dir", type=path_given, metavar="RUN_DIR", help="a finished `knowfree train` run folder")
    p.add_argument("out", type=path_given, metavar="OUT", help="new folder to write")
    p.add_argument("--format", choices=FORMATS, default="hf",
                   help="hf: torch + transformers; onnx: one onnxruntime graph (default hf)")
    p.add_argument("--check-file", type=path_given, default=None, metavar="FILE",
                   help="UTF-8 text, one sentence per line, to check the export on (default: a "
                        "few built-in sentences of the run's language)")


def run(args) -> int:
    texts = None
    if args.check_file:
        from knowfree.provenance import read_utf8
        texts = [line for line in read_utf8(Path(args.check_file), "--check-file").splitlines() if line.strip()]
        if not texts:
            raise InputError("has no sentence", f"--check-file {args.check_file}", "one sentence per line")
    info = export_run(args.run_dir, args.out, args.format, texts)
    c = info["checked"]
    print(f"{args.out}: {args.format} export of {args.run_dir}; checked on {c['texts']} sentences: "
          f"same spans, largest probability difference {c['max_abs_diff']:.2e}")
    return 0
