"""Hostile input at every command-line entry point (issue 14): each case is one command with a bad
(or tricky) input. Every case checks the exit status, that no Python traceback was printed, that
the message names the file and line or the flag at fault, that no input file changed (content
and mode), and that no output, finished or half-written, exists unless the case expects it.

The commands run in this process through ``knowfree.__main__.main``; one tiny run, trained for
one epoch of two, serves every predict case and, copied and damaged, the resume cases."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest
import torch
import yaml

from knowfree.__main__ import main as knowfree_main
from knowfree.data.formats import write
from knowfree.data.sample import Sample, Span
from knowfree.encoder import build_tiny_encoder

FILLER = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可主发年动同工也能下过"
NAMES = ["王小明", "赵丽", "东京"]


def toy(n: int, prefix: str, ids: bool = True) -> list[Sample]:
    out = []
    for i in range(n):
        name = NAMES[i % len(NAMES)]
        tokens = list(FILLER[i % 7:i % 7 + 2] + name + FILLER[i % 5])
        out.append(Sample(tokens, [Span(2, 2 + len(name), "LOC" if name == "东京" else "PER")],
                          f"{prefix}-{i}" if ids else ""))
    return out


def jline(**record) -> str:
    return json.dumps({"text": ["北", "京"], "entities": [], **record}) + "\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Shared inputs: toy data, a train config, an unfinished tiny run, a sweep and params."""
    w = tmp_path_factory.mktemp("hostile")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    encoder = build_tiny_encoder(w / "enc", [FILLER + "".join(NAMES)])
    write(toy(12, "train"), w / "train.jsonl", "jsonl")
    write(toy(6, "dev"), w / "dev.jsonl", "jsonl")
    write(toy(4, "test"), w / "test.jsonl", "jsonl")
    write(toy(3, "", ids=False), w / "noid.jsonl", "jsonl")
    shutil.copy(w / "noid.jsonl", w / "noid_copy.jsonl")
    write(toy(3, "", ids=False), w / "gold.conll", "conll")
    write(toy(3, "", ids=False), w / "pred.conll", "conll")
    write(toy(2, "", ids=False), w / "short.jsonl", "jsonl")
    config = {"data": {"train_file": str(w / "train.jsonl"), "dev_file": str(w / "dev.jsonl"),
                       "test_file": str(w / "test.jsonl")},
              "model": {"encoder": encoder, "channels": 16, "biaffine_heads": 2, "attention_heads": 2,
                        "size_embedding": 8},
              "train": {"epochs": 2, "batch_size": 4, "threads": 1}}
    (w / "cfg.yaml").write_text(yaml.safe_dump(config), encoding="utf-8")
    (w / "sweep.yaml").write_text(yaml.safe_dump(
        {"base": str(w / "cfg.yaml"), "groups": [{"name": "g", "grid": {"train.seed": [0, 1]}}]}),
        encoding="utf-8")
    (w / "params.yaml").write_text(yaml.safe_dump(
        {"run_name": "hostile", "shared": {"results_dir": "results/runs/hostile"},
         "notebooks": {"01_data_exploration": {}}}), encoding="utf-8")
    (w / "texts.txt").write_text("赵丽去东京\n王小明\n", encoding="utf-8")
    assert knowfree_main(["train", str(w / "cfg.yaml"), "--run-dir", str(w / "run"), "--stop-after", "1",
                          "--no-progress"]) == 0
    yield w
    torch.set_num_threads(threads)


@dataclass
class Case:
    id: str
    argv: list[str]  # "{w}": the shared world folder, "{d}": this case's own folder
    code: int  # expected exit status
    names: tuple[str, ...] = ()  # what stderr must name: the file (and line) or the flag
    setup: Callable[[Path, Path], None] | None = None  # (w, d): write this case's inputs into d
    creates: tuple[str, ...] = ()  # outputs the case may write (paths or folders)
    check: Callable[[Path, Path, str], None] | None = None  # (w, d, stderr) after the command


CASES: list[Case] = []


def case(*args, **kwargs) -> None:
    CASES.append(Case(*args, **kwargs))


def files(**content: str | bytes):
    """A setup writing each file ``name=content`` into the case folder (``__`` stands for '.';
    in text, ``{w}`` and ``{d}`` stand for the two folders)."""
    def setup(w: Path, d: Path) -> None:
        for name, data in content.items():
            if isinstance(data, str):
                data = data.replace("{w}", str(w)).replace("{d}", str(d)).encode("utf-8")
            (d / name.replace("__", ".")).write_bytes(data)
    return setup


def run_copy(damage: Callable[[Path], None] | None = None):
    """A setup copying the shared unfinished run into d/run, then damaging it."""
    def setup(w: Path, d: Path) -> None:
        shutil.copytree(w / "run", d / "run")
        if damage:
            damage(d / "run")
    return setup


def links(target: str, link: str, hard: bool = False, src: str = "{w}/noid.jsonl"):
    def setup(w: Path, d: Path) -> None:
        shutil.copy(src.format(w=w), d / target)
        (os.link if hard else os.symlink)(d / target, d / link)
    return setup


# -- data convert: outputs that are inputs, bad paths -------------------------------------
CONVERT = ["data", "convert"]
case("convert-same-path", CONVERT + ["{d}/a.conll", "{d}/a.conll", "--from", "conll", "--to", "jsonl"], 1,
     ("OUTPUT {d}/a.conll", "INPUT"), links("a.conll", "unused", src="{w}/gold.conll"))
case("convert-symlink", CONVERT + ["{d}/a.conll", "{d}/l.conll", "--from", "conll", "--to", "jsonl"], 1,
     ("OUTPUT {d}/l.conll",), links("a.conll", "l.conll", src="{w}/gold.conll"))
case("convert-hard-link", CONVERT + ["{d}/a.conll", "{d}/h.conll", "--from", "conll", "--to", "jsonl"], 1,
     ("OUTPUT {d}/h.conll",), links("a.conll", "h.conll", hard=True, src="{w}/gold.conll"))
case("convert-dotdot-path", CONVERT + ["{d}/a.jsonl", "{d}/../{id}/a.jsonl", "--from", "jsonl", "--to", "conll"],
     1, ("OUTPUT",), links("a.jsonl", "unused"))
case("convert-symlinked-folder", CONVERT + ["{d}/a.jsonl", "{d}/dir/a.jsonl", "--from", "jsonl", "--to", "jsonl"],
     1, ("OUTPUT {d}/dir/a.jsonl",),
     lambda w, d: (shutil.copy(w / "noid.jsonl", d / "a.jsonl"), os.symlink(d, d / "dir")))
case("convert-output-is-folder", CONVERT + ["{w}/noid.jsonl", "{d}", "--from", "jsonl", "--to", "conll"], 1,
     ("OUTPUT {d}", "folder"))
case("convert-output-parent-is-file", CONVERT + ["{w}/noid.jsonl", "{d}/f/out.conll", "--from", "jsonl",
                                                 "--to", "conll"], 1, ("OUTPUT {d}/f/out.conll",), files(f="x"))
case("convert-output-is-a-pipe", CONVERT + ["{w}/noid.jsonl", "{d}/pipe", "--from", "jsonl", "--to", "conll"], 1,
     ("OUTPUT {d}/pipe", "pipe"), lambda w, d: os.mkfifo(d / "pipe"))
