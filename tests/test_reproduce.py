"""Runner and result tables: validation before anything runs, provenance on every row, the index."""
import json

import nbformat
import pandas as pd
import pytest
import yaml

from knowfree.__main__ import call, main
from knowfree import params as P
from knowfree import reproduce, results


@pytest.fixture
def runs(tmp_path, monkeypatch):
    monkeypatch.setattr(results, "RUNS_DIR", tmp_path / "runs")
    return tmp_path / "runs"


def _values(tmp_path, **kw):
    return {"run_name": "t", "results_dir": str(tmp_path / "res"), "dataset": "msra", "k": 20,
            "seed": 1, "max_len": 0, "n_show": 2, **kw}


def test_table_rows_carry_provenance(tmp_path, runs):
    rec = results.Recorder("01_data_exploration", _values(tmp_path))
    df = pd.DataFrame({"split": ["train", "test"], "sentences": [20, 5]})
    out = rec.table(df, "sizes", data={"train": "aaa", "test": "bbb"}, encoder="none",
                    knowledge="none", llm="none")
    written = pd.read_csv(tmp_path / "res" / "tables" / "t.sizes.csv")
    for col in results.PROVENANCE:
        assert col in written.columns and written[col].notna().all()
    assert written["data_hashes"].iloc[0] == "train=aaa test=bbb"
    assert written["params_hash"].iloc[0] == P.params_hash(_values(tmp_path))
    assert list(out.columns) == list(written.columns) == ["split", "sentences", *results.PROVENANCE]
    md = (tmp_path / "res" / "tables" / "t.sizes.md").read_text(encoding="utf-8")
    assert md.startswith("| split | sentences |") and "train=aaa test=bbb" in md


def test_per_row_provenance_is_kept_and_missing_provenance_refused(tmp_path, runs):
    rec = results.Recorder("01_data_exploration", _values(tmp_path))
    df = pd.DataFrame({"variant": ["plain", "full"], "knowledge": ["none", "llm"]})
    out = rec.table(df, "rows", data="train=x", encoder="e", llm="m")
    assert list(out["knowledge"]) == ["none", "llm"]
    with pytest.raises(ValueError, match=r"provenance columns without a value: \['knowledge', 'llm'\]"):
        rec.table(pd.DataFrame({"a": [1]}), "bad", data="train=x", encoder="e")
    with pytest.raises(ValueError, match="knowledge"):
        rec.table(pd.DataFrame({"a": [1], "knowledge": [None]}), "bad", data="d", encoder="e", llm="m")
    assert not (tmp_path / "res" / "tables" / "t.bad.csv").exists()


def test_mean_std_aggregates_and_keeps_provenance():
    df = pd.DataFrame({"k": [20, 20, 40], "variant": ["a", "a", "a"], "f1": [0.5, 0.7, 0.4],
                       "data_hashes": ["h1", "h2", "h3"], "encoder": ["e", "e", "e"], "seed": [1, 2, 1]})
    out = results.mean_std(df, ["k", "variant"], "f1", scale=100)
    row = out.iloc[0]
    assert row["n"] == 2 and row["mean"] == pytest.approx(60) and row["mean ± std"] == "60.00 ± 14.14"
    assert row["data_hashes"] == "h1;h2" and row["encoder"] == "e" and "seed" not in out
    assert out.iloc[1]["mean ± std"] == "40.00"


def test_readme_indexes_files_and_commands(tmp_path, runs):
    rec = results.Recorder("03_training", _values(tmp_path))
    rec.table(pd.DataFrame({"a": [1]}), "scores", data="d", encoder="e", knowledge="k", llm="l")
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, _ = plt.subplots()
    rec.figure(fig, "curve")
    res = tmp_path / "res"
    (res / "tables" / "stray.csv").write_text("a\n1\n")
    (res / "augment" / "r").mkdir(parents=True)
    (res / "augment" / "r" / "stats.json").write_text("{}")
    text = results.write_readme(res).read_text(encoding="utf-8")
    assert "[tables/t.scores.csv]" in text and "notebook 03_training run by hand" in text
    assert "[augment/r/stats.json]" in text and "augment pack RUN_DIR" in text
    assert "[figures/t.curve.png]" in text and "stray.csv" in text
    assert "unknown: not written through knowfree.results" in text
    results.record_run(res, "t", {"command": "python -m knowfree reproduce --params p.yaml",
                                  "wall_s": 60})
    text = results.write_readme(res).read_text(encoding="utf-8")
    assert "`python -m knowfree reproduce --params p.yaml`" in text


def _params_file(tmp_path, notebooks, shared=None):
    path = tmp_path / "p.yaml"
    path.write_text("# test\n" + yaml.safe_dump({"run_name": "t", "shared": shared or {},
                                                 "notebooks": notebooks}), encoding="utf-8")
    return path


