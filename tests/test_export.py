"""Exported folders (hf and onnx) reproduce their run: the same spans as the run's Predictor and
every target probability of every span cell within 1e-4, loaded by the folder's own loader in a
process where knowfree cannot be imported; on Weibo test with the m3e-small encoder too. Runs
that cannot be exported, and outputs that would replace files, are refused with a message."""
import json
import os
import subprocess
import sys

import pytest

from knowfree import portable
from knowfree.__main__ import main
from knowfree.errors import ConfigError, InputError
from knowfree.export import TOLERANCE, band_difference, export_run
from knowfree.predict import Predictor
from knowfree.train import train
from test_train import toy, toy_config, toy_samples  # noqa: F401  (the fixture is used by name)


@pytest.fixture(scope="module")
def toy_run(toy, tmp_path_factory):  # noqa: F811
    # a low threshold and a span width below the sentences' length: decoding has many
    # candidates to choose among and the band is narrower than the grid
    config = toy_config(toy, epochs=15)
    config["model"].update(max_span_length=8, threshold=0.3)
    run = tmp_path_factory.mktemp("run") / "run"
    metrics = train(config, run, progress=False)
    assert metrics["dev"]["f1"] > 0.3  # the comparison below is about real spans
    return run


@pytest.fixture(scope="module", params=["hf", "onnx"])
def exported(request, toy_run, tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / request.param
    info = export_run(toy_run, out, request.param)
    return request.param, out, info


def test_the_export_gives_the_runs_spans_and_probabilities(exported, toy_run):
    fmt, out, info = exported
    predictor = Predictor.load(toy_run, precision="fp32")
    folder = portable.load(out)
    texts = ["".join(s.tokens) for s in toy_samples(12, 5, "new")]
    ours, theirs = folder.predict(texts), predictor.predict(texts)
    assert sum(map(len, theirs)) >= 6  # not a comparison of empty lists
    assert [[(s["start"], s["end"], s["label"]) for s in t] for t in ours] == \
           [[(s["start"], s["end"], s["label"]) for s in t] for t in theirs]
    assert max(abs(a["prob"] - b["prob"]) for x, y in zip(ours, theirs) for a, b in zip(x, y)) <= TOLERANCE
    assert band_difference(predictor.model, folder, [list(t) for t in texts], "zh") <= TOLERANCE
    assert info["checked"]["same_spans"] and info["checked"]["max_abs_diff"] <= TOLERANCE
    files = {p.name for p in out.iterdir()}
    assert {"knowfree_model.py", "knowfree.json", "README.md", "tokenizer"} <= files
    assert ("model.onnx" in files) == (fmt == "onnx") and ("encoder" in files) == (fmt == "hf")
    card = json.loads((out / "knowfree.json").read_text(encoding="utf-8"))
    assert card["source"]["config_hash"] == json.loads((toy_run / "metrics.json").read_text())["config_hash"]
    assert card["labels"]["targets"] == ["LOC", "PER"]


def test_the_folder_loads_where_knowfree_cannot_be_imported(exported, toy_run):
    fmt, out, _ = exported
    texts = ["".join(s.tokens) for s in toy_samples(4, 7, "new")]
    # knowfree (and for onnx, torch) blocked: the folder must bring all it needs
    blocked = ["knowfree"] + (["torch"] if fmt == "onnx" else [])
    code = (f"import sys, json\nfor m in {blocked!r}: sys.modules[m] = None\n"
            f"sys.path.insert(0, {str(out)!r})\nimport knowfree_model\n"
            f"print(json.dumps(knowfree_model.load({str(out)!r}).predict({texts!r})))")
    env = dict(os.environ, PYTHONPATH="")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          cwd=out, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    theirs = Predictor.load(toy_run, precision="fp32").predict(texts)
    ours = json.loads(done.stdout.strip().splitlines()[-1])
    assert [[(s["start"], s["end"], s["label"]) for s in t] for t in ours] == \
           [[(s["start"], s["end"], s["label"]) for s in t] for t in theirs]


def test_unexportable_runs_and_clobbering_outputs_are_refused(toy, toy_run, tmp_path, capsys):  # noqa: F811
    config = toy_config(toy, epochs=1)
    config["model"]["head"] = "cnn"
    train(config, tmp_path / "cnn", progress=False)
    with pytest.raises(ConfigError, match="model.head='cnn'"):
        export_run(tmp_path / "cnn", tmp_path / "out-cnn")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "keep.txt").write_text("mine")
    with pytest.raises(InputError, match="not an empty folder"):
        export_run(toy_run, tmp_path / "full")
    assert (tmp_path / "full" / "keep.txt").read_text() == "mine"
    with pytest.raises(InputError, match="inside the run folder"):
        export_run(toy_run, toy_run / "export")
    with pytest.raises(SystemExit):  # argparse: "invalid choice: 'tflite' (choose from hf, onnx)"
        main(["export", str(toy_run), str(tmp_path / "x"), "--format", "tflite"])
    assert main(["export", str(tmp_path / "nothing"), str(tmp_path / "y")]) == 1
    assert "not a trained run folder" in capsys.readouterr().err
    assert not (tmp_path / "y").exists() and not (tmp_path / ".y.partial").exists()


def test_weibo_test_through_both_exports_with_m3e(mirror, tmp_path):
    """A short m3e-small run on Weibo, exported both ways and compared with its Predictor on all
    270 test sentences. Two epochs on 50 sentences teach the head only that almost every cell is
    empty (its largest test probability was 0.018); the classifier's bias is then raised by 12,
    so that cells spread over the whole (0, 1) range and the decoder has hundreds of
    overlapping candidates to choose among: parity is a property of the computation, for any
    weights."""
    from safetensors import safe_open

    from knowfree.data.registry import load_dataset
    from knowfree.m3e import build_m3e_offline
    from knowfree.checkpoints import write_weights

    build_m3e_offline()
    config = {"data": {"dataset": "weibo", "k": 50, "sample_seed": 42},
              "model": {"encoder": "m3e-small-offline", "freeze_embeddings": True,
                        "max_span_length": 16},
              "train": {"epochs": 2, "batch_size": 8, "head_lr": 5e-3, "encoder_lr": 5e-5,
                        "threads": 2, "precision": "fp32", "eval_every": 2}}
    train(config, tmp_path / "run", progress=False)
    weights = tmp_path / "run" / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        metadata, state = f.metadata(), {k: f.get_tensor(k) for k in f.keys()}
    state["head.classifier.bias"] = state["head.classifier.bias"] + 12.0
    write_weights(weights, state, metadata)

    texts = ["".join(s.tokens) for s in load_dataset("weibo")["test"]]
    predictor = Predictor.load(tmp_path / "run", precision="fp32")
    theirs = predictor.predict(texts)
    assert sum(map(len, theirs)) >= 200
    assert max(s["prob"] for t in theirs for s in t) < 0.9999  # not saturated: differences show
    for fmt in ("hf", "onnx"):
        info = export_run(tmp_path / "run", tmp_path / fmt, fmt, texts[:20])
        folder = portable.load(tmp_path / fmt)
        ours = folder.predict(texts)
        assert [[(s["start"], s["end"], s["label"]) for s in t] for t in ours] == \
               [[(s["start"], s["end"], s["label"]) for s in t] for t in theirs], fmt
        worst = band_difference(predictor.model, folder, [list(t) for t in texts], "zh")
        assert worst <= TOLERANCE, (fmt, worst)
        assert info["encoder"]["licence"].startswith("non-commercial")
