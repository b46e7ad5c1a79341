"""Dataset registry: counts against the mirror's README, resolution order, checksums, download."""
import functools
import hashlib
import http.server
import re
import shutil
import threading
from dataclasses import replace

import pytest

from knowfree.data import registry
from knowfree.data.registry import (REGISTRY, ChecksumError, cache_path, get_entry, load_dataset,
                                    open_dataset, resolve_file)
from knowfree.data.sample import Sample
from knowfree.errors import DataNotFound, InputError

# From the README of the dataset mirror ($KNOWFREE_DATA_MIRROR/README.md): the split sizes the registry must reproduce.
README_COUNTS = {
    "weibo": {"train": 1350, "dev": 270, "test": 270},
    "youku": {"train": 8001, "dev": 1000, "test": 1001},
    "conll2003": {"train": 14041, "dev": 3250, "test": 3453},
    "kmou_ko": {"train": 2928, "dev": 366, "test": 366},
}


@pytest.mark.parametrize("name", sorted(README_COUNTS))
def test_mirrored_counts_match_the_readme(mirror, name):
    ds = open_dataset(name)
    assert {k: len(v) for k, v in ds.splits.items()} == README_COUNTS[name]
    assert ds.warnings == []
    assert all(f.source == "mirror" and f.verified for f in ds.files.values())
    assert ds.splits["dev"][3].id == f"{name}-dev-3"
    assert all(s.lang == get_entry(name).lang for s in ds.splits["dev"])


def test_stockmark_split_is_seeded_by_article_and_complete(mirror):
    a, b = load_dataset("stockmark_ja"), load_dataset("stockmark_ja")
    assert sum(len(v) for v in a.values()) == 5343
    assert {k: [s.id for s in v] for k, v in a.items()} == {k: [s.id for s in v] for k, v in b.items()}
    assert {k: len(v) for k, v in a.items()} == REGISTRY["stockmark_ja"].counts
    articles = {k: {s.meta["curid"] for s in v} for k, v in a.items()}
    assert not (articles["train"] & articles["dev"] or articles["train"] & articles["test"]
                or articles["dev"] & articles["test"])
    # every sentence of the file is used exactly once
    assert sorted(s.meta["source_index"] for v in a.values() for s in v) == list(range(5343))


def test_registry_pins_the_mirror_checksums(mirror):
    readme = (mirror / "README.md").read_text(encoding="utf-8")
    listed = dict((path, sha) for sha, path in re.findall(r"^([0-9a-f]{64})  (\S+)$", readme, re.M))
    pinned = {f"{e.name}/{p.split('/')[-1]}": sha for e in REGISTRY.values()
              for p, sha in e.sha256.items() if not e.package}
    for path, sha in pinned.items():
        if sha is not None:
            assert listed[path] == sha, path
    assert {p for p in listed if not p.endswith(("LICENSE", "LICENSE.md"))} == {
        p for p, sha in pinned.items() if sha is not None}


def test_every_entry_is_documented():
    assert set(REGISTRY) == {"weibo", "youku", "conll2003", "stockmark_ja", "kmou_ko", "msra",
                             "resume", "taobao"}
    for e in REGISTRY.values():
        assert e.repo and e.commit and e.licence and e.description and e.labels and e.fmt
        assert set(e.files.values()) == set(e.sha256)
        assert set(e.counts) == {"train", "dev", "test"}
    assert REGISTRY["resume"].commit == "master" and set(REGISTRY["resume"].sha256.values()) == {None}


def test_msra_comes_verified_from_the_wheel(monkeypatch):
    monkeypatch.delenv("KNOWFREE_DATA_MIRROR", raising=False)
    e = REGISTRY["msra"]
    f = resolve_file(e, e.files["test"])
    assert f.source == "package" and f.verified


def test_msra_dev_is_carved_from_train_deterministically():
    train = [Sample(["x"], [], f"t{i}") for i in range(6000)]
    a = registry._carve_dev(train, [])
    b = registry._carve_dev(train, [])
    assert len(a["dev"]) == 5000 and len(a["train"]) == 1000
    assert [s.id for s in a["dev"]] == [s.id for s in b["dev"]]
    assert not {s.id for s in a["dev"]} & {s.id for s in a["train"]}


def test_unknown_dataset():
    with pytest.raises(InputError, match="unknown dataset 'weibo2'.*weibo"):
        load_dataset("weibo2")


