"""`reproduce` with `train_ahead`: the runs of notebooks 03-05 are trained side by side before
notebook 03, and they are exactly the runs the notebooks ask for: afterwards the notebooks'
own calls train nothing, and the scores are those the notebooks get training on their own."""
import json
from pathlib import Path

import pytest
import yaml

from knowfree import experiment, reproduce, results
from knowfree import params as P


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RUNS_DIR", tmp_path / "runs")
    return tmp_path / "runs"


def _params(tmp_path, ahead):
    path = tmp_path / f"p{ahead}.yaml"
    path.write_text("# test\n" + yaml.safe_dump({
        "run_name": f"t{ahead}", "train_ahead": ahead,
        "shared": {"results_dir": str(tmp_path / "res"), "epochs": 1, "threads": 2},
        "notebooks": {"03_training": {}, "04_ablations": {
            "jobs": 2, "seeds": [1], "variants": ["fusion_only", "plain", "tagger"], "tagger_epochs": 2}}}),
        encoding="utf-8")
    return P.load(path)


def _as_the_notebooks_do(steps, work):
    """Notebook 03's run (with its weights) and notebook 04's grid, through the notebooks' calls."""
    p03, p04 = (reproduce.notebook_values(s) for s in steps)
    run = experiment.single_run(p03, work, progress=False)
    metrics = experiment.train_run(run.config, work, run.label, progress=False)
    frame, _ = experiment.grid([p04["dataset"]], p04, work, progress=False)
    return metrics, frame


def _stamps(work):
    return {f.name: (f / "metrics.json").stat().st_mtime_ns for f in (work / "train").iterdir()}


def test_runs_trained_ahead_are_the_runs_the_notebooks_ask_for(tmp_path, runs):
    params = _params(tmp_path, 3)
    steps = reproduce.plan(params)
    record = reproduce._train_ahead(params, steps)
    work = runs / "t3" / "work"
    # notebook 03's fusion run is also notebook 04's fusion_only row: three runs, not four
    assert len(record["runs"]) == 3 and record["jobs"] == 3
    trained = _stamps(work)
    assert sorted(trained) == sorted(record["runs"])

    metrics, frame = _as_the_notebooks_do(steps, work)
    assert _stamps(work) == trained  # nothing trained again, nothing new
    assert (Path(metrics["run_dir"]) / "model.safetensors").is_file()  # notebook 03 predicts with it
    assert not [f for f in (work / "train").glob("*/model.safetensors") if f.parent.name != Path(metrics["run_dir"]).name]
    assert list(frame["threads"]) == [2, 1, 1]  # fusion_only is notebook 03's run; the rest at 2 // jobs
    epochs = {f.name.split("-")[-3]: json.loads((f / "config.json").read_text())["train"]["epochs"]
              for f in (work / "train").iterdir()}
    assert epochs == {"knowfree": 1, "tagger": 2}

    # the same notebooks without training ahead score exactly the same
    alone = _params(tmp_path, 0)
    own_metrics, own_frame = _as_the_notebooks_do(reproduce.plan(alone), runs / "t0" / "work")
    cols = ["variant", "dev_f1", "test_f1", "best_epoch", "threads"]
    assert own_frame[cols].to_dict("records") == frame[cols].to_dict("records")
    assert own_metrics["test"] == metrics["test"]
    # and nothing is left to train ahead once the runs exist
    assert reproduce._train_ahead(params, steps)["runs"] == []


def test_train_ahead_must_be_a_count(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text("run_name: t\ntrain_ahead: two\nnotebooks: {03_training: {}}\n", encoding="utf-8")
    with pytest.raises(P.ParamsError, match=r"train_ahead: expected an int >= 0 .*got str 'two'"):
        P.load(path)
    # scheduling only: it does not change the params hash of a file
    assert _params(tmp_path, 3).hash == _params(tmp_path, 0).hash


def _synthesis_params(tmp_path, ahead):
    """The full method with tagger knowledge on MSRA K=50: explanations replayed from the
    committed K=200 cache (the 50 sentences are its first), labelled by the fusion run of seed 1."""
    path = tmp_path / f"syn{ahead}.yaml"
    path.write_text("# test\n" + yaml.safe_dump({
        "run_name": f"syn{ahead}", "train_ahead": ahead,
        "shared": {"results_dir": str(tmp_path / "res"), "epochs": 1, "syn_epochs": 2, "threads": 2,
                   "max_len": 0, "knowledge": "taggers", "synthesis": True, "llm_replay": True,
                   "syn_init": "fusion", "llm_cache": "data/cache/llm/msra-k200-s42"},
        "notebooks": {"02_llm_augmentation": {"k": 50}, "03_training": {"k": 50, "train_set": "syn_fusion"},
                      "04_ablations": {"ks": [50], "jobs": 2, "seeds": [1, 2], "variants": ["full", "plain"]}}}),
        encoding="utf-8")
    return P.load(path)


def test_synthesis_with_tagger_knowledge_trains_its_labeller_once_in_the_first_wave(tmp_path, runs):
    params = _synthesis_params(tmp_path, 3)
    steps = reproduce.plan(params)
    record = reproduce._train_ahead(params, steps)
    work = runs / "syn3" / "work"
    configs = {f.name: json.loads((f / "config.json").read_text()) for f in (work / "train").iterdir()}
    # the labeller (the fusion run of seed 1), plain x 2, full x 2 (seed 1 is notebook 03's run)
    assert len(record["runs"]) == 5 == len(configs)
    [labeller] = [n for n in configs if "-fusion-knowfree-s1-" in n]
    full = {n: c for n, c in configs.items() if "-syn_fusion-" in n}
    assert len(full) == 2 and all(c["train"]["init_from"] == str(work / "train" / labeller) for c in full.values())
    assert all((c["train"]["epochs"], c["train"]["eval_every"]) == (2, 1) for c in full.values())
    assert (work / "train" / labeller / "model.safetensors").is_file()
    trained = _stamps(work)

    p02, p03, p04 = (reproduce.notebook_values(s) for s in steps)
    setting = experiment.prepare("msra", 50, 42, work, 0, p02["eval_limit"])
    know = experiment.augment(setting, p02, work, p02["seed"], progress=False)
    syn = know.stats["synthesis"]
    assert know.stats["llm_usage"]["http_requests"] == 0 and syn["cache_hits"] == 50
    assert syn["pseudo_label"]["run_dir"] == str(work / "train" / labeller)
    assert set(syn["extension"]) == {"taggers"} and know.source == "taggers:lac + synthesis"
    run = experiment.single_run(p03, work, progress=False)
    experiment.train_run(run.config, work, run.label, progress=False)
    frame, skipped = experiment.grid(["msra"], p04, work, progress=False)
    assert _stamps(work) == trained and not skipped  # the notebooks train nothing again
    assert sorted(frame["variant"]) == ["full", "full", "plain", "plain"]
    assert set(frame.loc[frame["variant"] == "full", "init"]) == {"fusion model"}