def test_invalid_params_fail_before_anything_runs(tmp_path, runs, capsys):
    path = _params_file(tmp_path, {"03_training": {"epoch": 1}})
    assert main(["reproduce", "--params", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "notebooks.03_training.epoch: unknown key" in err
    assert not runs.exists()


def test_dry_run_prints_the_plan_and_runs_nothing(tmp_path, runs, capsys):
    path = _params_file(tmp_path, {"01_data_exploration": {"n_show": 1}, "04_ablations": {"enabled": False}},
                        {"k": 30, "epochs": 1})
    assert main(["reproduce", "--params", str(path), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "01_data_exploration" in out and "04_ablations" not in out
    assert "k = 30" in out and "n_show = 1" in out and "epochs" not in out
    assert "results_dir = 'results'" in out  # a file that names no folder writes the committed one
    assert not runs.exists()


def test_only_selects_by_number_and_rejects_unknown(tmp_path, runs):
    params = P.load(_params_file(tmp_path, {"01_data_exploration": {}, "03_training": {}}))
    assert [s["notebook"] for s in reproduce.plan(params, ["03"])] == ["03_training"]
    with pytest.raises(P.ConfigError, match="--only: no notebook named 07"):
        reproduce.plan(params, ["07"])
    with pytest.raises(P.ConfigError, match="--only: 04 not enabled by"):
        reproduce.plan(params, ["04"])


def _tiny_notebook(path):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [
        nbformat.v4.new_code_cell('run_name = "x"\nresults_dir = "results/runs/x"\nk = 1',
                                  metadata={"tags": ["parameters"]}),
        nbformat.v4.new_code_cell(
            "import pandas as pd\nfrom knowfree.results import Recorder\n"
            "v = dict(run_name=run_name, results_dir=results_dir, k=k)\n"
            "Recorder('01_tiny', v).table(pd.DataFrame({'k': [k]}), 'k', data='d', encoder='e', "
            "knowledge='none', llm='none')"),
    ]
    nbformat.write(nb, str(path))


def test_runner_executes_notebooks_and_indexes_their_results(tmp_path, runs, monkeypatch):
    """End to end with papermill and a real kernel, on a one-cell stand-in notebook."""
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    _tiny_notebook(nbdir / "01_tiny.ipynb")
    monkeypatch.setattr(P, "NOTEBOOK_DIR", nbdir)
    monkeypatch.setattr(P, "NOTEBOOKS", {"01_tiny": ("run_name", "results_dir", "k")})
    res = tmp_path / "res"
    path = _params_file(tmp_path, {"01_tiny": {}}, {"k": 7, "results_dir": str(res)})
    assert call(["reproduce", "--params", str(path)]) == 0
    assert pd.read_csv(res / "tables" / "t.k.csv")["k"].tolist() == [7]
    run = json.loads((runs / "t" / "run.json").read_text())
    assert run["result"] == "ok" and run["notebooks"]["01_tiny"]["result"] == "ok"
    assert (runs / "t" / "01_tiny.ipynb").exists()
    readme = (res / "README.md").read_text(encoding="utf-8")
    assert "[tables/t.k.csv]" in readme and f"--params {path}" in readme


def test_runner_stops_at_a_failing_notebook_and_says_where(tmp_path, runs, monkeypatch, capsys):
    nbdir = tmp_path / "notebooks"
    nbdir.mkdir()
    for name in ("01_tiny", "02_tiny"):
        _tiny_notebook(nbdir / f"{name}.ipynb")
    nb = nbformat.read(str(nbdir / "01_tiny.ipynb"), 4)
    nb.cells.append(nbformat.v4.new_code_cell("raise ValueError('broken on purpose')"))
    nbformat.write(nb, str(nbdir / "01_tiny.ipynb"))
    monkeypatch.setattr(P, "NOTEBOOK_DIR", nbdir)
    keys = ("run_name", "results_dir", "k")
    monkeypatch.setattr(P, "NOTEBOOKS", {"01_tiny": keys, "02_tiny": keys})
    res = tmp_path / "res"
    path = _params_file(tmp_path, {"01_tiny": {}, "02_tiny": {}}, {"results_dir": str(res)})
    assert call(["reproduce", "--params", str(path)]) == 1
    out = capsys.readouterr()
    assert "ValueError: broken on purpose" in out.out and "01_tiny.ipynb" in out.err
    run = json.loads((runs / "t" / "run.json").read_text())
    assert run["result"] == "failed" and "02_tiny" not in run["notebooks"]
    assert "t" not in results.load_index(res)["runs"]  # a failed run is not offered as a result


def test_published_numbers_stand_beside_full_rows_only_and_are_labelled_theirs():
    summary = pd.DataFrame({"dataset": ["weibo", "weibo", "weibo", "msra"], "k": [1000, 1000, 250, 1000],
                            "variant": ["full", "plain", "full", "full"], "mean": [70.0, 60.0, 50.0, 80.0]})
    out = results.with_published(summary)
    assert out["published_f1_theirs"].tolist()[0] == 76.78
    assert out["published_f1_theirs"].iloc[1:].isna().all()
    assert out["published_llm"].iloc[0] == "ChatGLM3-6B"
    refs = results.published_refs(summary)
    assert list(refs.values()) == [76.78] and all(label.startswith("theirs:") for label in refs)
