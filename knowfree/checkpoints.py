"""What a run folder holds and how it is written: the trainable weights with a reference to the
frozen encoder weights they were trained on, the resumable checkpoint, the warm start from
another run (``train.init_from``), the encoder files and the per-epoch CSV."""
from __future__ import annotations

import csv
import io
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from knowfree.data.schema import LabelSchema
from knowfree.errors import ConfigError, InputError
from knowfree.predict import (frozen_reference, frozen_tensors, load_weights)
from knowfree.provenance import (atomic_write_bytes, atomic_write_json, atomic_write_text, read_json_file,
                                 sha256_file)


def weight_tensors(model) -> dict[str, torch.Tensor]:
    """A CPU copy of the state dict without the frozen parameters (``frozen_reference`` names
    them and records their sha256 instead): only what training can change."""
    frozen = frozen_tensors(model)
    # clones: safetensors refuses tensors that share memory (tied weights)
    return {k: v.detach().to("cpu").contiguous().clone() for k, v in model.state_dict().items()
            if k not in frozen}


def write_weights(path: Path, tensors: dict[str, torch.Tensor], metadata: dict) -> None:
    """Tensors as safetensors; metadata values as strings."""
    atomic_write_bytes(path, safetensors_bytes(tensors, {k: str(v) for k, v in metadata.items()}))


# Model keys that may differ between a run and the run it starts from: they shape no tensor.
_INIT_FREE_KEYS = ("dropout",)


def init_from_run(model, source: str | Path, model_config: dict) -> dict:
    """Load the selected weights of the finished run ``source`` into ``model``; returns what the
    run's metrics record about it.

    The architecture must be the same (every ``model`` key but dropout) and so must the target
    labels. Extension labels are matched by name: a label of both runs keeps its output row, a
    label new here keeps its fresh initialisation, a label only the source had is dropped; the
    counts are returned, never silent."""
    from knowfree.model import SpanModel

    src = Path(source)
    where = f"train.init_from={source}"
    files = {name: src / name for name in ("config.json", "schema.json", "model.safetensors", "metrics.json")}
    missing = [name for name, p in files.items() if not p.is_file()]
    if missing:
        raise ConfigError(f"{where}: the folder has no {', '.join(missing)} "
                          "(fix: name the folder of a finished training run)")
    theirs = json.loads(files["config.json"].read_text(encoding="utf-8")).get("model", {})
    differ = sorted(k for k in set(theirs) | set(model_config)
                    if k not in _INIT_FREE_KEYS and theirs.get(k) != model_config.get(k))
    if differ:
        raise ConfigError(f"{where}: that run's model differs from this one in "
                          + ", ".join(f"model.{k} ({theirs.get(k)!r} there, {model_config.get(k)!r} here)"
                                      for k in differ)
                          + " (fix: use the same model settings, or start from the pretrained encoder)")
    src_metrics = json.loads(files["metrics.json"].read_text(encoding="utf-8"))
    if not src_metrics.get("complete"):
        raise ConfigError(f"{where}: that run has not finished (fix: finish it first: "
                          "python -m knowfree train with the same config and --run-dir)")
    src_schema = LabelSchema.load(files["schema.json"])
    if src_schema.targets != model.schema.targets:
        raise ConfigError(f"{where}: target labels differ: {src_schema.targets} there, "
                          f"{model.schema.targets} here (fix: train on data with the same target labels)")
    labels = {"kept": [], "new": [], "dropped": []}

    def map_rows(state: dict) -> dict:
        if not isinstance(model, SpanModel):
            return state  # the tagger's tag set comes from the target labels alone
        ours = model.state_dict()
        for name in ("head.classifier.weight", "head.classifier.bias"):
            src_names = src_schema.names[:state[name].shape[0]]
            index = {label: r for r, label in enumerate(src_names)}
            rows = ours[name].detach().clone().to(state[name].device)
            for r, label in enumerate(model.channel_names):
                if label in index:
                    rows[r] = state[name][index[label]]
            state[name] = rows
            labels.update(kept=[l for l in model.channel_names if l in index],
                          new=[l for l in model.channel_names if l not in index],
                          dropped=[l for l in src_names if l not in set(model.channel_names)])
        return state

    metadata = load_weights(model, files["model.safetensors"], remap=map_rows)
    return {"run_dir": str(src), "config_hash": src_metrics.get("config_hash"),
            "epoch": int(metadata["epoch"]) if "epoch" in metadata else None,
            "weights_sha256": sha256_file(files["model.safetensors"]),
            "labels": {k: len(v) for k, v in labels.items()}, "dropped_labels": labels["dropped"]}


