"""`python -m knowfree data stats|convert` through the package's own dispatcher."""
import re

from knowfree.__main__ import main
from knowfree.data.cli import sample_stats
from knowfree.data.sample import Sample, Span

BIO = "张 B-PER\n三 I-PER\n在 O\n北 B-LOC\n京 I-LOC\n\n好 O\n\n"


def test_stats_weibo_prints_the_published_counts(mirror, capsys):
    assert main(["data", "stats", "weibo"]) == 0
    out = capsys.readouterr().out
    rows = {m[0]: int(m[1]) for m in re.findall(r"^(train|dev|test)\s+(\d+)", out, re.M)}
    assert rows == {"train": 1350, "dev": 270, "test": 270}
    assert "PER.NAM" in out and "sha256 verified" in out and "I without B" in out


def test_split_stats_counts_nested_spans():
    s = [Sample(list("北京大学"), [Span(0, 2, "LOC"), Span(0, 4, "ORG")]), Sample(list("好"), [])]
    st = sample_stats(s)
    assert (st["sentences"], st["tokens"], st["spans"], st["longest"], st["nested"]) == (2, 5, 2, 4, 2)
    assert st["labels"] == {"LOC": 1, "ORG": 1}


def test_stats_of_a_file(tmp_path, capsys):
    (tmp_path / "a.txt").write_text(BIO, encoding="utf-8")
    assert main(["data", "stats", str(tmp_path / "a.txt"), "--fmt", "bio"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^a\.txt\s+2\s+6\s+2\s+5\s+0$", out, re.M)


def test_convert_round_trip_through_every_flat_scheme(tmp_path, capsys):
    src = tmp_path / "a.bio"
    src.write_text(BIO, encoding="utf-8")
    assert main(["data", "convert", str(src), str(tmp_path / "b.bmes"), "--from", "bio", "--to", "bmes"]) == 0
    assert "M-PER" not in (tmp_path / "b.bmes").read_text() and "E-PER" in (tmp_path / "b.bmes").read_text()
    assert main(["data", "convert", str(tmp_path / "b.bmes"), str(tmp_path / "c.txt"),
                 "--from", "conll", "--to", "conll", "--to-scheme", "BIOES"]) == 0
    assert main(["data", "convert", str(tmp_path / "c.txt"), str(tmp_path / "d.jsonl"),
                 "--from", "bioes", "--to", "jsonl"]) == 0
    assert main(["data", "convert", str(tmp_path / "d.jsonl"), str(tmp_path / "e.bio"),
                 "--from", "jsonl", "--to", "bio"]) == 0
    assert (tmp_path / "e.bio").read_bytes() == src.read_bytes()
    assert "wrote 2 sentences, 2 spans" in capsys.readouterr().out


def test_convert_errors_are_messages_not_tracebacks(tmp_path, capsys):
    nested = tmp_path / "n.jsonl"
    nested.write_text('{"text": ["a", "b"], "entities": [{"start": 0, "end": 2, "entity": "X"}, '
                      '{"start": 0, "end": 1, "entity": "Y"}]}\n', encoding="utf-8")
    assert main(["data", "convert", str(nested), str(tmp_path / "o"), "--from", "jsonl", "--to", "bio"]) == 1
    assert "overlap" in capsys.readouterr().err and not (tmp_path / "o").exists()
    assert main(["data", "convert", str(nested), str(tmp_path / "o"), "--from", "jsonl", "--to", "bio",
                 "--on-overlap", "drop"]) == 0
    assert "dropped 1 overlapping" in capsys.readouterr().out
    assert main(["data", "convert", str(nested), str(tmp_path / "o"), "--from", "jsonl", "--to", "jsonl",
                 "--to-scheme", "BIO"]) == 1
    assert "--to-scheme does not apply when writing jsonl" in capsys.readouterr().err
    assert main(["data", "stats", "no-such-dataset"]) == 1
    assert "neither a registered dataset nor a file" in capsys.readouterr().err