case("convert-gz-copy-of-itself-is-fine", CONVERT + ["{w}/noid.jsonl", "{d}/noid.jsonl.gz", "--from", "jsonl",
                                                     "--to", "jsonl"], 0, creates=("{d}/noid.jsonl.gz",))


def mode_kept(w: Path, d: Path, err: str) -> None:
    assert stat.S_IMODE((d / "out.jsonl").stat().st_mode) == 0o600
    assert (d / "out.jsonl").read_text(encoding="utf-8").startswith('{"text"')


def old_output(w: Path, d: Path) -> None:
    (d / "out.jsonl").write_text("old\n", encoding="utf-8")
    (d / "out.jsonl").chmod(0o600)


case("convert-replaces-keeping-mode", CONVERT + ["{w}/gold.conll", "{d}/out.jsonl", "--from", "conll", "--to",
                                                 "jsonl"], 0, setup=old_output, creates=("{d}/out.jsonl",),
     check=mode_kept)

# -- data convert: bad input files ---------------------------------------------------------
for name, content, where in [
    ("non-utf8", b"a O\n\xb1\xb1 B-PER\n\n", ":2"),
    ("gbk-jsonl", '{"text": ["北"], "entities": []}\n'.encode("gbk"), ":1"),
    ("weight-string", jline(weight="heavy"), ":1"),
    ("weight-negative", jline(weight=-1), ":1"),
    ("weight-nan", '{"text": ["a"], "entities": [], "weight": NaN}\n', ":1"),
    ("weight-infinite", '{"text": ["a"], "entities": [], "weight": Infinity}\n', ":1"),
    ("weight-bool", jline(weight=True), ":1"),
    ("weight-list", jline(weight=[1]), ":1"),
    ("meta-list", jline(meta=[1, 2]), ":1"),
    ("meta-string", jline(meta="x"), ":1"),
    ("synthetic-string", jline(synthetic="no"), ":1"),
    ("lang-number", jline(lang=3), ":1"),
    ("source-id-number", jline(source_id=5), ":1"),
    ("malformed-json", '{"text": ["a"], "entities": [}\n', ":1"),
    ("json-not-object", "[1, 2]\n", ":1"),
    ("text-not-tokens", jline(text=[1, 2]), ":1"),
    ("entity-not-int", jline(entities=[{"start": "0", "end": 1, "entity": "PER"}]), ":1"),
    ("entity-outside", jline(entities=[{"start": 0, "end": 9, "entity": "PER"}]), ":1"),
    ("entity-missing-keys", jline(entities=[{"start": 0}]), ":1"),
    ("nul-line", "\x00" * 8192 + "\n", ":1"),
]:
    suffix = "conll" if name == "non-utf8" else "jsonl"
    case(f"convert-{name}", CONVERT + [f"{{d}}/in.{suffix}", "{d}/out.jsonl", "--from", suffix, "--to", "jsonl"],
         1, (f"{{d}}/in.{suffix}{where}",), files(**{f"in__{suffix}": content}))


def short_message(w: Path, d: Path, err: str) -> None:
    assert len(err) < 600, err  # 8 KB of NUL bytes are not echoed


case("convert-long-conll-line-cut", CONVERT + ["{d}/in.conll", "{d}/out.jsonl", "--from", "conll", "--to", "jsonl"],
     1, ("{d}/in.conll:1", "characters)"), files(in__conll="\x00" * 8192 + "\n"), check=short_message)
case("convert-missing-input", CONVERT + ["{d}/nope.jsonl", "{d}/out.jsonl", "--from", "jsonl", "--to", "conll"], 1,
     ("{d}/nope.jsonl", "not found"))
case("convert-input-is-folder", CONVERT + ["{d}", "{d}/out.jsonl", "--from", "jsonl", "--to", "conll"], 1, ("{d}",))
case("convert-empty-input", CONVERT + ["{d}/in.jsonl", "{d}/out.conll", "--from", "jsonl", "--to", "conll"], 1,
     ("{d}/in.jsonl", "empty"), files(in__jsonl="\n\n"))
case("convert-damaged-gzip", CONVERT + ["{d}/in.jsonl.gz", "{d}/out.conll", "--from", "jsonl", "--to", "conll"], 1,
     ("{d}/in.jsonl.gz", "gzip"), files(in__jsonl__gz=b"\x1f\x8b\x08\x00garbage"))
case("convert-unknown-lang", CONVERT + ["{w}/gold.conll", "{d}/o.jsonl", "--from", "conll", "--to", "jsonl",
                                      "--lang", "xx"], 2, ("--lang", "'xx'", "'zh', 'en', 'ja', 'ko'"))
case("convert-unknown-from", CONVERT + ["{w}/noid.jsonl", "{d}/o", "--from", "xml", "--to", "conll"], 2, ("--from",))
case("convert-unknown-tag-prefix", CONVERT + ["{d}/in.conll", "{d}/o.jsonl", "--from", "conll", "--to", "jsonl"], 1,
     ("{d}/in.conll:1", "--scheme BIO"), files(in__conll="a X-PER\n\n"))
case("convert-bad-scheme", CONVERT + ["{w}/gold.conll", "{d}/o.jsonl", "--from", "conll", "--to", "jsonl",
                                      "--scheme", "IOX"], 1, ("{w}/gold.conll", "IOX"))
case("convert-malformed-conll-line", CONVERT + ["{d}/in.conll", "{d}/o.jsonl", "--from", "bio", "--to", "jsonl"], 1,
     ("{d}/in.conll:2", "--from weibo"), files(in__conll="a O\nb\n\n"))
case("convert-weibo-digits-missing", CONVERT + ["{d}/in.txt", "{d}/o.jsonl", "--from", "weibo", "--to", "jsonl"], 1,
     ("{d}/in.txt:1", "--from conll"), files(in__txt="我\tO\n\n"))
case("convert-overlap-needs-flag", CONVERT + ["{d}/in.jsonl", "{d}/o.conll", "--from", "jsonl", "--to", "conll"], 1,
     ("--on-overlap drop",), files(in__jsonl=jline(entities=[{"start": 0, "end": 2, "entity": "A"},
                                                             {"start": 1, "end": 2, "entity": "B"}])))
case("convert-overlap-dropped", CONVERT + ["{d}/in.jsonl", "{d}/o.conll", "--from", "jsonl", "--to", "conll",
                                           "--on-overlap", "drop"], 0,
     setup=files(in__jsonl=jline(entities=[{"start": 0, "end": 2, "entity": "A"},
                                           {"start": 1, "end": 2, "entity": "B"}])), creates=("{d}/o.conll",))
case("convert-scheme-flag-for-jsonl", CONVERT + ["{w}/noid.jsonl", "{d}/o.conll", "--from", "jsonl", "--to",
                                                 "conll", "--scheme", "BIO"], 1, ("--scheme", "reading jsonl"))
case("convert-to-scheme-for-jsonl", CONVERT + ["{w}/gold.conll", "{d}/o.jsonl", "--from", "conll", "--to",
                                               "jsonl", "--to-scheme", "BIO"], 1, ("--to-scheme", "writing jsonl"))
case("convert-to-weibo-without-positions", CONVERT + ["{w}/gold.conll", "{d}/o.txt", "--from", "conll", "--to",
                                                      "weibo"], 1, ("--to conll",))
