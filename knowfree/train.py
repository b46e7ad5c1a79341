"""Trainer: YAML config -> run folder with selected checkpoint, per-epoch CSV and metrics.json.

Guarantees the authors' code lacks (fault numbers as in docs/faults.md): the checkpoint is
selected on dev, never test (fault 1); test is scored once, on that checkpoint; sentences
longer than the encoder limit are split into overlapping windows and counted, never cut
(fault 8); python, numpy and torch are seeded and the data are reshuffled every epoch from a
dedicated generator (fault 11), so one seed and one data set give the same metrics to the
last digit on CPU, and a run stopped after any epoch resumes to exactly the result of an
uninterrupted one.

Run folder layout::

    config.json            validated config with defaults filled in (its hash names the run)
    data.json              data provenance: content hashes, file sha256s, reader reports,
                           language, window counts per split
    subset.json            the training subset (method, ids, seed, content hash) when data.k
                           (K sentences) or data.k_shot (K mentions per label) is set
    schema.json            label schema
    encoder.json, encoder/ encoder spec, backbone config and tokenizer (no weights)
    model.safetensors      selected (best dev F1) weights, encoder included; metadata: epoch
    checkpoints/           last weights, optimizer/scheduler/RNG state, pointer last.json
    epochs.csv             epoch, train loss, dev P/R/F1, lr, seconds (training / with dev)
    metrics.json           written when the run is complete
"""
from __future__ import annotations

import math
import os
import random
import shutil
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from knowfree.checkpoints import (TRAINED_FILES, RUN_FILES, RunDir, init_from_run, save_encoder_files, weight_tensors,
                                  write_epochs_csv, write_weights)
from knowfree.data import formats
from knowfree.data.registry import open_dataset
from knowfree.data.sample import Sample, Span, is_extension
from knowfree.data.sampling import Subset, k_sentences, k_shot, save_subset
from knowfree.data.schema import WEIGHT_PRESETS, LabelSchema
from knowfree.backbones import provenance as encoder_provenance
from knowfree.errors import ConfigError, InputError, KnowfreeError, int_at_least, path_given, spelled
from knowfree.metrics import evaluate
from knowfree.model import ModelConfig, build_model, move_batch
from knowfree import distributed
from knowfree import precision as precision_mod
from knowfree.distributed import World
from knowfree.config import config_hash, load_config, validate_config
from knowfree.predict import (frozen_reference, load_weights, predict_spans, split_long)
from knowfree.provenance import (REPO_ROOT, atomic_write_json, git_commit, guard_outputs,
                                 hash_samples, sha256_file)
