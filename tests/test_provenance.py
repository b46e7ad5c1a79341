"""What counts as dirt for a result's git commit: code, params and data yes; a notebook's
outputs, execution counts and the metadata JupyterLab writes on open and autosave no."""
import json
import subprocess

import pytest

from knowfree import provenance


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


@pytest.fixture()
def repo(tmp_path, monkeypatch):
    nb = {"cells": [{"cell_type": "code", "source": ["x = 1\n", "print(x)"], "metadata": {},
                     "outputs": [], "execution_count": None}],
          "metadata": {"language_info": {"name": "python"}}, "nbformat": 4, "nbformat_minor": 5}
    (tmp_path / "n.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    (tmp_path / "m.py").write_text("A = 1\n", encoding="utf-8")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "x")
    monkeypatch.delenv("KNOWFREE_GIT_COMMIT", raising=False)
    monkeypatch.delenv("KNOWFREE_RUN_COMMIT", raising=False)
    monkeypatch.setattr(provenance, "REPO_ROOT", tmp_path)
    return tmp_path, nb


def test_saving_a_notebook_from_jupyterlab_is_not_dirt(repo):
    root, nb = repo
    assert not provenance.git_commit().endswith("+dirty")
    # what JupyterLab writes: outputs, a count, kernel metadata, the source as one string
    saved = json.loads(json.dumps(nb))
    saved["cells"][0].update(outputs=[{"output_type": "stream", "name": "stdout", "text": ["1\n"]}],
                             execution_count=3, source="x = 1\nprint(x)")
    saved["metadata"] = {"kernelspec": {"name": "python3", "display_name": "Python 3"},
                         "language_info": {"name": "python", "version": "3.11.9"}}
    (root / "n.ipynb").write_text(json.dumps(saved, indent=1), encoding="utf-8")
    assert not provenance.git_commit().endswith("+dirty")


@pytest.mark.parametrize("edit", ["cell", "code"])
def test_a_changed_cell_or_module_is_dirt(repo, edit):
    root, nb = repo
    if edit == "cell":
        nb["cells"][0]["source"] = ["x = 2\n", "print(x)"]
        (root / "n.ipynb").write_text(json.dumps(nb), encoding="utf-8")
    else:
        (root / "m.py").write_text("A = 2\n", encoding="utf-8")
    assert provenance.git_commit().endswith("+dirty")


def test_a_sweeps_own_summary_is_not_dirt_for_its_runs(repo, monkeypatch):
    """A sweep run in stages rewrites its tracked summary.csv after each stage; the runs of a
    later stage train the same code and must record a clean commit. Any other change still
    counts."""
    root, _ = repo
    (root / "summary.csv").write_text("a\n", encoding="utf-8")
    _git(root, "add", "summary.csv")
    _git(root, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "y")
    (root / "summary.csv").write_text("a\nb\n", encoding="utf-8")
    assert provenance.git_commit().endswith("+dirty")
    monkeypatch.setenv(*next(iter(provenance.own_outputs_env([root / "summary.csv"]).items())))
    assert not provenance.git_commit().endswith("+dirty")
    (root / "m.py").write_text("A = 2\n", encoding="utf-8")
    assert provenance.git_commit().endswith("+dirty")
