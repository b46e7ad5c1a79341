"""Parameter files: every problem is named with file, key and expected type before anything runs."""
import json

import pytest
import yaml

from knowfree import params as P
from knowfree.errors import ConfigError

ROOT = P.REPO_ROOT


def _write(tmp_path, data, name="p.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    return path


def _ok():
    return {"run_name": "t", "shared": {"dataset": "msra", "k": 20},
            "notebooks": {"01_data_exploration": {}, "03_training": {"head": "cnn"}}}


def test_valid_file_gives_per_notebook_parameters(tmp_path):
    p = P.load(_write(tmp_path, _ok()))
    assert p.selected() == ["01_data_exploration", "03_training"]
    nb3 = p.for_notebook("03_training")
    assert nb3 == {"run_name": "t", "dataset": "msra", "k": 20, "head": "cnn"}
    # a notebook receives only the shared keys it declares
    raw = _ok()
    raw["shared"]["epochs"] = 2
    assert "epochs" not in P.validate(raw).for_notebook("01_data_exploration")


def test_unknown_key_names_file_and_key(tmp_path):
    raw = _ok()
    raw["shared"]["epoch"] = 3
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as e:
        P.load(path)
    msg = str(e.value)
    assert str(path) in msg and "shared.epoch" in msg and "did you mean 'epochs'" in msg


def test_key_of_another_notebook_is_unknown_in_a_section():
    raw = _ok()
    raw["notebooks"]["01_data_exploration"]["head"] = "cnn"
    with pytest.raises(P.ParamsError, match=r"notebooks\.01_data_exploration\.head: unknown key"):
        P.validate(raw, "x.yaml")


@pytest.mark.parametrize("where,key,value,expected", [
    ("shared", "k", "50", "expected int, got str '50'"),
    ("shared", "k", True, "expected int, got bool True"),
    ("shared", "encoder_lr", "fast", "expected float, got str"),
    ("shared", "llm_replay", "yes please", "expected bool, got str"),
    ("shared", "ks", [20, "40"], "expected list[int]"),
    ("shared", "knowledge", "wikipedia", "'wikipedia' is not one of none, taggers, llm, both"),
    ("shared", "k", 0, "must be >= 1"),
    ("04_ablations", "variants", ["full", "nope"], "'nope' is not one of"),
])
def test_wrong_type_or_value_names_key_and_expected_type(tmp_path, where, key, value, expected):
    raw = _ok()
    raw["notebooks"]["04_ablations"] = {}
    (raw["shared"] if where == "shared" else raw["notebooks"][where])[key] = value
    path = _write(tmp_path, raw)
    with pytest.raises(P.ParamsError) as e:
        P.load(path)
    msg = str(e.value)
    dotted = f"shared.{key}" if where == "shared" else f"notebooks.{where}.{key}"
    assert str(path) in msg and f"{dotted}: " in msg and expected in msg


def test_every_problem_is_reported_at_once():
    raw = {"run_name": "a b", "shared": {"k": "x", "colour": 1}, "notebooks": {"99_nope": {}}, "extra": 1}
    with pytest.raises(P.ParamsError) as e:
        P.validate(raw, "f.yaml")
    assert len(e.value.problems) == 5


def test_disabled_notebooks_do_not_run_and_all_disabled_is_an_error():
    raw = _ok()
    raw["notebooks"]["03_training"]["enabled"] = False
    assert P.validate(raw).selected() == ["01_data_exploration"]
    raw["notebooks"]["01_data_exploration"] = {"enabled": False}
    with pytest.raises(P.ParamsError, match="no notebook is enabled"):
        P.validate(raw)


def test_unreadable_yaml_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("run_name: [unclosed\n", encoding="utf-8")
    with pytest.raises(P.ParamsError, match="not valid YAML"):
        P.load(path)


def test_collect_checks_notebook_globals():
    ns = {k: None for k in P.NOTEBOOKS["01_data_exploration"]}
    ns.update(run_name="r", results_dir="results/runs/r", dataset="msra", k=20, sample_seed=1, max_len=0,
              n_show=3)
    assert P.collect("01_data_exploration", ns)["k"] == 20
    ns["k"] = 2.5
    with pytest.raises(P.ParamsError, match="k: expected int, got float 2.5"):
        P.collect("01_data_exploration", ns)
    del ns["k"]
    with pytest.raises(P.ParamsError, match="k: not defined"):
        P.collect("01_data_exploration", ns)


def test_hash_ignores_output_locations_only():
    a = {"run_name": "a", "results_dir": "x", "k": 20}
    assert P.params_hash(a) == P.params_hash({**a, "run_name": "b", "results_dir": "y"})
    assert P.params_hash(a) != P.params_hash({**a, "k": 21})


@pytest.mark.parametrize("path", sorted((ROOT / "params").rglob("*.yaml")), ids=lambda p: p.name)
def test_shipped_params_files_are_valid_and_say_what_they_reproduce(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].startswith("#"), f"{path} must start with a comment"
    head = [l for l in lines[:next(i for i, l in enumerate(lines) if not l.startswith("#"))]]
    text = " ".join(head).lower()
    assert "reproduces" in text and "wall time" in text and "timed on" in text
    P.load(path)


def _parameters_cell(nb):
    cells = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return "".join(cells[0]["source"])


@pytest.mark.parametrize("name", list(P.NOTEBOOKS))
def test_notebook_parameters_cell_matches_schema(name):
    path = P.NOTEBOOK_DIR / f"{name}.ipynb"
    nb = json.loads(path.read_text(encoding="utf-8"))
    assert nb["metadata"]["kernelspec"]["name"] == "python3"
    assert all(not c.get("outputs") and not c.get("execution_count")
               for c in nb["cells"] if c["cell_type"] == "code"), "store notebooks without outputs"
    ns: dict = {}
    exec(_parameters_cell(nb), ns)  # plain assignments only: that is the nanoGPT-style contract
    ns.pop("__builtins__")
    assert set(ns) == set(P.NOTEBOOKS[name]), "parameters cell and knowfree.params.NOTEBOOKS differ"
    values = P.collect(name, ns)
    assert values["results_dir"].startswith("results/runs/"), \
        "standalone runs (nbval, JupyterLab) must write into the ignored results/runs/"


@pytest.mark.parametrize("name", list(P.NOTEBOOKS))
def test_papermill_reads_every_line_of_the_parameters_cell(name, caplog):
    # papermill's parser skips a line it cannot read with a warning only; the key then has no
    # help text and no type in `papermill --help-notebook` (a comment with `= ""` did that)
    import papermill
    with caplog.at_level("WARNING"):
        found = papermill.inspect_notebook(str(P.NOTEBOOK_DIR / f"{name}.ipynb"))
    assert not [r for r in caplog.records if "Unable to parse" in r.getMessage()]
    assert set(found) == set(P.NOTEBOOKS[name])