case("convert-stockmark-not-array", CONVERT + ["{d}/in.json", "{d}/o.jsonl", "--from", "stockmark", "--to",
                                               "jsonl"], 1, ("{d}/in.json:1",), files(in__json='{"a": 1}'))
case("convert-kmou-malformed", CONVERT + ["{d}/in.txt", "{d}/o.jsonl", "--from", "kmou", "--to", "jsonl"], 1,
     ("{d}/in.txt:2",), files(in__txt="; 가\nbad line\n\n"))

# -- data stats ----------------------------------------------------------------------------
case("stats-file-needs-fmt", ["data", "stats", "{w}/noid.jsonl"], 1, ("--fmt",))
case("stats-non-utf8", ["data", "stats", "{d}/x.conll", "--fmt", "conll"], 1, ("{d}/x.conll:3",),
     files(x__conll=b"a O\n\nb\xff O\n\n"))
case("stats-unknown-name", ["data", "stats", "no_such_dataset"], 1, ("no_such_dataset",))
case("stats-folder", ["data", "stats", "{d}", "--fmt", "jsonl"], 1, ("{d}",))
case("stats-wrong-separator", ["data", "stats", "{d}/x.conll", "--fmt", "conll"], 1,
     ("{d}/x.conll:1", "--fmt weibo"), files(x__conll="a\n\n"))
case("stats-bad-weight", ["data", "stats", "{d}/x.jsonl", "--fmt", "jsonl"], 1, ("{d}/x.jsonl:2",),
     files(x__jsonl=jline() + jline(weight="1")))

# -- eval: pairing -------------------------------------------------------------------------
case("eval-same-jsonl-no-ids", ["eval", "{w}/noid.jsonl", "{w}/noid_copy.jsonl"], 0, ("by position",))
case("eval-two-conll-files", ["eval", "{w}/gold.conll", "{w}/pred.conll", "--fmt", "conll"], 0, ("by position",))
case("eval-by-id", ["eval", "{w}/test.jsonl", "{w}/test.jsonl"], 0, ("by id",))
case("eval-one-side-without-ids", ["eval", "{w}/noid.jsonl", "{d}/p.jsonl"], 0, ("by position",),
     lambda w, d: write(toy(3, "p"), d / "p.jsonl", "jsonl"))
case("eval-duplicate-ids", ["eval", "{d}/g.jsonl", "{d}/g.jsonl"], 0, ("ids are not unique",),
     files(g__jsonl=jline(id="x") + jline(id="x")))
case("eval-length-mismatch", ["eval", "{w}/noid.jsonl", "{w}/short.jsonl"], 1,
     ("GOLD {w}/noid.jsonl has 3", "PRED {w}/short.jsonl has 2"))
case("eval-ids-differ", ["eval", "{w}/test.jsonl", "{d}/p.jsonl"], 1, ("paired by id", "PRED {d}/p.jsonl"),
     lambda w, d: write(toy(4, "other"), d / "p.jsonl", "jsonl"))
case("eval-tokens-differ", ["eval", "{w}/noid.jsonl", "{d}/p.jsonl"], 1, ("sentence 0",),
     lambda w, d: write(toy(4, "", ids=False)[1:], d / "p.jsonl", "jsonl"))
case("eval-missing-gold", ["eval", "{d}/nope.jsonl", "{w}/noid.jsonl"], 1, ("{d}/nope.jsonl",))
case("eval-pred-non-utf8", ["eval", "{w}/noid.jsonl", "{d}/p.jsonl"], 1, ("{d}/p.jsonl:1",),
     files(p__jsonl=b'{"text": ["\xe4"]}\n'))
case("eval-unknown-format", ["eval", "{w}/noid.jsonl", "{w}/noid.jsonl", "--fmt", "xml"], 1, ("xml",))

# -- train ---------------------------------------------------------------------------------
TRAIN = ["train", "{w}/cfg.yaml", "--no-progress"]
case("train-config-non-utf8", ["train", "{d}/c.yaml"], 1, ("{d}/c.yaml:2",),
     files(c__yaml=b"data:\n  train_file: \xc4\xe3\n"))
case("train-config-missing", ["train", "{d}/c.yaml"], 1, ("{d}/c.yaml",))
case("train-config-folder", ["train", "{d}"], 1, ("{d}",))
case("train-config-not-mapping", ["train", "{d}/c.yaml"], 1, ("{d}/c.yaml", "mapping"), files(c__yaml="- 1\n"))
case("train-config-bad-yaml", ["train", "{d}/c.yaml"], 1, ("{d}/c.yaml",), files(c__yaml="a: [\n"))
case("train-unknown-key", TRAIN + ["--set", "train.epoch=3"], 1, ("train.epoch", "did you mean"))
case("train-infinite-lr", TRAIN + ["--set", "train.head_lr=.inf"], 1, ("train.head_lr", "finite"))
case("train-nan-lr", TRAIN + ["--set", "train.encoder_lr=.nan"], 1, ("train.encoder_lr",))
case("train-weight-rule-argument-typo", TRAIN + ["--set", "data.extension_weight_rule={rule: zero_below, min_trian: 5}"],
     1, ("data.extension_weight_rule.min_trian",))
case("train-bad-set", TRAIN + ["--set", "train.epochs"], 1, ("--set",))
case("train-stop-after-negative", TRAIN + ["--stop-after", "-1"], 2, ("--stop-after",))
case("train-stop-after-zero", TRAIN + ["--stop-after", "0"], 2, ("--stop-after",))
case("train-stop-after-text", TRAIN + ["--stop-after", "two"], 2, ("--stop-after",))
case("train-run-dir-is-file", TRAIN + ["--run-dir", "{d}/f"], 1, ("run folder {d}/f",), files(f="x"))
case("train-run-dir-under-a-file", TRAIN + ["--run-dir", "{d}/f/run"], 1, ("run folder {d}/f/run",), files(f="x"))
case("train-bad-device", TRAIN + ["--run-dir", "{d}/r", "--set", "train.device=gpu0"], 1, ("train.device", "gpu0"))
case("train-run-dir-is-init-from", TRAIN + ["--run-dir", "{d}/run", "--set", "train.init_from={d}/run"], 1,
     ("{d}/run/config.json", "train.init_from"), run_copy())
case("train-data-file-in-run-folder", TRAIN + ["--run-dir", "{d}", "--set", "data.train_file={d}/data.json"], 1,
     ("run folder file {d}/data.json", "data.train_file"), lambda w, d: write(toy(4, "t"), d / "data.json", "jsonl"))
case("train-config-is-run-file", ["train", "{d}/config.json", "--run-dir", "{d}"], 1,
     ("run folder file {d}/config.json", "CONFIG"), lambda w, d: shutil.copy(w / "cfg.yaml", d / "config.json"))
case("train-missing-train-file", TRAIN + ["--run-dir", "{d}/r", "--set", "data.train_file={d}/nope.jsonl"], 1,
     ("{d}/nope.jsonl",))
case("train-train-file-non-utf8", TRAIN + ["--run-dir", "{d}/r", "--set", "data.train_file={d}/t.jsonl"], 1,
     ("{d}/t.jsonl:1",), files(t__jsonl=b'{"text": ["\xff"]}\n'))
