"""Notebooks 04/05 train their grid `jobs` at a time in spawned processes: the parallel grid
scores exactly what the same configs score one after another, and a run that already exists
(notebook 03's) is reused, not retrained with fewer threads."""
import json
from pathlib import Path

import pytest

from knowfree import experiment, reproduce

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "04_ablations.ipynb"


def _defaults() -> dict:
    """The smoke settings of notebook 04's parameters cell."""
    return reproduce.notebook_values({"notebook": "04_ablations", "input": NOTEBOOK, "parameters": {}})


def _scores(frame):
    return frame[["variant", "seed", "dev_f1", "test_f1", "best_epoch", "threads"]].to_dict("records")


def test_parallel_grid_equals_the_same_runs_in_sequence(tmp_path):
    P = {**_defaults(), "ks": [20], "seeds": [1], "variants": ["plain", "tagger", "cnn"],
         "knowledge": "none", "epochs": 2, "threads": 2}
    # a run that already exists at the notebook's own thread count (as notebook 03's would)
    first, _ = experiment.grid(["msra"], {**P, "variants": ["plain"], "jobs": 1}, tmp_path / "par")
    parallel, _ = experiment.grid(["msra"], {**P, "jobs": 2}, tmp_path / "par")
    assert list(parallel["threads"]) == [2, 1, 1]  # plain reused; the other two trained with 2 // 2
    assert _scores(parallel)[0] == _scores(first)[0]
    folders = sorted(p.name for p in (tmp_path / "par" / "train").iterdir())
    assert len(folders) == 3
    # a grid keeps only scores: the runs the workers trained leave no weights behind
    assert not list((tmp_path / "par" / "train").glob("*/model.safetensors"))

    sequential, _ = experiment.grid(["msra"], {**P, "variants": ["tagger", "cnn"], "threads": 1, "jobs": 1},
                                    tmp_path / "seq")
    assert _scores(parallel)[1:] == _scores(sequential)
    again, _ = experiment.grid(["msra"], {**P, "jobs": 2}, tmp_path / "par")  # nothing left to train
    assert _scores(again) == _scores(parallel)
    assert sorted(p.name for p in (tmp_path / "par" / "train").iterdir()) == folders


def test_tagger_epochs_lengthen_the_tagger_runs_only(tmp_path):
    P = {**_defaults(), "ks": [20], "seeds": [1], "variants": ["plain", "tagger"], "knowledge": "none",
         "epochs": 1, "tagger_epochs": 3, "threads": 1, "jobs": 1}
    frame, _ = experiment.grid(["msra"], P, tmp_path)
    trained = {}
    for folder in (tmp_path / "train").iterdir():
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
        epochs = (folder / "epochs.csv").read_text(encoding="utf-8").strip().splitlines()[1:]
        trained[config["model"]["head"]] = (config["train"]["epochs"], len(epochs))
    assert trained == {"knowfree": (1, 1), "tagger": (3, 3)}
    # 0 (the notebooks' default) means: as many as every other head
    same, _ = experiment.grid(["msra"], {**P, "tagger_epochs": 0}, tmp_path / "zero")
    assert sorted(int(json.loads((f / "config.json").read_text())["train"]["epochs"])
                  for f in (tmp_path / "zero" / "train").iterdir()) == [1, 1]


def test_a_grid_on_ray_trains_the_runs_the_process_backend_trains(tmp_path):
    """`grid_backend: ray`: each run one Ray task of a local instance the grid starts, with the
    worker function of the process backend, so the same folders and scores."""
    from knowfree.sweep import RayUnavailable

    P = {**_defaults(), "ks": [20], "seeds": [1], "variants": ["plain", "tagger"], "knowledge": "none",
         "epochs": 2, "threads": 2, "jobs": 2}
    try:
        via_ray, _ = experiment.grid(["msra"], {**P, "grid_backend": "ray"}, tmp_path / "ray")
    except RayUnavailable as e:
        pytest.skip(f"Ray cannot start on this machine: {e}")
    via_proc, _ = experiment.grid(["msra"], {**P, "grid_backend": "process"}, tmp_path / "proc")
    assert _scores(via_ray) == _scores(via_proc)
    # the same runs (names without their config hash, which holds each work folder's own path)
    assert sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "ray" / "train").iterdir()) == \
        sorted(p.name.rsplit("-", 1)[0] for p in (tmp_path / "proc" / "train").iterdir())
    assert not list((tmp_path / "ray" / "train").glob("*/model.safetensors"))


@pytest.mark.parametrize("victim", ["parent", "worker"])
def test_a_terminated_grid_stops_its_workers(tmp_path, victim):
    """`kill PID` of a process training a grid (a notebook kernel, `reproduce`): its worker
    processes end with it instead of writing on into run folders the next call would train
    again. A worker killed from outside (out of memory) fails the grid instead of hanging it."""
    import signal
    import subprocess
    import sys
    import time

    script = tmp_path / "grid.py"
    script.write_text(f"""
import sys
sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from pathlib import Path
from test_train import toy_samples, toy_config, FILLER, PEOPLE, PLACES
from knowfree.data.formats import write
from knowfree.encoder import build_tiny_encoder
from knowfree import experiment

if __name__ == "__main__":  # the workers are spawned: they import this file again
    root = Path({str(tmp_path)!r})
    encoder = build_tiny_encoder(root / "encoder", [FILLER + "".join(PEOPLE + PLACES)])
    for split, seed in (("train", 0), ("dev", 1), ("test", 2)):
        write(toy_samples(16, seed, split), root / f"{{split}}.jsonl", "jsonl")
    configs = [(toy_config((root, encoder), epochs=400, seed=s), f"long-{{s}}") for s in (0, 1)]
    experiment.train_many(configs, root / "work", jobs=2, progress=False)
""", encoding="utf-8")
    parent = subprocess.Popen([sys.executable, str(script)])
    workers = []
    for _ in range(1200):  # until both workers train (each writes its epochs.csv)
        if len(list((tmp_path / "work").glob("train/*/epochs.csv"))) == 2:
            workers = subprocess.run(["pgrep", "-P", str(parent.pid)], capture_output=True, text=True).stdout.split()
            break
        time.sleep(0.1)
    assert len(workers) >= 2, "the two workers never started"
    if victim == "worker":
        trainer = next(pid for pid in workers  # a worker, not multiprocessing's resource tracker
                       if "resource_tracker" not in open(f"/proc/{pid}/cmdline").read())
        subprocess.run(["kill", "-9", trainer])
        assert parent.wait(timeout=120) == 1  # BrokenProcessPool: the grid fails, it does not wait
    else:
        parent.send_signal(signal.SIGTERM)
        assert parent.wait(timeout=60) == 128 + signal.SIGTERM
    for _ in range(100):
        alive = [pid for pid in workers if subprocess.run(["ps", "-p", pid], capture_output=True).returncode == 0]
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"worker processes {alive} outlived their parent"
