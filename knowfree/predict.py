"""Predictor: a trained run folder -> spans with character offsets for raw strings.

Text longer than the encoder's limit is cut into overlapping windows (fault 8 in
docs/faults.md: the authors cut at 510 pieces and lost every entity beyond). Each window is
decoded on its own; a span is taken only from the window in which it lies farthest from a
cut edge (where the model saw the most context on both sides), and spans accepted from
different windows that collide are resolved by probability, the same rule the model's
decoder applies inside one window.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Iterable, Sequence

import torch
from safetensors import safe_open

from knowfree.data import formats
from knowfree.data.sample import LANGS, Sample, Span
from knowfree.data.schema import LabelSchema
from knowfree.encoder import NoPieceError, TokenEncoder
from knowfree import portable
from knowfree.portable import CHAR_LANGS  # languages written without spaces: one token per character
from knowfree import precision as precision_mod
from knowfree.errors import InputError, int_at_least, path_given, spelled
from knowfree.config import PREDICT_BATCH_SIZE, ModelConfig
from knowfree.model import build_model, move_batch
from knowfree.provenance import (atomic_write_text, decode_utf8, guard_outputs, read_json_file,
                                 read_utf8)
from knowfree.progress import progress_bar


Decoded = tuple[int, int, str, float]  # start, end (exclusive, tokens), label, probability

# Also the trainer's default evaluation batch size: the same samples in the same batches give
# bit-identical probabilities, so a loaded run rescoring a split matches the trainer's score.
BATCH_SIZE = PREDICT_BATCH_SIZE

# What Predictor.load reads from a run folder (metrics.json too, when it is there).
RUN_FILES = ("config.json", "schema.json", "encoder.json", "data.json", "model.safetensors")


def split_text(text: str, lang: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Tokens of a raw string and their [start, end) character offsets in it."""
    if lang == "ko":
        return korean_morphemes(text)
    return portable.split_text(text, lang)


_KIWI = None