case("train-train-file-bad-weight", TRAIN + ["--run-dir", "{d}/r", "--set", "data.train_file={d}/t.jsonl"], 1,
     ("{d}/t.jsonl:1", '"weight"'), files(t__jsonl=jline(weight=-0.5)))
case("train-wrong-data-format", TRAIN + ["--run-dir", "{d}/r", "--set", "data.format=weibo"], 1,
     ("{w}/train.jsonl:1", "data.format:"))
case("train-encoder-path-missing", TRAIN + ["--run-dir", "{d}/r", "--set", "model.encoder=./no/such/encoder"], 1,
     ("./no/such/encoder", "does not exist"))
case("train-corrupt-config-json", TRAIN + ["--run-dir", "{d}/run"], 1, ("{d}/run/config.json",),
     run_copy(lambda r: (r / "config.json").write_text('{"data": ', encoding="utf-8")))
case("train-config-json-not-utf8", TRAIN + ["--run-dir", "{d}/run"], 1, ("{d}/run/config.json:1",),
     run_copy(lambda r: (r / "config.json").write_bytes(b'{"\xff": 1}')))
case("train-corrupt-last-json", TRAIN + ["--run-dir", "{d}/run"], 1, ("{d}/run/checkpoints/last.json",),
     run_copy(lambda r: (r / "checkpoints" / "last.json").write_text("{", encoding="utf-8")))
case("train-last-json-wrong-shape", TRAIN + ["--run-dir", "{d}/run"], 1, ("{d}/run/checkpoints/last.json",),
     run_copy(lambda r: (r / "checkpoints" / "last.json").write_text("[1]", encoding="utf-8")))
case("train-truncated-state", TRAIN + ["--run-dir", "{d}/run"], 1, ("{d}/run/checkpoints/state-0001.pt",),
     run_copy(lambda r: (r / "checkpoints" / "state-0001.pt").write_bytes(
         (r / "checkpoints" / "state-0001.pt").read_bytes()[:200])))
case("train-garbage-state", TRAIN + ["--run-dir", "{d}/run"], 1, ("{d}/run/checkpoints/state-0001.pt",),
     run_copy(lambda r: (r / "checkpoints" / "state-0001.pt").write_bytes(b"not a checkpoint")))
case("train-damaged-last-weights", TRAIN + ["--run-dir", "{d}/run"], 1,
     ("{d}/run/checkpoints/last-0001.safetensors",),
     run_copy(lambda r: (r / "checkpoints" / "last-0001.safetensors").write_bytes(b"\x00" * 64)))
case("train-other-config-refused", TRAIN + ["--run-dir", "{d}/run", "--set", "train.epochs=3"], 1,
     ("{d}/run", "another config"), run_copy())


def failed_setup(w: Path, d: Path) -> None:
    """What a setup that failed before the first epoch leaves: config and schema of another run."""
    (d / "r").mkdir()
    (d / "r" / "config.json").write_text(json.dumps({"data": {"train_file": "old"}}), encoding="utf-8")
    (d / "r" / "schema.json").write_text("{}", encoding="utf-8")


case("train-takes-over-failed-setup", TRAIN + ["--run-dir", "{d}/r", "--stop-after", "1"], 0, setup=failed_setup,
     creates=("{d}/r",))

# -- predict -------------------------------------------------------------------------------
PREDICT = ["predict", "{w}/run"]
case("predict-batch-size-zero", PREDICT + ["--input", "{w}/texts.txt", "--batch-size", "0"], 2, ("--batch-size",))
case("predict-batch-size-negative", PREDICT + ["--input", "{w}/texts.txt", "--batch-size", "-1"], 2,
     ("--batch-size",))
case("predict-batch-size-text", PREDICT + ["--input", "{w}/texts.txt", "--batch-size", "many"], 2,
     ("--batch-size",))
case("predict-output-is-input", PREDICT + ["--input", "{d}/t.txt", "--output", "{d}/t.txt"], 1, ("--output {d}/t.txt",),
     files(t__txt="赵丽\n"))
case("predict-tokens-output-is-input", PREDICT + ["--tokens", "--input", "{d}/t.jsonl", "--output", "{d}/t.jsonl"],
     1, ("--output {d}/t.jsonl", "--input"), links("t.jsonl", "unused", src="{w}/test.jsonl"))
case("predict-output-symlink-to-input", PREDICT + ["--tokens", "--input", "{d}/t.jsonl", "--output", "{d}/l.jsonl"],
     1, ("--output {d}/l.jsonl",), links("t.jsonl", "l.jsonl", src="{w}/test.jsonl"))
case("predict-output-hard-link", PREDICT + ["--input", "{d}/t.jsonl", "--output", "{d}/h.jsonl"], 1,
     ("--output {d}/h.jsonl",), links("t.jsonl", "h.jsonl", hard=True, src="{w}/test.jsonl"))
case("predict-output-is-run-file", PREDICT + ["--input", "{w}/texts.txt", "--output", "{w}/run/config.json"], 1,
     ("--output {w}/run/config.json", "RUN_DIR"))
case("predict-output-is-folder", PREDICT + ["--input", "{w}/texts.txt", "--output", "{d}"], 1, ("--output {d}",))
case("predict-output-parent-is-file", PREDICT + ["--input", "{w}/texts.txt", "--output", "{d}/f/o.jsonl"], 1,
     ("--output {d}/f/o.jsonl",), files(f="x"))
case("predict-input-non-utf8", PREDICT + ["--input", "{d}/t.txt", "--output", "{d}/o.jsonl"], 1, ("{d}/t.txt:2",),
     files(t__txt=b"ok\n\xd5\xd4\n"))
case("predict-input-missing", PREDICT + ["--input", "{d}/nope.txt"], 1, ("{d}/nope.txt",))
case("predict-input-folder", PREDICT + ["--input", "{d}"], 1, ("{d}",))
case("predict-malformed-json-line", PREDICT + ["--input", "{d}/t.txt"], 1, ("{d}/t.txt", "line 2"),
     files(t__txt='赵丽\n{"text": \n'))
case("predict-json-without-text", PREDICT + ["--input", "{d}/t.txt"], 1, ("{d}/t.txt", "line 1"),
     files(t__txt='{"id": 1}\n'))
case("predict-unknown-lang", PREDICT + ["--input", "{w}/texts.txt", "--lang", "cn"], 2,
     ("--lang", "'cn'", "'zh', 'en', 'ja', 'ko'"))
case("predict-bad-device", PREDICT + ["--input", "{w}/texts.txt", "--device", "gpu0"], 1, ("--device", "gpu0"))
case("predict-not-a-run", ["predict", "{d}", "--input", "{w}/texts.txt"], 1, ("{d}", "not a trained run"))
case("predict-corrupt-config-json", ["predict", "{d}/run", "--input", "{w}/texts.txt"], 1,
     ("{d}/run/config.json",), run_copy(lambda r: (r / "config.json").write_text("nonsense", encoding="utf-8")))
case("predict-corrupt-encoder-json", ["predict", "{d}/run", "--input", "{w}/texts.txt"], 1,
     ("{d}/run/encoder.json",), run_copy(lambda r: (r / "encoder.json").write_text("{", encoding="utf-8")))
case("predict-corrupt-schema", ["predict", "{d}/run", "--input", "{w}/texts.txt"], 1,
     ("{d}/run/schema.json",), run_copy(lambda r: (r / "schema.json").write_text('{"labels": 3}', encoding="utf-8")))