# --- resolution: cache, mirror, download ---------------------------------------------------


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    """Each test its own cache, so that what one test downloads cannot answer another."""
    monkeypatch.setenv("KNOWFREE_CACHE", str(tmp_path / "cache"))


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def fake_mirror(tmp_path, monkeypatch):
    root = tmp_path / "mirror"
    monkeypatch.setenv("KNOWFREE_DATA_MIRROR", str(root))
    return root


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A loopback HTTP server standing in for raw.githubusercontent.com."""
    root = tmp_path / "upstream"
    root.mkdir()
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setattr(registry, "UPSTREAM_BASE", f"http://127.0.0.1:{httpd.server_address[1]}")
    yield root
    httpd.shutdown()
    httpd.server_close()


TINY = "我 B-PER\n们 I-PER\n好 O\n\n".encode()


def tiny_entry(monkeypatch, sha):
    e = replace(REGISTRY["youku"], name="tiny", repo="o/r", commit="c0ffee",
                files={"train": "d/train.txt", "dev": "d/train.txt", "test": "d/train.txt"},
                sha256={"d/train.txt": sha}, labels=("PER",), counts={"train": 1, "dev": 1, "test": 1})
    monkeypatch.setitem(REGISTRY, "tiny", e)
    return e


def serve(root, rel, data):
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    (root / rel).write_bytes(data)


def test_download_is_verified_then_cached(server, fake_mirror, monkeypatch):
    e = tiny_entry(monkeypatch, hashlib.sha256(TINY).hexdigest())
    serve(server, "o/r/c0ffee/d/train.txt", TINY)
    ds = open_dataset("tiny")
    assert ds.files["train"].source == "download" and ds.files["train"].verified
    assert cache_path(e, "d/train.txt").read_bytes() == TINY
    assert ds.splits["train"][0].id == "tiny-train-0" and ds.warnings == []
    (server / "o/r/c0ffee/d/train.txt").unlink()  # now only the cache can answer
    assert open_dataset("tiny").files["train"].source == "cache"


def test_download_checksum_mismatch_is_an_error_and_not_cached(server, fake_mirror, monkeypatch):
    e = tiny_entry(monkeypatch, "0" * 64)
    serve(server, "o/r/c0ffee/d/train.txt", TINY)
    with pytest.raises(ChecksumError, match="sha256 .* differs from the pinned 0000"):
        load_dataset("tiny")
    assert not cache_path(e, "d/train.txt").exists()


def test_nothing_found_names_every_place_and_the_fix(server, fake_mirror, monkeypatch):
    tiny_entry(monkeypatch, "0" * 64)
    with pytest.raises(DataNotFound) as err:
        load_dataset("tiny")
    msg = str(err.value)
    assert "dataset 'tiny'" in msg and "cache " in msg and f"mirror {fake_mirror}" in msg
    assert "download http://127.0.0.1" in msg and "KNOWFREE_DATA_MIRROR" in msg
    monkeypatch.delenv("KNOWFREE_DATA_MIRROR")
    with pytest.raises(DataNotFound, match=r"(?s)KNOWFREE_DATA_MIRROR is not set.*download: disabled"):
        load_dataset("tiny", download=False)


def test_mirror_checksum_mismatch_is_an_error(fake_mirror, monkeypatch):
    tiny_entry(monkeypatch, "0" * 64)
    serve(fake_mirror, "tiny/train.txt", TINY)
    with pytest.raises(ChecksumError) as err:
        load_dataset("tiny", download=False)
    assert str(fake_mirror / "tiny" / "train.txt") in str(err.value) and "restore" in str(err.value)


def test_stale_cache_is_ignored_and_the_mirror_used(fake_mirror, monkeypatch):
    e = tiny_entry(monkeypatch, hashlib.sha256(TINY).hexdigest())
    serve(fake_mirror, "tiny/train.txt", TINY)
    cache_path(e, "d/train.txt").parent.mkdir(parents=True, exist_ok=True)
    cache_path(e, "d/train.txt").write_bytes(b"corrupt")
    assert open_dataset("tiny", download=False).files["train"].source == "mirror"
    cache_path(e, "d/train.txt").write_bytes(TINY)
    assert open_dataset("tiny", download=False).files["train"].source == "cache"


def test_cache_comes_before_the_mirror(mirror):
    e = REGISTRY["weibo"]
    for path in e.files.values():
        dst = cache_path(e, path)
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(mirror / "weibo" / path.split("/")[-1], dst)
    ds = open_dataset("weibo")
    assert {f.source for f in ds.files.values()} == {"cache"}
    assert ds.provenance()["files"]["data/weiboNER_2nd_conll.dev"]["sha256"] == e.sha256[
        "data/weiboNER_2nd_conll.dev"]


def test_unpinned_upstream_loads_unverified_with_its_hash_recorded(server, fake_mirror):
    # resume has neither commit nor sha256: the download is accepted and its hash recorded
    bmes = "张 B-NAME\n三 E-NAME\n是 O\n\n".encode()
    for split in ("train", "dev", "test"):
        serve(server, f"jiesutd/LatticeLSTM/master/ResumeNER/{split}.char.bmes", bmes)
    ds = open_dataset("resume")
    assert ds.splits["test"][0].spans[0].label == "NAME"
    prov = ds.provenance()["files"]["ResumeNER/dev.char.bmes"]
    assert prov == {"sha256": hashlib.sha256(bmes).hexdigest(), "verified": False, "source": "download"}
    assert ds.warnings and "differ from the recorded" in ds.warnings[0]
