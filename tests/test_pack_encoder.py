"""scripts/pack_encoder.py: the packed copy computes what the original computes on the
dataset it was packed for, and the rows it dropped are exactly those no piece of it uses."""
import importlib.util
import json

import torch
from safetensors.torch import load_file

from knowfree.data import registry
from knowfree.encoder import TokenEncoder, build_tiny_encoder
from knowfree.provenance import REPO_ROOT

spec = importlib.util.spec_from_file_location("pack_encoder", REPO_ROOT / "scripts" / "pack_encoder.py")
pack = importlib.util.module_from_spec(spec)
spec.loader.exec_module(pack)


def test_packed_encoder_equals_the_original_on_its_dataset(mirror, tmp_path, monkeypatch):
    # the tiny test tokenizer drops U+FFFD, which some Weibo posts consist of
    weibo = {name: [s for s in split if set("".join(s.tokens)) - {"\ufffd"}]
             for name, split in registry.load_dataset("weibo").items()}
    monkeypatch.setattr(pack.registry, "load_dataset", lambda name: weibo)
    foreign = "한국어テスト"  # characters Weibo never uses: their rows must go
    source = build_tiny_encoder(tmp_path / "tiny", [s.tokens for split in weibo.values() for s in split]
                                + [foreign])
    assert pack.main([source, "weibo", "--out", str(tmp_path / "packed")]) == 0

    info = json.loads((tmp_path / "packed" / "knowfree_pack.json").read_text())
    original = TokenEncoder(source, piece_position=False).eval()
    packed = TokenEncoder(str(tmp_path / "packed"), piece_position=False).eval()
    def embedding_rows(folder):
        table = load_file(str(folder) + "/model.safetensors")
        return next(v for k, v in table.items() if k.endswith("word_embeddings.weight"))

    rows, before = embedding_rows(tmp_path / "packed"), embedding_rows(source)
    assert info["rows_kept"] < info["rows"] == len(rows)
    assert all(torch.equal(a, b) or not a.any() for a, b in zip(rows, before))  # kept or zeroed
    vocab = original.tokenizer.get_vocab()
    assert all(before[vocab[c]].any() and not rows[vocab[c]].any() for c in foreign)

    with torch.no_grad():
        test = weibo["test"][:32]
        enc = original.tokenize([s.tokens for s in test], "zh")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        assert torch.equal(original._hidden(ids, mask), packed._hidden(ids, mask))