from knowfree.progress import bar_name, progress_bar


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def load_data(data_cfg: dict, need_dev: bool = True) -> tuple[dict[str, list[Sample]], dict, Subset | None]:
    """Train/dev/test samples as the config names them, what identifies them, and the
    K-sentence subset drawn from train (None when all of train is used). ``need_dev=False``
    (train.select: last) lets dev be absent."""
    info: dict[str, Any] = {}
    if data_cfg["dataset"] is not None:
        ds = open_dataset(data_cfg["dataset"])
        splits = {k: list(v) for k, v in ds.splits.items()}
        info["source"] = f"dataset:{data_cfg['dataset']}"
        info["dataset"] = ds.provenance()
        info["targets"] = list(ds.entry.labels)
        for warning in ds.warnings:
            print(f"warning: {warning}", file=sys.stderr)
        if "dev" not in splits and need_dev:
            raise ConfigError(f"dataset {data_cfg['dataset']!r} has no dev split; model selection "
                              f"needs one (splits: {sorted(splits)})")
    else:
        splits = {}
        info["source"] = "files"
    if data_cfg["train_file"] is not None:
        # With a dataset too: train from the file (an augmented set), dev and test from the dataset.
        info["source"] = f"{info['source']}+train_file" if data_cfg["dataset"] else "files"
        info["files"] = {}
        for split in ("train", "dev", "test"):
            path = data_cfg[f"{split}_file"]
            if path is None:
                continue
            result = formats.read(path, data_cfg["format"])
            splits[split] = list(result.samples)
            info["files"][split] = {"path": str(path), "sha256": sha256_file(path),
                                    "report": result.report.to_dict()}
    subset = None
    name = data_cfg["dataset"] or (data_cfg["train_file"] and Path(data_cfg["train_file"]).stem)
    if data_cfg["k"] is not None:
        subset = k_sentences(splits["train"], data_cfg["k"], seed=data_cfg["sample_seed"],
                             dataset=name, split="train")
    elif data_cfg["k_shot"] is not None:
        # every target label the data define, also one train lacks (it is then a shortfall)
        subset = k_shot(splits["train"], data_cfg["k_shot"], seed=data_cfg["sample_seed"],
                        labels=info.get("targets"), dataset=name, split="train")
        for label, found in subset.shortfall.items():
            print(f"warning: data.k_shot={subset.k}: label {label} has only {found} mentions in the "
                  "train split; all of them are used", file=sys.stderr)
    if subset is not None:
        splits["train"] = subset.select(splits["train"])
        info["subset"] = {"k": subset.k, "seed": subset.seed, "content_hash": subset.content_hash,
                          "file": "subset.json"}
        if subset.method == "k-shot":
            info["subset"].update(method=subset.method, sentences=len(subset.ids), shortfall=subset.shortfall)
    for split in ("train", "dev") if need_dev else ("train",):
        if not splits.get(split):
            raise ConfigError(f"the {split} split is empty; check data.{split}_file / data.dataset")
    info["hashes"] = {split: hash_samples(samples) for split, samples in splits.items()}
    info["counts"] = {split: len(samples) for split, samples in splits.items()}
    langs = sorted({s.lang for s in splits["train"]})
    info["lang"] = max(langs, key=lambda l: sum(s.lang == l for s in splits["train"]))
    return splits, info, subset


def build_schema(splits: dict[str, list[Sample]], data_cfg: dict,
                 targets: list[str] | None = None, preset: str | None = None) -> LabelSchema:
    """The schema file if the config names one, else counted on train.

    Target inventory: the dataset's registered labels, else the union of all splits' label
    names (names only, no counts): a small training subset may miss a rare type that dev and
    test still score."""
    if data_cfg["schema_file"]:
        return LabelSchema.load(data_cfg["schema_file"])
    if targets is None:
        targets = sorted({sp.label for samples in splits.values() for s in samples
                          for sp in s.targets()})
    return LabelSchema.from_samples(splits["train"], targets=targets, **extension_rule(data_cfg, preset))


def extension_rule(data_cfg: dict, preset: str | None = None) -> dict:
    """The extension weight rule as keyword arguments of ``LabelSchema.from_samples``."""
    if preset is not None:
        return dict(WEIGHT_PRESETS[preset][0])
    rule = data_cfg["extension_weight_rule"]
    return dict(rule) if isinstance(rule, dict) else {"rule": rule}


# --------------------------------------------------------------------------------------------
# Seeds, batches, schedule
# --------------------------------------------------------------------------------------------