def korean_morphemes(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Kiwi morphemes of a Korean string, with the characters each was read from.

    Korean training data (KMOU) is split into morphemes, so raw text must be too: a name and the
    particle after it share one space-separated word ("영국과" = 영국 + 과), and a whitespace token
    could never be cut into entity and particle. Tokens are Kiwi's morpheme forms, as in KMOU
    (contracted verb endings give forms that differ from the surface, "자라났다" = 자라나 + 었 +
    다); their offsets are the surface characters, which may overlap for such contractions.
    """
    global _KIWI
    if not text.strip():
        return [], []
    if _KIWI is None:
        try:
            from kiwipiepy import Kiwi
        except ImportError:
            raise InputError("predicting Korean raw text needs the Kiwi morpheme analyser, which is "
                             "not installed", fix="pip install kiwipiepy kiwipiepy-model "
                             "(both are in requirements.txt)") from None
        _KIWI = Kiwi()
    tokens, offsets = [], []
    for m in _KIWI.tokenize(text):
        start, end = m.start, m.start + max(m.len, 1)
        tokens.append(m.form)
        offsets.append((start, min(end, len(text))))
    return tokens, offsets


# --------------------------------------------------------------------------------------------
# Windows
# --------------------------------------------------------------------------------------------


# Tokens shared by consecutive windows: every span up to this long lies whole inside some
# window, and a span near a cut is still seen with context from the next window.
WINDOW_OVERLAP = 32


def token_windows(model, samples: Sequence[Sample], skipped: list[int] | None = None
                  ) -> list[list[tuple[int, int]]]:
    """[start, end) token ranges per sample that each fit the encoder; one range if it fits,
    none for an empty sample. A sample whose text the tokenizer turns into no piece raises,
    naming the sample's id; with a ``skipped`` list it gets no range instead and its index is
    appended there, for the caller to report."""
    out = []
    for i, s in enumerate(samples):
        try:
            out.append(model.encoder.windows(s.tokens, s.lang, overlap=WINDOW_OVERLAP))
        except NoPieceError as e:
            if skipped is None:
                raise e.about(f"sample {s.id!r}") from None
            skipped.append(i)
            out.append([])
    return out


def cut_sample(sample: Sample, start: int, end: int) -> tuple[Sample, int]:
    """The window [start, end) as a sample with the spans that lie inside it, and how many
    spans the cut crossed (those are learnt from a window that holds them whole)."""
    inside = [Span(s.start - start, s.end - start, s.label) for s in sample.spans
              if s.start >= start and s.end <= end]
    crossed = sum(1 for s in sample.spans if s.start < end and s.end > start
                  and not (s.start >= start and s.end <= end))
    meta = dict(sample.meta, window=[start, end])
    return Sample(sample.tokens[start:end], inside, f"{sample.id}@{start}", sample.lang,
                  sample.synthetic, sample.source_id, sample.weight, meta), crossed


def split_long(model, samples: Sequence[Sample]) -> tuple[list[Sample], dict]:
    """Training view: long samples become overlapping windows, empty ones are dropped. Returns
    the samples and counts (long samples, windows made, spans that no window holds whole:
    these are lost, and reported)."""
    ranges = token_windows(model, samples)
    out: list[Sample] = []
    stats = {"samples": len(samples), "empty_dropped": 0, "long_samples": 0, "windows": 0,
             "spans_crossing_a_cut": 0, "spans_lost": 0}
    for sample, rs in zip(samples, ranges):
        if not rs:  # no token to learn from
            stats["empty_dropped"] += 1
            continue
        if len(rs) == 1:
            out.append(sample)
            continue
        stats["long_samples"] += 1
        stats["windows"] += len(rs)
        for a, b in rs:
            piece, crossed = cut_sample(sample, a, b)
            out.append(piece)
            stats["spans_crossing_a_cut"] += crossed
        stats["spans_lost"] += sum(1 for s in sample.spans
                                   if not any(a <= s.start and s.end <= b for a, b in rs))
    return out, stats


def _margin(start: int, end: int, window: tuple[int, int], n: int) -> float:
    """Distance from a span to the nearest edge of its window that is a cut, not the text's end."""
    a, b = window
    left = start - a if a > 0 else math.inf
    right = b - end if b < n else math.inf
    return min(left, right)


def _crosses(a: Decoded, b: Decoded) -> bool:
    return a[0] < b[0] < a[1] < b[1] or b[0] < a[0] < b[1] < a[1]


def _overlaps(a: Decoded, b: Decoded) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def merge_windows(n_tokens: int, ranges: Sequence[tuple[int, int]],
                  decoded: Sequence[Sequence[Decoded]], nested: bool) -> list[Decoded]:
    """Sentence-level spans from per-window spans (window-relative offsets)."""
    if len(ranges) == 1:
        return sorted(decoded[0])
    candidates: list[Decoded] = []
    for k, ((a, b), spans) in enumerate(zip(ranges, decoded)):
        for s, e, label, prob in spans:
            s, e = s + a, e + a
            # the window that sees this span with the most context on both sides decides it
            margins = [_margin(s, e, r, n_tokens) if r[0] <= s and e <= r[1] else -math.inf
                       for r in ranges]
            if max(range(len(ranges)), key=margins.__getitem__) == k:
                candidates.append((s, e, label, prob))
    clash = _crosses if nested else _overlaps
    kept: list[Decoded] = []
    for c in sorted(candidates, key=lambda c: (-c[3], c[0], c[1])):
        if not any(clash(c, k) for k in kept):
            kept.append(c)
    return sorted(kept)


# --------------------------------------------------------------------------------------------
# Batched prediction on samples
# --------------------------------------------------------------------------------------------


@torch.inference_mode()
def predict_spans(model, samples: Sequence[Sample], batch_size: int = BATCH_SIZE,
                  device: str | torch.device = "cpu", progress: bool = False,
                  precision: str = "fp32", skipped: list[int] | None = None) -> list[list[Decoded]]:
    """Decoded target spans (token offsets) per sample, long samples through windows.
    ``precision`` (knowfree.precision) applies to the forward; decoding is always fp32.
    ``skipped``: as in ``token_windows`` (a sample the tokenizer gives no piece is predicted
    empty and its index appended, instead of failing every sample)."""
    was_training = model.training
    model.eval()
    try:
        ranges = token_windows(model, samples, skipped)
        pieces: list[tuple[int, int, Sample]] = []  # (sample index, window index, window sample)
        for i, (sample, rs) in enumerate(zip(samples, ranges)):
            for w, (a, b) in enumerate(rs):
                pieces.append((i, w, cut_sample(sample, a, b)[0] if len(rs) > 1 else sample))
        # similar lengths together: less padding; results do not depend on the batch
        order = sorted(range(len(pieces)), key=lambda j: len(pieces[j][2]))
        decoded: list[list[list[Decoded]]] = [[[] for _ in rs] for rs in ranges]
        batches = [order[j:j + batch_size] for j in range(0, len(order), batch_size)]
        if progress:
            batches = progress_bar(batches, desc="predict", leave=False)
        for idx in batches:
            chunk = [pieces[j][2] for j in idx]
            batch = move_batch(model.collate(chunk), device)
            with precision_mod.autocast(precision, device):
                logits = model(batch)
            out = model.decode(batch, logits)  # decoders score in fp32 themselves
            for j, spans in zip(idx, out):
                i, w, _ = pieces[j]
                decoded[i][w] = [(int(s), int(e), str(l), float(p)) for s, e, l, p in spans]
        nested = not model.config.flat
        return [merge_windows(len(sample), rs, dec, nested)
                for sample, rs, dec in zip(samples, ranges, decoded)]
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# Predictor
# --------------------------------------------------------------------------------------------


def frozen_tensors(model) -> dict[str, torch.Tensor]:
    """The parameters that are not trained (a frozen encoder part), by state-dict name."""
    return {name: p for name, p in model.named_parameters() if not p.requires_grad}


def tensors_sha256(tensors: dict[str, torch.Tensor]) -> str:
    """sha256 over the names, dtypes, shapes and bytes of ``tensors``, in name order."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


def frozen_reference(model) -> dict:
    """What a checkpoint records instead of the frozen weights it leaves out."""
    frozen = frozen_tensors(model)
    if not frozen:
        return {}
    return {"frozen_encoder": model.encoder.name, "frozen_tensors": json.dumps(sorted(frozen)),
            "frozen_sha256": tensors_sha256(frozen)}


def weights_metadata(path: str | Path) -> dict:
    try:
        with safe_open(str(path), framework="pt") as f:
            return f.metadata() or {}
    except Exception as e:  # safetensors raises its own error type on a corrupt file
        raise InputError(f"cannot read weights: {e}", where=str(path)) from None


def load_weights(model, path: str | Path, remap=None) -> dict:
    """Load a safetensors checkpoint into ``model`` (on the model's device); returns its metadata.

    A checkpoint of a run with a frozen encoder part holds only the trained tensors and the
    sha256 of the frozen ones; those must already be in ``model`` (the pretrained encoder), and
    a different encoder is refused rather than silently mixed with weights trained on another.
    ``remap(state) -> state`` may rewrite the tensors first (``train.init_from`` maps the label
    rows of another run's schema onto this one's)."""
    path = Path(path)
    device = next(model.parameters()).device
    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            metadata = f.metadata() or {}
            state = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type on a corrupt file
        raise InputError(f"cannot read weights: {e}", where=str(path)) from None
    try:
        frozen = set(json.loads(metadata.get("frozen_tensors", "[]")))
    except ValueError:
        raise InputError("the checkpoint's frozen_tensors metadata is not JSON", where=str(path)) from None
    if remap is not None:
        state = remap(state)
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) != frozen or unexpected:
        missing = sorted(set(missing) - frozen)
        raise InputError(f"weights do not fit this model: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}", where=str(path),
                         fix="load them with the config.json and schema.json of their run")
    if frozen:
        params = dict(model.named_parameters())
        have = tensors_sha256({name: params[name] for name in frozen if name in params})
        if have != metadata.get("frozen_sha256"):
            raise InputError(
                f"this run was trained on top of frozen encoder weights "
                f"{metadata.get('frozen_encoder')!r} with sha256 {metadata.get('frozen_sha256')}, "
                f"but the encoder loaded here has {have}", where=str(path),
                fix="rebuild the same encoder (same alias and package version, or the same "
                    "folder) before loading this run")
    return metadata


class Predictor:
    """A trained model plus what it needs to read raw text: ``Predictor.load(run_dir)``."""

    def __init__(self, model, lang: str = "zh", device: str | torch.device = "cpu",
                 precision: str = "fp32"):
        self.model = model.to(device).eval()
        self.lang = lang
        self.device = torch.device(device)
        self.precision = precision_mod.resolve(precision, self.device)
        slow = precision_mod.slow_bf16(self.precision, self.device, "the predictor's precision")
        if slow:  # a run trained in bf16 predicts in bf16 unless told otherwise
            print(f"warning: {slow}; pass precision='fp32' (CLI: --precision fp32)", file=sys.stderr)

    @classmethod
    def load(cls, run_dir: str | Path, device: str | torch.device = "cpu",
             precision: str | None = None) -> "Predictor":
        """``precision``: None takes the run's own (train.precision, as its metrics.json resolved
        it), so that rescoring a split reproduces the trainer's score exactly."""
        run_dir = Path(run_dir)
        for name in RUN_FILES:
            if not (run_dir / name).is_file():
                raise InputError(f"not a trained run folder: {name} is missing", where=str(run_dir),
                                 fix="point at the run_dir of a `python -m knowfree train` run")

        def run_json(name: str):
            return read_json_file(run_dir / name, f"run file {name}",
                                  "restore the run folder, or train it again in a new folder")
        config = run_json("config.json")
        schema = LabelSchema.load(run_dir / "schema.json")
        spec = run_json("encoder.json")
        # architecture from the run's own files; every trained weight comes from
        # model.safetensors, frozen ones from the pretrained encoder (their sha256 is checked)
        has_frozen = "frozen_sha256" in weights_metadata(run_dir / "model.safetensors")
        encoder = TokenEncoder.from_spec(spec, None if has_frozen else run_dir / "encoder")
        model = build_model(ModelConfig.from_dict(config["model"]), schema, encoder=encoder)
        load_weights(model, run_dir / "model.safetensors")
        data = run_json("data.json")
        if precision is None:
            done = run_json("metrics.json") if (run_dir / "metrics.json").is_file() else {}
            precision = done.get("precision") or config.get("train", {}).get("precision", "fp32")
        return cls(model, lang=data.get("lang", "zh"), device=device, precision=precision)

    def predict_samples(self, samples: Sequence[Sample], batch_size: int = BATCH_SIZE,
                        skipped: list[int] | None = None) -> list[Sample]:
        """Samples carrying the predicted target spans (probabilities in meta['probs']).
        ``skipped``: see ``predict_spans``."""
        out = []
        found = predict_spans(self.model, samples, batch_size, self.device, precision=self.precision,
                              skipped=skipped)
        for sample, spans in zip(samples, found):
            pred = sample.with_spans(Span(s, e, l) for s, e, l, _ in spans)
            pred.meta["probs"] = {f"{s}:{e}:{l}": p for s, e, l, p in spans}
            out.append(pred)
        return out

    def predict(self, texts: Iterable[str], batch_size: int = BATCH_SIZE,
                lang: str | None = None, skipped: list[int] | None = None) -> list[list[dict]]:
        """Spans per text: dicts start, end (character offsets, end exclusive), label, text, prob.
        ``skipped``: see ``predict_spans``; the indices appended are those of ``texts``."""
        texts = list(texts)
        lang = lang or self.lang
        bad = [i for i, t in enumerate(texts) if not isinstance(t, str)]
        if bad:
            raise InputError(f"predict expects strings; item {bad[0]} is {type(texts[bad[0]]).__name__}")
        split = [split_text(t, lang) for t in texts]
        todo = [i for i, (tokens, _) in enumerate(split) if tokens]
        samples = [Sample(split[i][0], [], str(i), lang) for i in todo]
        among_todo: list[int] | None = None if skipped is None else []
        spans = predict_spans(self.model, samples, batch_size, self.device, precision=self.precision,
                              skipped=among_todo)
        if skipped is not None:
            skipped.extend(todo[j] for j in among_todo)
        results: list[list[dict]] = [[] for _ in texts]
        for i, found in zip(todo, spans):
            offsets = split[i][1]
            for s, e, label, prob in found:
                a, b = offsets[s][0], offsets[e - 1][1]
                results[i].append({"start": a, "end": b, "label": label, "text": texts[i][a:b],
                                   "prob": prob})
        return results


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def _lines(text: str) -> list[str]:
    """Records split at LF only: a lone carriage return inside a text is part of it (reading
    in Python's universal-newline mode would cut one record into two)."""
    lines = text.split("\n")
    return lines[:-1] if lines[-1] == "" else lines


def _read_texts(lines: Iterable[str], source: str) -> list[tuple[str, dict]]:
    """(text, fields to carry to the output) per line: JSONL records with a "text" field (their
    "id" is carried), or one plain text per line (decided per line)."""
    texts = []
    for n, line in enumerate(lines, 1):
        line = line.removesuffix("\r")
        if line.lstrip().startswith("{"):
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"line {n} starts like JSON but does not parse: {e.msg}",
                                 where=source, fix="one JSON object per line, or plain text") from None
            text = record.get("text")
            if isinstance(text, list):  # KnowFREE JSONL stores characters as a list
                text = "".join(text) if record.get("lang", "zh") in CHAR_LANGS else " ".join(text)
            if not isinstance(text, str):
                raise InputError(f"line {n}: JSON record has no string \"text\" field", where=source)
            texts.append((text, {"id": record["id"]} if "id" in record else {}))
        else:
            texts.append((line, {}))
    return texts


