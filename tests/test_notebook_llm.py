"""The LLM path of notebook 02, headless: Weibo K=250 label extension replayed from the
committed response cache (data/cache/llm/weibo-k250-s42), so no server and no request."""
import csv


import papermill

from knowfree.provenance import REPO_ROOT


def test_notebook_02_replays_llm_label_extension_from_the_committed_cache(mirror, tmp_path, monkeypatch):
    # any attempt to reach a server would fail loudly
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("KNOWFREE_DATA_MIRROR", str(mirror.resolve()))  # the kernel runs elsewhere
    out = tmp_path / "02.ipynb"
    papermill.execute_notebook(
        str(REPO_ROOT / "notebooks" / "02_llm_augmentation.ipynb"), str(out),
        parameters={"run_name": "llm-replay", "results_dir": str(tmp_path / "results"),
                    "dataset": "weibo", "k": 250, "sample_seed": 42, "max_len": 0, "knowledge": "llm",
                    "llm_replay": True, "synthesis": False, "n_show": 2},
        kernel_name="python3", progress_bar=False, cwd=str(REPO_ROOT / "notebooks"))
    rows = list(csv.DictReader(open(tmp_path / "results" / "tables" / "llm-replay.02_knowledge.csv")))
    assert rows and all("replayed from cache" in r["llm"] for r in rows)
    assert any(r["knowledge"].startswith("llm:") for r in rows)