def weigh_synthetic(samples: list[Sample], weight: float, absolute: bool = False) -> list[Sample]:
    """Synthetic samples' loss weights multiplied by ``weight``, or set to it (``absolute``, as a
    weight preset does); copies, gold untouched. The model applies sample weights on the batch
    axis (fault 3 in docs/faults.md: the authors' never took effect)."""
    return [replace(s, weight=weight if absolute else s.weight * weight) if s.synthetic else s
            for s in samples]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state(gen: torch.Generator) -> dict:
    np_state = np.random.get_state()
    state = {"python": random.getstate(), "torch": torch.get_rng_state(), "shuffle": gen.get_state(),
             # a plain list so the state file loads with torch.load(weights_only=True)
             "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict, gen: torch.Generator) -> None:
    random.setstate(state["python"])
    np_state = state["numpy"]
    np.random.set_state((np_state[0], np.array(np_state[1], dtype=np.uint32), *np_state[2:]))
    torch.set_rng_state(state["torch"])
    gen.set_state(state["shuffle"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_batches(lengths: list[int], batch_size: int, buckets: int,
                 gen: torch.Generator) -> list[list[int]]:
    """One epoch of index batches: a fresh shuffle from ``gen`` every call (fault 11 in
    docs/faults.md).

    With buckets > 1 each run of buckets*batch_size shuffled samples is sorted by length and
    cut into batches, and the batches are shuffled: little padding, still random order."""
    perm = torch.randperm(len(lengths), generator=gen).tolist()
    if buckets <= 1:
        return [perm[i:i + batch_size] for i in range(0, len(perm), batch_size)]
    chunk = buckets * batch_size
    batches = []
    for c in range(0, len(perm), chunk):
        part = sorted(perm[c:c + chunk], key=lambda i: lengths[i])
        batches += [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
    order = torch.randperm(len(batches), generator=gen).tolist()
    return [batches[o] for o in order]


def linear_schedule(optimizer, warmup_steps: int, total_steps: int):
    """Linear warm-up from 0, then linear decay to 0 at the last planned step."""
    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup_steps))
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)




# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


SOLO = World()  # one process


def train_step(model, batch: dict | None, optimizer, scheduler, trainable: list, clip: float | None,
               precision: str, device, world: World = SOLO) -> float:
    """One optimizer step on a collated batch; returns the loss (no step if it is not finite).
    The forward runs in ``precision``, the loss and the update in fp32. In a world of several
    ranks ``batch`` is this rank's shard (None: empty) and the step is that of the whole batch
    (knowfree.distributed)."""
    if world.size == 1:
        with precision_mod.autocast(precision, device):
            logits = model(batch)
        loss = model.loss(batch, logits.float())
        value = loss.item()
        if not math.isfinite(value):
            return value
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
    else:
        optimizer.zero_grad(set_to_none=True)
        local, units = None, 0
        if batch is not None:
            with precision_mod.autocast(precision, device):
                logits = model(batch)
            local, units = model.loss(batch, logits.float()), model.loss_units(batch)
        total = world.sum([float(units)])[0]
        if local is not None:
            local = local * (units / total)  # this shard's part of the whole batch's mean
        value = world.sum([local.item() if local is not None else 0.0])[0]
        if not math.isfinite(value):
            return value
        if local is not None:
            local.backward()
        world.sum_gradients(trainable)
    if clip:
        torch.nn.utils.clip_grad_norm_(trainable, clip)
    optimizer.step()
    scheduler.step()
    return value


def _evaluate(model, samples: list[Sample], batch_size: int, device, precision: str) -> dict:
    """Span-level P/R/F1 (+ per label) of the model on ``samples``' target spans."""
    decoded = predict_spans(model, samples, batch_size, device, precision=precision)
    pred = [s.with_spans(Span(a, b, l) for a, b, l, _ in spans) for s, spans in zip(samples, decoded)]
    return evaluate(samples, pred).as_dict()  # extension spans in gold are not scored


def _default_run_dir(config: dict) -> Path:
    d = config["data"]
    name = "-".join(x for x in (d["dataset"], d["train_file"] and Path(d["train_file"]).stem) if x)
    k = f"k{d['k']}" if d["k"] else f"kshot{d['k_shot']}" if d["k_shot"] else "full"
    return (REPO_ROOT / "results" / "runs" /
            f"{name}-{k}-{config['model']['head']}-s{config['train']['seed']}-{config_hash(config)[:8]}")


def train(config: dict, run_dir: str | Path | None = None, progress: bool = True,
          stop_after: int | None = None, inputs=()) -> dict:
    """Train from a config (knowfree.config) and return the run's metrics.

    A run folder that holds a checkpoint of the same config and data is resumed; a completed one
    returns its metrics without training again. ``stop_after`` ends this call after that many
    epochs in total (checkpoint written; the returned dict has complete = False), so long runs
    can be split into sittings. ``train.threads`` applies for this call only. ``inputs``:
    further (name, path) pairs the run must not overwrite (the CLI's config file)."""
    config = validate_config(config)
    before = torch.get_num_threads()
    if config["train"]["threads"]:
        torch.set_num_threads(config["train"]["threads"])
    # a process group this call joins, it leaves; one the caller set up stays the caller's
    owned = not distributed.joined()
    finished = False
    try:
        metrics = _train(config, run_dir, progress, stop_after, inputs)
        finished = True
        return metrics
    finally:
        torch.set_num_threads(before)
        if owned:
            distributed.leave(synchronise=finished)


def _train(config: dict, run_dir, progress: bool, stop_after: int | None, inputs) -> dict:

    wall0 = time.time()
    t = config["train"]
    run = RunDir(Path(run_dir or config["output"]["run_dir"] or _default_run_dir(config)))
    _guard_run(run, config, inputs)
    chash = config_hash(config)
    # taken now, not when the run ends: the code that trains is the code imported at the start,
    # and edits made while a long run goes on must not mark it '+dirty'
    commit = git_commit()
    device = precision_mod.device(t["device"], "train.device")
    world = distributed.setup(device)  # torchrun / accelerate launch: several ranks
    device = world.device(device)
    precision = precision_mod.resolve(t["precision"], device)
    slow = precision_mod.slow_bf16(precision, device, "train.precision")
    if slow and world.main:
        print(f"warning: {slow}", file=sys.stderr)

    # the epoch kept when it is fixed in advance (train.select: last or N), else None: dev decides
    fixed = None if t["select"] == "best_dev" else t["epochs"] if t["select"] == "last" else t["select"]
    splits, data_info, subset = load_data(config["data"], need_dev=fixed is None)
    if world.main:  # it may take over (clean) a folder whose setup failed
        _check_same_run(run, chash, data_info)
    world.barrier()
    done = run.read_json("metrics.json")
    if done is not None and done.get("complete"):
        return done

    schema = build_schema(splits, config["data"], data_info.get("targets"), t["weight_preset"])

    seed_everything(t["seed"])
    model = build_model(ModelConfig.from_dict(config["model"]), schema).to(device)
    # before a resumed checkpoint is loaded over it; the same every time, so resume stays exact
    init = init_from_run(model, t["init_from"], config["model"]) if t["init_from"] else None
    # written only now: an unknown encoder or an unfit init_from leaves no folder behind
    if world.main:
        atomic_write_json(run / "config.json", config)
        schema.save(run / "schema.json")
        if subset is not None:
            save_subset(subset, run / "subset.json")
        save_encoder_files(model.encoder, run)
    if init is not None and world.main:
        print(f"initialised from {init['run_dir']} (epoch {init['epoch']}): labels kept "
              f"{init['labels']['kept']}, new {init['labels']['new']}, dropped {init['labels']['dropped']}"
              + (f" ({', '.join(init['dropped_labels'])})" if init["dropped_labels"] else ""),
              file=sys.stderr)

    preset = WEIGHT_PRESETS.get(t["weight_preset"]) if t["weight_preset"] else None
    train_samples = (weigh_synthetic(splits["train"], preset[1], absolute=True) if preset
                     else weigh_synthetic(splits["train"], t["synthetic_weight"]))
    weights_info = {"preset": t["weight_preset"], "source": preset[2] if preset else None,
                    "extension_rule": schema.rule,
                    "synthetic_weight": preset[1] if preset else t["synthetic_weight"],
                    "synthetic_weight_is": "absolute" if preset else "a multiplier of each sample's weight"}
    train_samples, window_stats = split_long(model, train_samples)
    if not train_samples:  # else a model is "trained" on nothing and scores 0 without a word
        raise InputError(f"the training split has no sentence with a token ({window_stats['empty_dropped']} "
                         f"empty sentences)", where=config["data"]["train_file"] or config["data"]["dataset"],
                         fix="check data.train_file, data.format and data.k")
    data_info["windows"] = {"train": window_stats}
    for split in ("dev", "test"):
        if splits.get(split):
            data_info["windows"][split] = split_long(model, splits[split])[1]
    width = config["model"]["max_span_length"]
    if width is not None and config["model"]["head"] != "tagger":
        data_info["too_wide"] = {"max_span_length": width}
        for split, samples in (("train", train_samples), ("dev", splits.get("dev")), ("test", splits.get("test"))):
            wide = [sp for s in samples or () for sp in s.spans if sp.end - sp.start > width]
            targets = sum(1 for sp in wide if not is_extension(sp.label))
            data_info["too_wide"][split] = {"targets": targets, "extensions": len(wide) - targets}
            if targets and world.main:
                print(f"warning: {targets} {split} target spans are longer than model.max_span_length="
                      f"{width}: they cannot be learnt or found", file=sys.stderr)
    for split, stats in data_info["windows"].items():
        if stats["spans_lost"] and world.main:
            print(f"warning: {stats['spans_lost']} {split} spans are longer than any encoder "
                  f"window: they cannot be learnt or found", file=sys.stderr)
    if world.main:
        atomic_write_json(run / "data.json", data_info)
    lengths = [len(s) for s in train_samples]

    steps_per_epoch = math.ceil(len(train_samples) / t["batch_size"])
    total_steps = steps_per_epoch * t["epochs"]
    warmup = t["warmup"] if isinstance(t["warmup"], int) else round(t["warmup"] * total_steps)
    # fused: one kernel over all parameters; on CPU about 3x faster than the per-tensor loop,
    # which matters with e5-small's 96M-parameter embedding table updated every step
    optimizer = torch.optim.AdamW(model.param_groups(t["encoder_lr"], t["head_lr"], t["weight_decay"]),
                                  fused=True)
    scheduler = linear_schedule(optimizer, warmup, total_steps)
    gen = torch.Generator().manual_seed(t["seed"])
    trainable = [p for p in model.parameters() if p.requires_grad]
    frozen_ref = frozen_reference(model)  # computed once: the frozen tensors never change

    world.barrier()  # rank 0 has written the folder's setup files
    state = run.load_last(model)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        _set_rng_state(state["rng"], gen)
        history, best, finished = state["history"], state["best"], state["finished"]
        start_epoch = state["epoch"] + 1
    else:
        history, best, finished, start_epoch = [], {"epoch": 0, "f1": -1.0, "dev": None}, False, 1

    epochs = [] if finished else range(start_epoch, t["epochs"] + 1)
    pending_best = None  # (tensors, metadata) of a selected epoch not yet written
    bar = None
    if world.rank:  # dropout masks of their own; rank 0 keeps the one-process stream
        torch.manual_seed(t["seed"] + 7919 * world.rank)
    if progress and epochs and world.main:
        bar = progress_bar(total=t["epochs"], initial=start_epoch - 1, desc=bar_name(run.path.name), unit="epoch")
    for epoch in epochs:
        t0 = time.time()
        model.train()
        batches = make_batches(lengths, t["batch_size"], t["length_buckets"], gen)
        loss_sum = 0.0
        steps = batches
        if bar is not None:
            steps = progress_bar(batches, desc=f"epoch {epoch}", leave=False, unit="batch")
        for idx in steps:
            mine = world.shard(idx)
            batch = move_batch(model.collate([train_samples[i] for i in mine]), device) if mine else None
            loss = train_step(model, batch, optimizer, scheduler, trainable, t["clip"], precision,
                              device, world)
            if not math.isfinite(loss):
                raise KnowfreeError(f"training loss is {loss} at epoch {epoch}; lower "
                                    f"train.head_lr / train.encoder_lr or check the data")
            loss_sum += loss
            if bar is not None:
                steps.set_postfix(loss=f"{loss:.4f}")
        lrs = {g["name"].split(".")[0]: g["lr"] for g in optimizer.param_groups}
        row = {"epoch": epoch, "train_loss": loss_sum / max(1, len(batches)),
               "lr_encoder": lrs.get("encoder", 0.0), "lr_head": lrs.get("head", 0.0),
               "train_seconds": time.time() - t0}
        dev = None
        if splits.get("dev") and (epoch % t["eval_every"] == 0 or epoch in (t["epochs"], fixed)):
            # rank 0 scores; every rank takes its decisions from the same scores
            dev = world.share(_evaluate(model, splits["dev"], t["eval_batch_size"], device, precision)
                              if world.main else None)
            row.update(dev_p=dev["precision"], dev_r=dev["recall"], dev_f1=dev["f1"])
        if fixed is not None:  # chosen elsewhere (cross-validation): the current epoch is kept
            best = {"epoch": epoch, "f1": dev["f1"] if dev else None, "dev": dev}
        elif dev is not None:
            if dev["f1"] > best["f1"]:  # strict: ties keep the earlier, cheaper checkpoint
                best = {"epoch": epoch, "f1": dev["f1"], "dev": dev}
                if world.main:
                    pending_best = (weight_tensors(model), {"epoch": epoch, "dev_f1": dev["f1"],
                                                            **frozen_ref})
            if t["patience"] and epoch - best["epoch"] >= t["patience"]:
                finished = True
        finished = finished or epoch in (t["epochs"], fixed)
        row["seconds"] = time.time() - t0
        history.append(row)
        if world.main:
            write_epochs_csv(run / "epochs.csv", history)
        pausing = stop_after is not None and epoch >= stop_after
        if world.main and (finished or pausing or epoch % config["output"]["checkpoint_every"] == 0):
            if fixed is not None:  # a resumed or finished run keeps this epoch's weights
                pending_best = (weight_tensors(model), {"epoch": epoch, **frozen_ref,
                                                        **({"dev_f1": dev["f1"]} if dev else {})})
            if pending_best is not None:
                write_weights(run / "model.safetensors", *pending_best)
                pending_best = None
            run.save_last(model, {"epoch": epoch, "optimizer": optimizer.state_dict(),
                                  "scheduler": scheduler.state_dict(), "rng": _rng_state(gen),
                                  "history": history, "best": best, "finished": finished,
                                  "config_hash": chash}, frozen_ref)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{row['train_loss']:.4f}", dev_f1=row.get("dev_f1", "-"),
                            best=best["epoch"])
        if stop_after is not None and epoch >= stop_after and not finished:
            if bar is not None:
                bar.close()
            world.barrier()  # the checkpoint is written before any rank returns
            return {"complete": False, "epoch": epoch, "best_epoch": best["epoch"],
                    "run_dir": str(run.path), "history": history}
        if finished:
            break
    if bar is not None:
        bar.close()

    if not world.main:  # rank 0 tests and writes; the others return its metrics
        return world.share(None)
    # test once, on the checkpoint dev selected (fault 1 in docs/faults.md: never select on test)
    meta = load_weights(model, run / "model.safetensors")
    if int(meta.get("epoch", -1)) != best["epoch"]:
        raise KnowfreeError(f"{run / 'model.safetensors'} holds epoch {meta.get('epoch')} but the "
                            f"selected epoch is {best['epoch']}; delete the run folder and retrain")
    test = None
    if splits.get("test"):
        test = _evaluate(model, splits["test"], t["eval_batch_size"], device, precision)

    metrics = {
        "complete": True,
        "dev": best["dev"], "test": test,
        "best_epoch": best["epoch"], "epochs_run": len(history),
        "stopped_early": len(history) < t["epochs"],
        "seconds_per_epoch": sum(r["seconds"] for r in history) / len(history),
        "train_seconds_per_epoch": sum(r["train_seconds"] for r in history) / len(history),
        "wall_seconds": time.time() - wall0,
        "config_hash": chash, "git_commit": commit,
        "data": data_info, "encoder": model.encoder.spec(),
        "encoder_source": encoder_provenance(model.encoder.name),
        "n_train": len(splits["train"]), "n_train_inputs": len(train_samples),
        "device": str(device), "precision": precision, "frozen": frozen_ref, "init_from": init,
        "weights": weights_info,
        "parameters": {"trained": sum(p.numel() for p in trainable),
                       "frozen": sum(p.numel() for p in model.parameters() if not p.requires_grad)},
        "torch": torch.__version__, "threads": torch.get_num_threads(),
        "run_dir": str(run.path),
    }
    metrics["world_size"] = world.size
    atomic_write_json(run / "metrics.json", metrics)
    if not config["output"]["keep_last"]:
        run.drop_last()
    return world.share(metrics)