case("predict-damaged-weights", ["predict", "{d}/run", "--input", "{w}/texts.txt"], 1,
     ("{d}/run/model.safetensors",), run_copy(lambda r: (r / "model.safetensors").write_bytes(b"\x00" * 10)))
case("predict-tokens-needs-output", PREDICT + ["--tokens", "--input", "{w}/test.jsonl"], 1, ("--tokens",))
case("predict-tokens-bad-weight", PREDICT + ["--tokens", "--input", "{d}/t.jsonl", "--output", "{d}/o.jsonl"], 1,
     ("{d}/t.jsonl:1",), files(t__jsonl=jline(weight="x")))
case("predict-tokens-wrong-format", PREDICT + ["--tokens", "--input", "{w}/test.jsonl", "--output", "{d}/o.jsonl",
                                               "--format", "weibo"], 1, ("{w}/test.jsonl:1", "--format"))


def one_record_per_line(w: Path, d: Path, err: str) -> None:
    records = (d / "o.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(r)["text"] for r in records] == ["赵丽\r去东京", "王小明"]


case("predict-lone-cr-stays-in-its-record", PREDICT + ["--input", "{d}/t.txt", "--output", "{d}/o.jsonl"], 0,
     setup=files(t__txt="赵丽\r去东京\n王小明\n"), creates=("{d}/o.jsonl",), check=one_record_per_line)
case("predict-replaces-keeping-mode", PREDICT + ["--tokens", "--input", "{w}/test.jsonl", "--output",
                                                 "{d}/out.jsonl"], 0, setup=old_output, creates=("{d}/out.jsonl",),
     check=mode_kept)

# U+FFFD is a printable character that the tiny encoder's normaliser removes: its tokenizer gives
# that text no piece at all, which the other records must survive
NO_PIECE = "\ufffd"


def records_kept(n: int, empty: int):
    def check(w: Path, d: Path, err: str) -> None:
        records = [json.loads(r) for r in (d / "o.jsonl").read_text(encoding="utf-8").splitlines()]
        assert len(records) == n
        spans = records[empty].get("spans", records[empty].get("entities"))
        assert spans == []
    return check


case("predict-line-without-piece", PREDICT + ["--input", "{d}/t.txt", "--output", "{d}/o.jsonl"], 0,
     ("warning: {d}/t.txt:2:", "predicted 3 records", "1 of them empty"),
     files(t__txt=f"赵丽去东京\n{NO_PIECE}\n王小明\n"), creates=("{d}/o.jsonl",), check=records_kept(3, 1))
case("predict-json-line-without-piece", PREDICT + ["--input", "{d}/t.txt", "--output", "{d}/o.jsonl"], 0,
     ("warning: {d}/t.txt:1:", "1 of them empty"),
     files(t__txt=json.dumps({"id": "x", "text": NO_PIECE}) + "\n赵丽\n"), creates=("{d}/o.jsonl",),
     check=records_kept(2, 0))
case("predict-tokens-sentence-without-piece", PREDICT + ["--tokens", "--input", "{d}/t.jsonl", "--output",
                                                         "{d}/o.jsonl"], 0,
     ("warning: {d}/t.jsonl:3 (sentence 2, id 'odd')", "predicted 3 records", "1 of them empty"),
     files(t__jsonl=jline(id="a") + "\n" + jline(id="odd", text=[NO_PIECE, NO_PIECE]) + jline(id="b")),
     creates=("{d}/o.jsonl",), check=records_kept(3, 1))
case("predict-tokens-conll-sentence-without-piece", PREDICT + ["--tokens", "--input", "{d}/t.conll", "--format",
                                                               "conll", "--output", "{d}/o.jsonl"], 0,
     ("warning: {d}/t.conll:4 (sentence 2, id 't.conll-1')", "1 of them empty"),
     files(t__conll=f"赵 B-PER\n丽 I-PER\n\n{NO_PIECE} O\n\n东 O\n"), creates=("{d}/o.jsonl",),
     check=records_kept(3, 1))
case("train-sample-without-piece", TRAIN + ["--run-dir", "{d}/r", "--set", "data.train_file={d}/t.jsonl"], 1,
     ("gives no piece for sample 'odd'",), files(t__jsonl=jline(id="a") + jline(id="odd", text=[NO_PIECE])),
     creates=("{d}/r",))  # a setup that failed: a rerun takes the folder over (train-takes-over-failed-setup)


# -- sweep (dry runs and early failures: nothing trains) ------------------------------------
SWEEP = ["sweep", "{w}/sweep.yaml", "--out", "{d}/out"]


def sweep_file(**sweep) -> Callable[[Path, Path], None]:
    def setup(w: Path, d: Path) -> None:
        (d / "s.yaml").write_text(yaml.safe_dump({"base": str(w / "cfg.yaml"), **sweep}), encoding="utf-8")
    return setup


case("sweep-grid-key-typo", ["sweep", "{d}/s.yaml", "--out", "{d}/out", "--dry-run"], 1,
     ("g-epoch=1", "train.epoch", "did you mean"), sweep_file(groups=[{"name": "g", "grid": {"train.epoch": [1]}}]))
case("sweep-grid-bad-value", ["sweep", "{d}/s.yaml", "--out", "{d}/out"], 1, ("g-epochs=x", "train.epochs"),
     sweep_file(groups=[{"name": "g", "grid": {"train.epochs": ["x"]}}]))
case("sweep-set-typo", SWEEP + ["--dry-run", "--set", "modle.head=cnn"], 1, ("modle",))
case("sweep-jobs-zero", SWEEP + ["--dry-run", "--jobs", "0"], 2, ("--jobs",))
case("sweep-deadline-nan", SWEEP + ["--dry-run", "--deadline", "nan"], 2, ("--deadline",))
case("sweep-deadline-negative", SWEEP + ["--deadline", "-5"], 2, ("--deadline",))
case("sweep-out-is-file", ["sweep", "{w}/sweep.yaml", "--out", "{d}/f"], 1, ("--out {d}/f",), files(f="x"))
case("sweep-table-is-sweep-file", ["sweep", "{d}/s.md", "--out", "{d}/out", "--table", "{d}/s"], 1,
     ("--table {d}/s.md", "SWEEP"),
     lambda w, d: (d / "s.md").write_text((w / "sweep.yaml").read_text(encoding="utf-8"), encoding="utf-8"))
case("sweep-base-missing", ["sweep", "{d}/s.yaml", "--out", "{d}/out"], 1, ("{d}/nope.yaml",),
     files(s__yaml="base: {d}/nope.yaml\ngroups: [{name: g}]\n"))
case("sweep-base-not-string", ["sweep", "{d}/s.yaml", "--out", "{d}/out"], 1, ("base",),
     files(s__yaml="base: [1]\ngroups: [{name: g}]\n"))
case("sweep-groups-not-list", ["sweep", "{d}/s.yaml", "--out", "{d}/out"], 1, ("groups",),
     files(s__yaml="base: {w}/cfg.yaml\ngroups: 3\n"))
case("sweep-group-name-number", ["sweep", "{d}/s.yaml", "--out", "{d}/out"], 1, ("name",),
     files(s__yaml="base: {w}/cfg.yaml\ngroups: [{name: 7}]\n"))
case("sweep-file-non-utf8", ["sweep", "{d}/s.yaml", "--out", "{d}/out"], 1, ("{d}/s.yaml:1",),
     files(s__yaml=b"base: \xe9\n"))
case("sweep-only-unknown", SWEEP + ["--dry-run", "--only", "nope"], 1, ("--only",))
case("sweep-dry-run-valid", SWEEP + ["--dry-run"], 0)

# -- reproduce --dry-run -------------------------------------------------------------------
REPRO = ["reproduce", "--dry-run", "--params"]


def params(**raw) -> Callable[[Path, Path], None]:
    def setup(w: Path, d: Path) -> None:
        base = {"run_name": "hostile", "notebooks": {"01_data_exploration": {}}}
        (d / "p.yaml").write_text(yaml.safe_dump({**base, **raw}), encoding="utf-8")
    return setup


case("reproduce-non-utf8", REPRO + ["{d}/p.yaml"], 1, ("{d}/p.yaml:2",), files(p__yaml=b"run_name: x\n# \xff\n"))
case("reproduce-missing", REPRO + ["{d}/p.yaml"], 1, ("{d}/p.yaml",))
case("reproduce-folder", REPRO + ["{d}"], 1, ("{d}",))
case("reproduce-results-dir-not-text", REPRO + ["{d}/p.yaml"], 1, ("{d}/p.yaml", "shared.results_dir"),
     params(shared={"results_dir": 3}))
case("reproduce-nan-learning-rate", REPRO + ["{d}/p.yaml"], 1, ("shared.head_lr", "finite"),
     params(shared={"head_lr": float("nan")}))
case("reproduce-unknown-key", REPRO + ["{d}/p.yaml"], 1, ("shared.epoch",), params(shared={"epoch": 1}))
case("reproduce-only-unknown", REPRO + ["{w}/params.yaml", "--only", "99"], 1, ("--only",))

# -- augment -------------------------------------------------------------------------------


def augment_config(**raw) -> Callable[[Path, Path], None]:
    def setup(w: Path, d: Path) -> None:
        cfg = {"train_file": str(w / "train.jsonl"), "knowledge": "taggers", "output": str(d / "out"), **raw}
        (d / "a.yaml").write_text(yaml.safe_dump(cfg).replace("{d}", str(d)), encoding="utf-8")
        shutil.copy(w / "train.jsonl", d / "fusion.jsonl")
    return setup


case("augment-config-non-utf8", ["augment", "{d}/a.yaml"], 1, ("{d}/a.yaml:1",), files(a__yaml=b"k: \xa0\n"))
case("augment-config-missing", ["augment", "{d}/a.yaml"], 1, ("{d}/a.yaml",))
case("augment-unknown-key", ["augment", "{d}/a.yaml"], 1, ("knowlege", "did you mean"), augment_config(knowlege="llm"))
case("augment-output-overwrites-train-file", ["augment", "{d}/a.yaml", "--output", "{d}"], 1,
     ("output file {d}/fusion.jsonl", "train_file"), augment_config(train_file="{d}/fusion.jsonl"))
case("augment-output-is-file", ["augment", "{d}/a.yaml", "--output", "{d}/fusion.jsonl"], 1,
     ("output {d}/fusion.jsonl",), augment_config())
case("augment-bad-set", ["augment", "{d}/a.yaml", "--set", "k"], 1, ("--set",), augment_config())
case("augment-weight-rule-unknown-argument", ["augment", "{d}/a.yaml"], 1, ("schema.foo",),
     augment_config(schema={"rule": "count", "foo": 1}))
case("augment-replay-concurrency-zero", ["augment", "{d}/a.yaml"], 1, ("llm.concurrency",),
     augment_config(knowledge="llm", llm={"mode": "replay", "model": "m", "cache": "{d}/cache", "concurrency": 0}))
case("augment-infinite-temperature", ["augment", "{d}/a.yaml", "--set", "llm.temperature=.inf"], 1,
     ("llm.temperature",), augment_config(knowledge="llm", llm={"mode": "replay", "model": "m", "cache": "{d}/c"}))
case("augment-unknown-lang", ["augment", "{d}/a.yaml", "--set", "lang=xx"], 1, ("augment config key 'lang' must be one of 'zh', 'en', 'ja' or 'ko' or null, got str 'xx'",
                                                                               "'xx'"), augment_config())
case("augment-k-zero", ["augment", "{d}/a.yaml", "--set", "k=0"], 1, ("augment config key 'k' must be > 0 or null, got 0",), augment_config())



def changed_cache(w: Path, d: Path) -> None:
    import gzip
    (d / "cache").mkdir()
    (d / "cache" / "seg-a.jsonl.gz").write_bytes(gzip.compress(b'{"key": "k"}\n'))
    (d / "cache" / "provenance.json").write_text(json.dumps({"segments": {"seg-a.jsonl.gz": "0" * 64}}))
    augment_config(knowledge="llm", llm={"mode": "replay", "model": "m", "cache": "{d}/cache"})(w, d)


case("augment-replay-cache-missing", ["augment", "{d}/a.yaml"], 1, ("{d}/cache", "does not exist"),
     augment_config(knowledge="llm", llm={"mode": "replay", "model": "m", "cache": "{d}/cache"}))
case("augment-replay-cache-changed", ["augment", "{d}/a.yaml"], 1, ("{d}/cache", "provenance.json", "seg-a.jsonl.gz"),
     changed_cache)


def augment_run(stats: str | bytes = '{"complete": true}') -> Callable[[Path, Path], None]:
    def setup(w: Path, d: Path) -> None:
        (d / "run").mkdir()
        data = stats.encode("utf-8") if isinstance(stats, str) else stats
        (d / "run" / "stats.json").write_bytes(data)
        shutil.copy(w / "run" / "schema.json", d / "run" / "schema.json")
        shutil.copy(w / "train.jsonl", d / "run" / "fusion.jsonl")
    return setup


case("pack-dest-is-run-dir", ["augment", "pack", "{d}/run", "--dest", "{d}/run"], 1, ("--dest file {d}/run/",),
     augment_run())
case("pack-dest-is-file", ["augment", "pack", "{d}/run", "--dest", "{d}/run/stats.json"], 1,
     ("--dest {d}/run/stats.json",), augment_run())
case("pack-no-stats", ["augment", "pack", "{d}", "--dest", "{d}/out"], 1, ("{d}", "stats.json"))
case("pack-corrupt-stats", ["augment", "pack", "{d}/run", "--dest", "{d}/out"], 1, ("{d}/run/stats.json",),
     augment_run('{"complete": tru'))
case("pack-stats-non-utf8", ["augment", "pack", "{d}/run", "--dest", "{d}/out"], 1, ("{d}/run/stats.json:1",),
     augment_run(b'{"\xff": 1}'))
case("pack-stats-not-object", ["augment", "pack", "{d}/run", "--dest", "{d}/out"], 1, ("{d}/run/stats.json",),
     augment_run("[]"))
case("table-out-is-stats-file", ["augment", "table", "{d}/s.csv", "--out", "{d}/s"], 1, ("--out {d}/s.csv", "STATS"),
     files(s__csv="{}"))
case("table-corrupt-stats", ["augment", "table", "{d}/s.json", "--out", "{d}/t"], 1, ("{d}/s.json",),
     files(s__json="{"))
case("table-stats-missing-keys", ["augment", "table", "{d}/s.json", "--out", "{d}/t"], 1,
     ("{d}/s.json", "not the stats.json"), files(s__json='{"complete": true}'))
case("table-stats-missing", ["augment", "table", "{d}/nope.json", "--out", "{d}/t"], 1, ("{d}/nope.json",))

# -- the other entry points ----------------------------------------------------------------
case("unknown-command", ["trian"], 2, ("usage",))
case("encoder-unknown-alias", ["encoder", "build", "bert"], 2, ("name",))
case("llm-unknown-variant", ["llm", "assemble", "70b"], 2, ("variant",))
case("llm-bench-zero-tokens", ["llm", "bench", "--max-tokens", "0"], 2, ("--max-tokens",))
case("llm-serve-bad-port", ["llm", "serve", "--port", "-80"], 2, ("--port",))


# -- a second probe: inputs the first table did not try -------------------------------------
case("eval-pred-empty", ["eval", "{w}/noid.jsonl", "{d}/p.jsonl"], 1, ("{d}/p.jsonl", "empty"), files(p__jsonl=""))
case("eval-gold-folder", ["eval", "{d}", "{w}/noid.jsonl"], 1, ("{d}",))
case("eval-fmt-conll-on-jsonl", ["eval", "{w}/noid.jsonl", "{w}/noid.jsonl", "--fmt", "conll"], 1,
     ("{w}/noid.jsonl:1",))
case("eval-bom-jsonl", ["eval", "{d}/g.jsonl", "{d}/g.jsonl"], 0, setup=files(g__jsonl="\ufeff" + jline(id="a")))
case("eval-numeric-ids", ["eval", "{d}/g.jsonl", "{d}/g.jsonl"], 0, ("paired by id",), files(g__jsonl=jline(id=5)))
case("convert-output-folder-missing", CONVERT + ["{w}/noid.jsonl", "{d}/no/dir/o.conll", "--from", "jsonl", "--to",
                                                 "conll"], 0, creates=("{d}/no",))
case("convert-empty-output-path", CONVERT + ["{w}/noid.jsonl", "", "--from", "jsonl", "--to", "conll"], 1,
     ("OUTPUT",))
case("convert-dev-null-input", CONVERT + ["/dev/null", "{d}/o.conll", "--from", "jsonl", "--to", "conll"], 1,
     ("/dev/null", "empty"))
case("stats-crlf-jsonl", ["data", "stats", "{d}/x.jsonl", "--fmt", "jsonl"], 0,
     setup=files(x__jsonl=jline().replace("\n", "\r\n") * 2))
case("stats-bom-only", ["data", "stats", "{d}/x.jsonl", "--fmt", "jsonl"], 1, ("{d}/x.jsonl", "empty"),
     files(x__jsonl="\ufeff\n"))
case("train-data-null", ["train", "{d}/c.yaml"], 1, ("data",), files(c__yaml="data:\n"))
case("train-epochs-zero", TRAIN + ["--run-dir", "{d}/r", "--set", "train.epochs=0"], 1, ("train.epochs",))
case("train-batch-size-negative", TRAIN + ["--run-dir", "{d}/r", "--set", "train.batch_size=-4"], 1,
     ("train.batch_size",))
case("train-channels-zero", TRAIN + ["--run-dir", "{d}/r", "--set", "model.channels=0"], 1,
     ("config key 'model.channels' must be > 0, got 0",))
case("train-heads-zero", TRAIN + ["--run-dir", "{d}/r", "--set", "model.biaffine_heads=0"], 1,
     ("config key 'model.biaffine_heads' must be > 0, got 0",))
case("train-window-negative", TRAIN + ["--run-dir", "{d}/r", "--set", "model.window=-1"], 1,
     ("config key 'model.window' must be >= 0, got -1",))
case("train-duplicate-yaml-key", ["train", "{d}/c.yaml", "--run-dir", "{d}/r"], 1,
     ("{d}/c.yaml", "duplicate key 'train'"),
     lambda w, d: (d / "c.yaml").write_text((w / "cfg.yaml").read_text(encoding="utf-8") + "train: {epochs: 1}\n",
                                            encoding="utf-8"))
case("train-empty-train-file", TRAIN + ["--run-dir", "{d}/r", "--set", "data.train_file={d}/t.jsonl"], 1,
     ("{d}/t.jsonl", "empty"), files(t__jsonl="\n"))
case("train-only-empty-sentences", TRAIN + ["--run-dir", "{d}/r", "--set", "data.train_file={d}/t.jsonl"], 1,
     ("{d}/t.jsonl", "no sentence with a token (3 empty"), files(t__jsonl=jline(text=[]) * 3),
     creates=("{d}/r",))  # a setup that failed: a rerun takes the folder over
case("train-empty-run-dir", TRAIN + ["--run-dir", ""], 2, ("--run-dir", "empty"))
case("predict-empty-input", PREDICT + ["--input", "{d}/t.txt", "--output", "{d}/o.jsonl"], 0,
     ("predicted 0 records",), files(t__txt=""), creates=("{d}/o.jsonl",))
case("predict-blank-lines-kept", PREDICT + ["--input", "{d}/t.txt", "--output", "{d}/o.jsonl"], 0,
     ("predicted 3 records",), files(t__txt="\n赵丽\n\n"), creates=("{d}/o.jsonl",), check=records_kept(3, 0))
case("predict-tokens-conll-format-on-jsonl", PREDICT + ["--tokens", "--input", "{w}/test.jsonl", "--output",
                                                        "{d}/o.jsonl", "--format", "conll"], 1,
     ("{w}/test.jsonl:1", "--format"))
case("predict-run-dir-is-file", ["predict", "{d}/f", "--input", "{w}/texts.txt"], 1, ("{d}/f",), files(f="x"))
case("predict-empty-output-path", PREDICT + ["--input", "{w}/texts.txt", "--output", ""], 2, ("--output", "empty"))
case("predict-empty-input-path", PREDICT + ["--input", ""], 2, ("--input", "empty"))
case("sweep-file-empty", ["sweep", "{d}/s.yaml", "--out", "{d}/out", "--dry-run"], 1, ("{d}/s.yaml", "sweep key 'base' is required (the path of the trainer config its runs start from)"),
     files(s__yaml=""))
case("sweep-empty-out", ["sweep", "{w}/sweep.yaml", "--out", "", "--dry-run"], 2, ("--out", "empty"))
case("sweep-grid-empty-list", ["sweep", "{d}/s.yaml", "--out", "{d}/out", "--dry-run"], 1, ("train.seed",),
     sweep_file(groups=[{"name": "g", "grid": {"train.seed": []}}]))
case("sweep-duplicate-group-names", ["sweep", "{d}/s.yaml", "--out", "{d}/out", "--dry-run"], 1,
     ("{d}/s.yaml", "same name"),
     sweep_file(groups=[{"name": "g", "grid": {"train.seed": [0]}}, {"name": "g", "grid": {"train.seed": [0]}}]))
case("reproduce-empty-params", REPRO + ["{d}/p.yaml"], 1, ("{d}/p.yaml",), files(p__yaml=""))
case("reproduce-unknown-notebook", REPRO + ["{d}/p.yaml"], 1, ("99_nope",),
     params(notebooks={"99_nope": {}}))
case("augment-train-file-missing", ["augment", "{d}/a.yaml"], 1, ("{d}/nope.jsonl",),
     augment_config(train_file="{d}/nope.jsonl"))
case("augment-llm-not-mapping", ["augment", "{d}/a.yaml"], 1, ("llm", "mapping"), augment_config(llm=3))
case("augment-llm-without-server", ["augment", "{d}/a.yaml"], 1, ("llm.base_url",), augment_config(knowledge="llm"))
case("augment-empty-output", ["augment", "{d}/a.yaml", "--output", ""], 2, ("--output", "empty"), augment_config())
case("table-no-stats", ["augment", "table"], 2, ("usage",))
case("llm-serve-port-too-big", ["llm", "serve", "--port", "99999"], 2, ("--port",))

case("convert-token-with-space-to-conll", CONVERT + ["{d}/in.jsonl", "{d}/o.conll", "--from", "jsonl", "--to",
                                                     "conll"], 1, ("'a b' of sample 'in.jsonl-0'", "space between token and tag"),
     files(in__jsonl=jline(text=["a b", "c"])))
case("convert-token-with-newline-to-conll", CONVERT + ["{d}/in.jsonl", "{d}/o.conll", "--from", "jsonl", "--to",
                                                       "conll"], 1, ("of sample 'in.jsonl-0'",), files(in__jsonl=jline(text=["a\nb", "c"])))
case("convert-empty-token-to-conll", CONVERT + ["{d}/in.jsonl", "{d}/o.conll", "--from", "jsonl", "--to",
                                                "conll"], 1, ("'' of sample 'in.jsonl-0'",), files(in__jsonl=jline(text=["", "c"])))
case("train-k-zero", TRAIN + ["--run-dir", "{d}/r", "--set", "data.k=0"], 1, ("data.k",))
case("train-epochs-float", TRAIN + ["--run-dir", "{d}/r", "--set", "train.epochs=1.5"], 1, ("train.epochs",))
case("augment-k-float", ["augment", "{d}/a.yaml", "--set", "k=1.5"], 1, ("'k'",), augment_config())
case("eval-conll-pred-as-jsonl", ["eval", "{w}/noid.jsonl", "{w}/pred.conll"], 1, ("{w}/pred.conll:1",))
case("predict-tokens-empty-token", PREDICT + ["--tokens", "--input", "{d}/t.jsonl", "--output", "{d}/o.jsonl"], 0,
     setup=files(t__jsonl=jline(text=["赵", "", "丽"])), creates=("{d}/o.jsonl",))
case("reproduce-only-empty", REPRO + ["{w}/params.yaml", "--only", ""], 1, ("--only",))

case("train-unknown-data-format", TRAIN + ["--run-dir", "{d}/r", "--set", "data.format=xml"], 1, ("'xml'", "data.format: FORMAT"))
case("train-device-cuda-missing", TRAIN + ["--run-dir", "{d}/r", "--set", "train.device=cuda:7"], 1,
     ("train.device", "cuda:7"))
case("predict-device-cuda-missing", PREDICT + ["--input", "{w}/texts.txt", "--device", "cuda:7"], 1,
     ("--device", "cuda:7"))
case("train-config-tab-indent", ["train", "{d}/c.yaml"], 1, ("{d}/c.yaml",), files(c__yaml="data:\n\ttrain_file: x\n"))
case("train-empty-encoder", TRAIN + ["--run-dir", "{d}/r", "--set", "model.encoder="], 1, ("config key 'model.encoder' must be str",))
case("eval-weibo-fmt-on-jsonl", ["eval", "{w}/noid.jsonl", "{w}/noid.jsonl", "--fmt", "weibo"], 1,
     ("{w}/noid.jsonl:1",))
case("table-same-stats-twice", ["augment", "table", "{d}/run/stats.json", "{d}/run/stats.json", "--out", "{d}/t"], 1,
     ("{d}/run/stats.json",), augment_run())
case("predict-long-line", PREDICT + ["--input", "{d}/t.txt", "--output", "{d}/o.jsonl"], 0, ("predicted 1 records",),
     files(t__txt="赵丽去东京" * 300 + "\n"), creates=("{d}/o.jsonl",))

case("train-set-without-key", TRAIN + ["--set", "=3"], 1, ("--set",))
case("augment-duplicate-kinds", ["augment", "{d}/a.yaml", "--set", "llm.kinds=[entity, entity]"], 1, ("llm.kinds",),
     augment_config(knowledge="llm", llm={"mode": "replay", "model": "m", "cache": "{d}/c"}))
case("table-empty-out", ["augment", "table", "{d}/s.json", "--out", ""], 2, ("--out", "empty"),
     files(s__json="{}"))
case("convert-newline-crlf-jsonl", CONVERT + ["{w}/noid.jsonl", "{d}/o.jsonl", "--from", "jsonl", "--to", "jsonl",
                                              "--newline", "crlf"], 1, ("--newline", "writing jsonl"))

# -- the runner ----------------------------------------------------------------------------


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and link under ``root``: content hash and mode (links: their target)."""
    out = {}
    for folder, dirs, names in os.walk(root):
        for name in dirs + names:
            p = Path(folder, name)
            st = p.lstat()
            if stat.S_ISLNK(st.st_mode):
                out[str(p)] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[str(p)] = (hashlib.sha256(p.read_bytes()).hexdigest(), stat.S_IMODE(st.st_mode))
    return out


def test_the_table_covers_every_entry_point():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(CASES) >= 80
    commands = {c.argv[0] if c.argv[0] not in ("data", "augment") else " ".join(c.argv[:2]) for c in CASES}
    for command in ("data convert", "data stats", "eval", "train", "sweep", "predict", "reproduce",
                    "augment {d}/a.yaml", "augment pack", "augment table", "encoder", "llm"):
        assert command in commands, command


@pytest.mark.parametrize("c", CASES, ids=[c.id for c in CASES])
def test_hostile_input(c: Case, world: Path, capsys):
    d = world / "cases" / c.id
    d.mkdir(parents=True)
    if c.setup:
        c.setup(world, d)

    def fill(text: str) -> str:
        return text.replace("{w}", str(world)).replace("{d}", str(d)).replace("{id}", c.id)

    before = snapshot(world)
    capsys.readouterr()
    try:
        code = knowfree_main([fill(a) for a in c.argv])
    except SystemExit as e:  # argparse refuses a flag
        code = e.code
    out, err = capsys.readouterr()

    assert code == c.code, f"exit {code}, expected {c.code}\nstdout: {out}\nstderr: {err}"
    assert "Traceback (most recent call last)" not in out + err
    for name in c.names:
        assert fill(name) in err, f"{fill(name)!r} not in stderr:\n{err}"
    if c.code != 0:
        assert err.strip(), "a failure must say why"

    after = snapshot(world)
    allowed = [fill(p) for p in c.creates]

    def expected(path: str) -> bool:
        return any(path == a or path.startswith(a.rstrip("/") + "/") for a in allowed)
    changed = sorted(p for p in before if after.get(p) != before[p] and not expected(p))
    assert not changed, f"inputs changed or removed: {changed}"
    new = sorted(p for p in after if p not in before and not expected(p))
    assert not new, f"unexpected outputs (half-written or not): {new}"
    assert not [p for p in after if p.endswith(".tmp")], "temporary files left behind"
    if c.check:
        c.check(world, d, err)
