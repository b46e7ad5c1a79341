"""results/tables/main.*: every number is its knowledge table's, and the committed file is what
scripts/main_table.py writes from the committed tables today (apart from the producing commit)."""
import csv
import importlib.util
import re

from knowfree.provenance import REPO_ROOT

spec = importlib.util.spec_from_file_location("main_table", REPO_ROOT / "scripts" / "main_table.py")
main_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(main_table)
spec = importlib.util.spec_from_file_location("ablation_figure", REPO_ROOT / "scripts" / "ablation_figure.py")
ablation_figure = importlib.util.module_from_spec(spec)
spec.loader.exec_module(ablation_figure)


def _without_commit(text: str) -> str:
    return re.sub(r"Produced by `python scripts/main_table.py` at \S+", "", text)


def test_committed_main_table_is_regenerated_from_the_knowledge_tables():
    csv_text, md = main_table.build()
    assert (REPO_ROOT / "results/tables/main.csv").read_text(encoding="utf-8") == csv_text
    assert _without_commit((REPO_ROOT / "results/tables/main.md").read_text(encoding="utf-8")) == _without_commit(md)


def test_every_done_cell_equals_its_knowledge_table_row():
    rows = list(csv.DictReader(open(REPO_ROOT / "results/tables/main.csv", encoding="utf-8")))
    done = [r for r in rows if r["status"] == "done"]
    assert done and {r["column"] for r in done} >= {"plain", "ext_llm", "full_warm"}
    for r in done:
        source = {s["variant"]: s for s in csv.DictReader(open(REPO_ROOT / r["source"], encoding="utf-8"))}
        s = source[r["variant"]]
        assert (r["test_f1_mean"], r["test_f1_std"], r["test_f1_per_seed"]) == \
            (s["test_f1_mean"], s["test_f1_std"], s["test_f1_per_seed"])
        if r["column"] != "plain":
            assert (r["test_diff_vs_plain"], r["test_diff_ci95"]) == (s["test_diff_vs_gold"], s["test_diff_ci95"])
    # a cell not run names no number
    assert all(r["test_f1_mean"] == "" for r in rows if r["status"] == "not run")


def test_committed_ablation_table_is_regenerated_from_the_main_table():
    """results/tables/ablation.md is what scripts/ablation_figure.py writes from main.csv now, and
    every drawn point is a done cell of main.csv with its interval."""
    md, points = ablation_figure.build()
    committed = (REPO_ROOT / "results/tables/ablation.md").read_text(encoding="utf-8")
    strip = lambda t: re.sub(r"scripts/ablation_figure.py` at \S+", "", t)  # noqa: E731
    assert strip(committed) == strip(md)
    rows = {(r["dataset"], int(r["k"]), r["column"]): r
            for r in csv.DictReader(open(REPO_ROOT / "results/tables/main.csv", encoding="utf-8"))}
    labels = dict(ablation_figure.COMPONENTS)
    drawn = 0
    for (dataset, k), pts in points.items():
        for column, label in labels.items():
            r = rows[(dataset, k, column)]
            got = [p for p in pts if p[0] == label]
            assert bool(got) == (r["status"] == "done")
            if got:
                drawn += 1
                assert f"{got[0][1]:+.2f}" == r["test_diff_vs_plain"]
                assert f"[{got[0][2]:+.2f}, {got[0][3]:+.2f}]" == r["test_diff_ci95"]
    assert drawn >= 5