def _guard_run(run: RunDir, config: dict, inputs) -> None:
    """Before anything is read: no file the run writes may be one of its inputs (a run folder
    given as its own train.init_from, a data file inside it)."""
    d = config["data"]
    named = [*inputs, *((f"data.{k}", d[k]) for k in ("train_file", "dev_file", "test_file", "schema_file"))]
    source = config["train"]["init_from"]
    if source:
        named += [("train.init_from file", Path(source) / name) for name in RUN_FILES]
    guard_outputs(named, files=[("run folder file", run / name) for name in RUN_FILES],
                  folders=[("run folder", run.path)])


def _check_same_run(run: RunDir, chash: str, data_info: dict) -> None:
    """Refuse to resume (or return) a run folder made by another config or other data. A
    folder where setup failed before any training (only config, schema, encoder files) is
    taken over: its files are removed, so nothing of the failed setup mixes with this run."""
    old = run.read_json("config.json")
    if old is None:
        return
    if not any((run / name).exists() for name in TRAINED_FILES):
        for name in RUN_FILES:
            (run / name).unlink(missing_ok=True)
        shutil.rmtree(run / "encoder", ignore_errors=True)
        return
    if config_hash(old) != chash:
        raise ConfigError(f"run folder {run.path} holds a run of another config "
                          f"(hash {config_hash(old)} vs {chash}); choose another run_dir or delete it")
    old_data = run.read_json("data.json")
    if old_data is not None and old_data.get("hashes") != data_info["hashes"]:
        raise ConfigError(f"run folder {run.path} was trained on other data (content hashes differ); "
                          f"choose another run_dir or delete it")


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------


