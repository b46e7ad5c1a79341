"""Training under torchrun: two gloo processes on the CPU train as one process does with the
same global batch, up to float summation order (the same selected epoch, dev F1 at every epoch,
the mean training loss of every epoch to 1e-6, every weight within 2e-3); only rank 0 writes
the run folder; a two-process run stopped and resumed equals one that was not stopped, bit for
bit."""
import csv
import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
import yaml
from safetensors.torch import load_file

from knowfree.train import train
from test_train import toy, toy_config  # noqa: F401  (the fixture is used by name)


def torchrun(config_file, run_dir, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "knowfree", "train", str(config_file), "--run-dir", str(run_dir), "--no-progress", *extra]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


@pytest.fixture(scope="module")
def runs(toy, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("ddp")
    # no dropout anywhere (head and encoder), so the two worlds draw no random numbers that differ
    encoder = root / "encoder"
    shutil.copytree(toy[1], encoder)
    cfg = json.loads((encoder / "config.json").read_text(encoding="utf-8"))
    cfg.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (encoder / "config.json").write_text(json.dumps(cfg), encoding="utf-8")
    config = toy_config((toy[0], str(encoder)), epochs=15)
    config["model"]["dropout"] = 0.0
    # batches of 5 over 16 sentences: the last batch of each epoch has 1 sentence, so one rank's
    # shard is empty then
    config["train"].update(batch_size=5, threads=1)
    (root / "config.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    one = train(config, root / "one", progress=False)
    torchrun(root / "config.yaml", root / "two")
    return root, one


def test_two_processes_train_as_one_with_the_same_global_batch(runs):
    root, one = runs
    two = json.loads((root / "two" / "metrics.json").read_text(encoding="utf-8"))
    assert two["world_size"] == 2 and one["world_size"] == 1
    assert two["best_epoch"] == one["best_epoch"] and one["dev"]["f1"] > 0.2
    assert abs(two["dev"]["f1"] - one["dev"]["f1"]) <= 0.01
    assert abs(two["test"]["f1"] - one["test"]["f1"]) <= 0.01
    # every epoch: the same mean training loss to 1e-6 (relative) and the same dev F1
    curves = [list(csv.DictReader((root / r / "epochs.csv").open(encoding="utf-8"))) for r in ("one", "two")]
    assert len(curves[1]) == 15  # one row per epoch: rank 1 wrote nothing
    for x, y in zip(*curves):
        assert abs(float(x["train_loss"]) - float(y["train_loss"])) <= 1e-6 * float(x["train_loss"])
        assert x["dev_f1"] == y["dev_f1"]
    a, b = load_file(str(root / "one" / "model.safetensors")), load_file(str(root / "two" / "model.safetensors"))
    assert a.keys() == b.keys()
    worst = max(float((a[k] - b[k]).abs().max()) for k in a)
    # not zero (the gradients were summed in another order), and small: measured 9.6e-4 after
    # 40 AdamW steps at lr 5e-3, where near-zero gradients turn summation-order noise into
    # updates of up to lr
    assert 0 < worst <= 2e-3


def test_a_two_process_run_resumes_bit_identically(runs):
    root, _ = runs
    torchrun(root / "config.yaml", root / "paused", "--stop-after", "6")
    assert not (root / "paused" / "metrics.json").exists()
    torchrun(root / "config.yaml", root / "paused")
    a, b = load_file(str(root / "two" / "model.safetensors")), load_file(str(root / "paused" / "model.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_accelerate_launch_trains_as_torchrun_does(runs):
    """`accelerate launch --multi_gpu` runs torchrun underneath and sets the same environment, so
    the trainer needs nothing of accelerate: here on 2 CPU processes (gloo), bit for bit the
    torchrun run. (`accelerate launch --cpu --num_processes 2` starts one process unless an
    mpirun hostfile is given: accelerate's multi-CPU path is MPI.)"""
    root, _ = runs
    env = dict(os.environ, OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    cmd = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
           "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
           "-m", "knowfree", "train", str(root / "config.yaml"), "--run-dir", str(root / "accelerate"),
           "--no-progress"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    meta = json.loads((root / "accelerate" / "metrics.json").read_text(encoding="utf-8"))
    assert meta["world_size"] == 2 and done.stdout.count("run folder:") == 1  # rank 0 reports
    a, b = load_file(str(root / "two" / "model.safetensors")), load_file(str(root / "accelerate" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    rows = [list(csv.DictReader((root / r / "epochs.csv").open(encoding="utf-8"))) for r in ("two", "accelerate")]
    assert [(r["train_loss"], r["dev_f1"]) for r in rows[0]] == [(r["train_loss"], r["dev_f1"]) for r in rows[1]]