def add_arguments(p) -> None:
    p.description = "Predict spans for raw text with a trained run."
    p.add_argument("run_dir", help="run folder written by `python -m knowfree train`")
    p.add_argument("--input", type=path_given, help="JSONL with a \"text\" field, or plain text lines (default: stdin)")
    p.add_argument("--output", type=path_given, help="JSONL out, one record per input line (default: stdout)")
    p.add_argument("--batch-size", type=int_at_least(1), default=BATCH_SIZE)
    p.add_argument("--lang", choices=LANGS, help="override the language of the training data")
    p.add_argument("--tokens", action="store_true",
                   help="INPUT is a tokenised dataset file (KnowFREE JSONL, or --format): its tokens "
                        "are kept and OUTPUT is KnowFREE JSONL, which `python -m knowfree eval INPUT "
                        "OUTPUT` scores")
    p.add_argument("--format", default="jsonl", help="format of a --tokens input (default jsonl)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--precision", choices=precision_mod.PRECISIONS,
                   help="fp32, bf16 or auto (default: the precision the run was trained and "
                        "scored in, so that --tokens reproduces its test score)")


def run(args) -> int:
    device = precision_mod.device(args.device, "--device")  # checked before any file is read
    run_files = [("RUN_DIR file", Path(args.run_dir) / name) for name in RUN_FILES + ("metrics.json",)]
    guard_outputs([("--input", args.input), *run_files], files=[("--output", args.output)])

    if args.tokens:
        if not (args.input and args.output):
            raise InputError("--tokens needs --input FILE and --output FILE",
                             fix="python -m knowfree predict RUN --tokens --input test.jsonl --output pred.jsonl")
        with spelled(formats.spellings("--format")):
            result = formats.read(args.input, args.format)
        samples, lines = result.samples, result.report.lines
        predictor = Predictor.load(args.run_dir, device=device, precision=args.precision)
        skipped: list[int] = []
        predicted = predictor.predict_samples(samples, batch_size=args.batch_size, skipped=skipped)
        formats.write(predicted, args.output, "jsonl")
        _report(len(samples), [f"{args.input}:{lines[i]} (sentence {i + 1}, id {samples[i].id!r})" if lines[i]
                               else f"{args.input}: sentence {i + 1} (id {samples[i].id!r})" for i in skipped],
                args.output)
        return 0
    if args.input:
        text = read_utf8(args.input, "--input file")
    else:
        text = decode_utf8(sys.stdin.buffer.read(), "<stdin>")
    records = _read_texts(_lines(text), args.input or "<stdin>")
    predictor = Predictor.load(args.run_dir, device=device, precision=args.precision)
    skipped: list[int] = []
    results = predictor.predict([t for t, _ in records], batch_size=args.batch_size, lang=args.lang,
                                skipped=skipped)
    out = "".join(json.dumps({**extra, "text": t, "spans": r}, ensure_ascii=False) + "\n"
                  for (t, extra), r in zip(records, results))
    if args.output:
        atomic_write_text(args.output, out)
    else:
        sys.stdout.write(out)
    # every record is one input line (split at LF), so record i is line i + 1
    _report(len(records), [f"{args.input or '<stdin>'}:{i + 1}" for i in skipped],
            args.output or "<stdout>")
    return 0


def _report(n: int, skipped: list[str], output: str) -> None:
    """On stderr: each record the encoder could not read (its prediction is empty, not a
    model's answer), then a summary that counts them."""
    for where in skipped:
        print(f"warning: {where}: the run's tokenizer gives no piece for this text (its vocabulary "
              f"does not fit it); written with an empty prediction", file=sys.stderr)
    summary = f"predicted {n} records into {output}"
    if skipped:
        summary += f"; {len(skipped)} of them empty because the tokenizer gives them no piece"
    print(summary, file=sys.stderr)