def add_arguments(p) -> None:
    p.description = "Train a model from a YAML config; resumes an interrupted run in the same run folder."
    p.add_argument("config", help="YAML config (see configs/)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.epochs=3 (value read as YAML)")
    p.add_argument("--run-dir", type=path_given, help="run folder (default: output.run_dir, else results/runs/<name>)")
    p.add_argument("--stop-after", type=int_at_least(1), metavar="EPOCHS",
                   help="stop after this many epochs in total; run again to resume")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


def run(args) -> int:
    config = load_config(args.config, args.overrides)
    with spelled(formats.spellings("data.format:")):
        metrics = train(config, run_dir=args.run_dir, progress=not args.no_progress,
                        stop_after=args.stop_after, inputs=[("CONFIG", args.config)])
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun every rank has the result: one says it
        return 0
    if not metrics["complete"]:
        print(f"stopped after epoch {metrics['epoch']}; run the same command to resume "
              f"({metrics['run_dir']})")
        return 0
    dev, test = metrics["dev"], metrics["test"]
    line = (f"best epoch {metrics['best_epoch']}: dev F1 {dev['f1']:.4f}" if dev
            else f"epoch {metrics['best_epoch']} kept (train.select, no dev set)")
    if test:
        line += f", test P/R/F1 {test['precision']:.4f} / {test['recall']:.4f} / {test['f1']:.4f}"
    print(f"{line}\nrun folder: {metrics['run_dir']}")
    return 0
