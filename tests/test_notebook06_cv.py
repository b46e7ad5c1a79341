"""Notebook 06 with selection = "cv": the epoch is chosen by cross-validation over the training
set (the dev split unused), the final model is what gets scored per label, and the scores table
says which selection ran and what the folds estimated."""
import csv
import json
from pathlib import Path

import papermill

from knowfree.provenance import REPO_ROOT


def test_notebook_06_selects_by_cross_validation(tmp_path):
    out = tmp_path / "06.ipynb"
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "06_your_data.ipynb"), str(out),
        parameters={"run_name": "test-06-cv", "results_dir": str(tmp_path / "results"),
                    "selection": "cv", "cv_folds": 2, "epochs": 3, "export_format": "none",
                    "knowledge": "none"},
        kernel_name="python3", progress_bar=False, cwd=str(REPO_ROOT / "notebooks"))
    (row,) = csv.DictReader(open(tmp_path / "results" / "tables" / "test-06-cv.06_scores.csv", encoding="utf-8"))
    assert row["selection"] == "cv" and row["folds"] == "2"
    assert row["dev_f1"] == ""  # the final model has no dev set of its own
    cv_dirs = list((REPO_ROOT / "results" / "runs" / "test-06-cv" / "work" / "cv").glob("*-cv2-*"))
    assert len(cv_dirs) == 1
    record = json.loads((cv_dirs[0] / "cv.json").read_text(encoding="utf-8"))
    assert int(row["chosen_epoch"]) == record["chosen_epoch"] == \
        json.loads((cv_dirs[0] / "final" / "metrics.json").read_text(encoding="utf-8"))["best_epoch"]
    assert abs(float(row["cv_dev_f1"]) - record["cv_dev_f1_mean"]) < 1e-9
    assert abs(float(row["test_f1"]) - 100 * record["final_test"]["f1"]) < 1e-9
    assert Path(record["final_run"]).name == "final"