def save_weights(model, path: Path, frozen_ref: dict | None = None, **metadata) -> None:
    """``frozen_ref``: the run's ``frozen_reference(model)``, computed once by the trainer
    (hashing the frozen tensors takes ~1 s per checkpoint with e5-small); None computes it."""
    frozen_ref = frozen_reference(model) if frozen_ref is None else frozen_ref
    write_weights(path, weight_tensors(model), {**metadata, **frozen_ref})


# What a checkpoint state file holds (Trainer: run.save_last).
_STATE_KEYS = ("epoch", "optimizer", "scheduler", "rng", "history", "best", "finished")
# Files a run writes in its folder (besides encoder/ and checkpoints/); none may be an input.
RUN_FILES = ("config.json", "schema.json", "subset.json", "encoder.json", "data.json",
             "model.safetensors", "epochs.csv", "metrics.json")
# What only training writes: a folder without them holds no work to lose.
TRAINED_FILES = ("model.safetensors", "metrics.json", "checkpoints")


class RunDir:
    """Files of one run folder; the last checkpoint is a numbered pair named by last.json, so a
    kill between writing weights and state can never pair one epoch's weights with another's
    optimizer state."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.ckpt = self.path / "checkpoints"

    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def read_json(self, name: str):
        p = self.path / name
        if not p.is_file():
            return None
        return read_json_file(p, f"run file {name}", f"delete {p} (or the whole run folder "
                              f"{self.path}) to train it again from the start")

    def save_last(self, model, state: dict, frozen_ref: dict | None = None) -> None:
        epoch = state["epoch"]
        weights = self.ckpt / f"last-{epoch:04d}.safetensors"
        state_file = self.ckpt / f"state-{epoch:04d}.pt"
        save_weights(model, weights, frozen_ref, epoch=epoch)
        buf = io.BytesIO()
        torch.save(state, buf)
        atomic_write_bytes(state_file, buf.getvalue())
        atomic_write_json(self.ckpt / "last.json", {"epoch": epoch, "weights": weights.name,
                                                    "state": state_file.name})
        for old in self.ckpt.glob("*-[0-9][0-9][0-9][0-9].*"):
            if old.name not in (weights.name, state_file.name):
                old.unlink()

    def load_last(self, model) -> dict | None:
        pointer = self.read_json("checkpoints/last.json")
        if pointer is None:
            return None
        fix = f"delete the folder {self.ckpt} to train the run again from the start"
        if not (isinstance(pointer, dict) and isinstance(pointer.get("weights"), str)
                and isinstance(pointer.get("state"), str)):
            raise InputError('the checkpoint pointer must name "weights" and "state" files',
                             str(self.ckpt / "last.json"), fix)
        load_weights(model, self.ckpt / pointer["weights"])
        state_file = self.ckpt / pointer["state"]
        try:
            state = torch.load(state_file, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises pickle, zip and runtime errors of many kinds
            raise InputError(f"cannot read the checkpoint state ({type(e).__name__}: "
                             f"{str(e)[:200]})", str(state_file), fix) from None
        missing = sorted(set(_STATE_KEYS) - set(state)) if isinstance(state, dict) else list(_STATE_KEYS)
        if missing:
            raise InputError(f"the checkpoint state lacks {', '.join(missing)}", str(state_file), fix)
        return state

    def drop_last(self) -> None:
        for p in self.ckpt.glob("*"):
            p.unlink()
        self.ckpt.rmdir()


def save_encoder_files(encoder, run: RunDir) -> None:
    """Encoder spec, backbone config and tokenizer beside the weights, so that the run folder
    alone rebuilds the model (no cache, no source package of the offline encoder)."""
    atomic_write_json(run / "encoder.json", encoder.spec())
    target = run / "encoder"
    if target.is_dir():
        return
    tmp = run.path / f".encoder.{os.getpid()}.tmp"  # mkdir, not mkdtemp: keep the umask's mode
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        encoder.save_files(tmp)
        os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_epochs_csv(path: Path, history: list[dict]) -> None:
    cols = ["epoch", "train_loss", "dev_p", "dev_r", "dev_f1", "lr_encoder", "lr_head",
            "train_seconds", "seconds"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for row in history:
        w.writerow({c: row.get(c, "") for c in cols})
    atomic_write_text(path, buf.getvalue())
