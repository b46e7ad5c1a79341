"""Span head, baselines and loss: exactness of the banded attention, the loss rule, decoding,
and the faults of the authors' code that live in the model (faults 2, 3, 5, 6, 7 in
docs/faults.md)."""
import copy
import itertools
import math
import random

import pytest
import torch

from knowfree.data.sample import Sample, Span
from knowfree.data.schema import LabelSchema
from knowfree.encoder import TokenEncoder, build_tiny_encoder
from knowfree.errors import ConfigError
from knowfree.reference import DenseSpanHead, cell_logits
from knowfree.model import BandedAttention, ModelConfig, build_model, row_offsets, span_cells
from knowfree.tagger import CRF, bio_spans

SMALL = dict(channels=24, biaffine_heads=4, attention_heads=4, size_embedding=5, size_buckets=8)


def samples():
    return [
        Sample(list("张三在北京大学读书"), [Span(0, 2, "PER"), Span(3, 7, "ORG"), Span(3, 5, "LOC"),
                                        Span(7, 9, "ext.pos.VERB")], id="a"),
        Sample(list("李四"), [Span(0, 2, "PER"), Span(0, 2, "ext.ent.PERSON")], id="b"),
        Sample(list("上海很大"), [Span(0, 2, "LOC"), Span(2, 3, "ext.pos.ADV")], id="c"),
    ]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tensors this small gain nothing from a second thread; on a busy machine each op would
    only wait for it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory):
    chars = [s.tokens for s in samples() + overfit_data()] + [list("一二三四五六")]
    return TokenEncoder(build_tiny_encoder(tmp_path_factory.mktemp("enc"), chars, hidden=32))


@pytest.fixture
def make(tiny_encoder):
    def build(head="knowfree", seed=0, **kw):
        torch.manual_seed(seed)
        schema = LabelSchema.from_samples(samples(), targets=["LOC", "ORG", "PER"])
        return build_model(ModelConfig(head=head, **{**SMALL, **kw}), schema,
                           encoder=copy.deepcopy(tiny_encoder))
    return build


# --- banded attention (fault 4 in docs/faults.md) ---------------------------------------------

def dense_band_attention(att: BandedAttention, grid, lengths):
    """The package's dense reference (knowfree/reference.py) of the banded attention, holding
    ``att``'s weights: every grid row attends over all L cells of its row, masked."""
    c = grid.shape[-1]
    ref = DenseSpanHead(1, c, 1, 1, 1, 1, att.heads, att.window).to(grid.dtype)
    ref.qkv, ref.out, ref.norm = att.qkv, att.out, att.norm
    return grid + ref.norm(ref.out(ref.attend(grid, lengths, None)))


@pytest.mark.parametrize("window,lengths", [(0, [7, 3, 1, 5]), (1, [7, 3, 1, 5]), (3, [7, 3, 1, 5]),
                                            (3, [1]), (4, [2, 1])])
def test_banded_attention_equals_dense_masked_attention(window, lengths):
    """Outputs and gradients (the backward is hand-written) against the dense reference."""
    torch.manual_seed(1)
    att = BandedAttention(20, 4, window, block_cells=5).double()
    lengths = torch.tensor(lengths)
    n = int(lengths.max())
    grid = torch.randn(len(lengths), n, n, 20, dtype=torch.double, requires_grad=True)
    cells, _ = span_cells(lengths)
    b, i, j = cells.unbind(1)
    probe = torch.randn(len(cells), 20, dtype=torch.double)
    ours = att(grid[b, i, j], b * n + i)
    ours_grads = torch.autograd.grad((ours * probe).sum(), [grid, *att.parameters()])
    ref = dense_band_attention(att, grid, lengths)[b, i, j]
    ref_grads = torch.autograd.grad((ref * probe).sum(), [grid, *att.parameters()])
    assert (ours - ref).abs().max() < 1e-5
    for g, r in zip(ours_grads, ref_grads):
        assert (g - r).abs().max() < 1e-5


def test_span_head_in_chunks_equals_whole_batch():
    """The head runs chunk by chunk (features per sentence, attention in row blocks); cutting
    differently must not change outputs or gradients, and the packed features must equal the
    whole padded grid's at the same cells."""
    from knowfree.model import SpanHead
    torch.manual_seed(2)
    cfg = ModelConfig(**SMALL, dropout=0.0)
    lengths = torch.tensor([7, 3, 1, 5])
    cells, _ = span_cells(lengths)
    b, i, j = cells.unbind(1)
    x = torch.randn(len(lengths), 8, 16, dtype=torch.double, requires_grad=True)  # 8 > max length
    head = SpanHead(16, cfg, 5).double()
    probe = torch.randn(len(cells), 5, dtype=torch.double)
    results = []
    for chunk, block in [(10 ** 9, 10 ** 9), (1, 3), (12, 5)]:
        head.chunk_cells, head.attention.block_cells = chunk, block
        out = head(x, cells)
        results.append((out, torch.autograd.grad((out * probe).sum(), [x, *head.parameters()])))
    for out, grads in results[1:]:
        assert (out - results[0][0]).abs().max() < 1e-10
        for g, r in zip(grads, results[0][1]):
            assert (g - r).abs().max() < 1e-10
    with torch.no_grad():
        assert (head.features(x, cells) - head.features(x)[b, i, j]).abs().max() < 1e-10


@pytest.mark.parametrize("attention,width", [(True, None), (True, 3), (False, None)])
def test_fast_span_head_equals_the_dense_reference(attention, width):
    """SpanHead (packed cells, split affine, banded attention with its own backward) computes
    the function that knowfree/reference.py writes out densely over the whole grid: same
    weights, same logits at every valid cell, same gradients with respect to the tokens."""
    from knowfree.model import SpanHead
    torch.manual_seed(3)
    cfg = ModelConfig(**SMALL, dropout=0.0, local_attention=attention, window=2)
    lengths = torch.tensor([9, 4, 1, 6])
    cells, _ = span_cells(lengths, width)
    x = torch.randn(len(lengths), 10, 16, dtype=torch.double, requires_grad=True)
    head = SpanHead(16, cfg, 5).double().eval()
    ref = DenseSpanHead.from_fast(head).eval()
    probe = torch.randn(len(cells), 5, dtype=torch.double)
    ours = head(x, cells)
    theirs = cell_logits(ref, x, lengths, cells, width)
    assert ours.shape == theirs.shape == (len(cells), 5)
    assert (ours - theirs).abs().max() < 1e-10
    g_ours, = torch.autograd.grad((ours * probe).sum(), x)
    g_theirs, = torch.autograd.grad((theirs * probe).sum(), x)
    assert (g_ours - g_theirs).abs().max() < 1e-10
    # padding tokens of short sentences reach nothing
    assert g_ours[1, 4:].abs().max() == 0


def test_span_cells_are_exactly_the_upper_triangle_inside_each_sentence():
    lengths = torch.tensor([4, 1, 3])
    cells, offsets = span_cells(lengths)
    expected = [(b, i, j) for b, n in enumerate([4, 1, 3]) for i in range(n) for j in range(i, n)]
    assert [tuple(c) for c in cells.tolist()] == expected
    assert offsets.tolist() == [0, 10, 11, 17]


def test_span_cells_with_a_width_and_their_row_offsets():
    """Capped cells are exactly the j - i < width ones; row_offsets points every (b, i, j) at
    its own packed cell, capped or not (the loss builds its label grid from it)."""
    lengths = torch.tensor([6, 1, 4])
    for width in (None, 1, 2, 4, 10):
        cells, offsets = span_cells(lengths, width)
        expected = [(b, i, j) for b, n in enumerate(lengths.tolist()) for i in range(n)
                    for j in range(i, n) if width is None or j - i < width]
        assert [tuple(c) for c in cells.tolist()] == expected
        assert offsets[-1] == len(expected)
        rows = row_offsets(lengths, width)
        for k, (b, i, j) in enumerate(expected):
            assert rows[b, i] + j - i == k


def test_a_width_only_drops_cells(make):
    """Without the local attention (the one part that mixes cells of a row), a capped model's
    logits are the full model's at the cells it keeps."""
    full, capped = make(local_attention=False).eval(), make(local_attention=False, max_span_length=3).eval()
    a, b = full.collate(samples()), capped.collate(samples())
    with torch.no_grad():
        la, lb = full(a), capped(b)
    index = {tuple(c): k for k, c in enumerate(a["cells"].tolist())}
    assert len(lb) < len(la)
    assert torch.allclose(la[[index[tuple(c)] for c in b["cells"].tolist()]], lb, atol=1e-6)


def test_banded_attention_under_bf16_autocast_stays_near_fp32():
    """bf16 runs the two projections in bf16 and the band softmax in fp32: outputs and
    gradients stay within bf16 rounding of the fp32 ones, in fp32 dtypes for the weights."""
    torch.manual_seed(3)
    att = BandedAttention(40, 4, 3, block_cells=16)
    lengths = torch.tensor([9, 5])
    cells, _ = span_cells(lengths)
    b, i, j = cells.unbind(1)
    x = torch.randn(len(cells), 40, requires_grad=True)
    probe = torch.randn(len(cells), 40)
    ref = att(x, b * 9 + i)
    ref_grads = torch.autograd.grad((ref * probe).sum(), [x, *att.parameters()])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = att(x, b * 9 + i)
    grads = torch.autograd.grad((out.float() * probe).sum(), [x, *att.parameters()])
    assert (out.float() - ref).abs().max() < 0.05 * ref.abs().max()
    for g, r, p in zip(grads, ref_grads, [x, *att.parameters()]):
        assert g.dtype == p.dtype
        assert (g - r).norm() < 0.05 * r.norm()


# --- loss (faults 2, 3, 5 in docs/faults.md) --------------------------------------------------

def test_collate_keeps_labels_sparse(make):
    """Fault 5 in docs/faults.md: no dense L x L x labels tensor per sample at load time."""
    model = make()
    batch = model.collate(samples())
    n_spans = sum(len(s.spans) for s in samples())
    assert batch["spans"].shape == (n_spans, 4)
    b, l = len(samples()), int(batch["lengths"].max())
    big = [k for k, v in batch.items() if torch.is_tensor(v) and v.numel() >= b * l * l]
    assert big == [], f"dense per-cell tensors built at collate time: {big}"


@pytest.mark.parametrize("width", [None, 2])
def test_loss_targets_sit_on_the_gold_cells(make, width):
    model = make(max_span_length=width).eval()
    batch = model.collate(samples())
    gold = {(b, s, e, c) for b, s, e, c in batch["spans"].tolist()}
    wide = sum(1 for s in samples() for sp in s.spans if width and sp.end - sp.start > width)
    assert len(gold) == sum(len(s.spans) for s in samples()) - wide
    logits = torch.full((len(batch["cells"]), len(model.channel_names)), -30.0)
    for n, (b, i, j) in enumerate(batch["cells"].tolist()):
        for c in range(logits.shape[1]):
            if (b, i, j, c) in gold:
                logits[n, c] = 30.0
    assert model.loss(batch, logits) < 1e-10
    logits[0, 0] = -logits[0, 0]
    assert model.loss(batch, logits) > 1e-3


@pytest.mark.parametrize("head", ["knowfree", "cnn", "tagger"])
def test_padded_batch_loss_equals_per_sample_losses_combined(make, head):
    """Fault 2 in docs/faults.md: padding and lower-triangle cells are no negatives; a short
    sentence batched with a long one costs what it costs alone, combined by the documented rule
    (units: span cells, or tokens for the tagger)."""
    model = make(head).eval()
    data = samples()
    data[2].weight = 0.3
    batch = model.collate(data)
    loss = model.loss(batch, model(batch))
    numerator, units = 0.0, 0
    for s in data:
        alone = model.collate([Sample(s.tokens, s.spans, s.id)])  # weight 1
        n = len(s) if head == "tagger" else len(s) * (len(s) + 1) // 2
        numerator += s.weight * n * model.loss(alone, model(alone))
        units += n
    assert torch.allclose(loss, numerator / units, atol=1e-6)


def test_sample_weight_acts_on_the_batch_axis(make):
    """Fault 3 in docs/faults.md: a weight-0 sample contributes nothing; weight 0.5 halves its
    contribution."""
    model = make().eval()
    data = samples()
    batch = model.collate(data)
    logits = model(batch).detach().requires_grad_()
    full = model.loss(batch, logits)
    first = slice(0, int(batch["cell_offsets"][1]))

    batch["weights"] = torch.tensor([0.0, 1.0, 1.0])
    zero = model.loss(batch, logits)
    zero.backward()
    assert logits.grad[first].abs().max() == 0
    assert logits.grad[first.stop:].abs().max() > 0

    batch["weights"] = torch.tensor([0.5, 1.0, 1.0])
    half = model.loss(batch, logits)
    assert torch.allclose(full - half, (full - zero) / 2, atol=1e-6)


def test_label_weights_come_from_the_schema(make):
    model = make()
    weights = dict(zip(model.schema.names, model.schema.weights()))
    assert model.label_weights.tolist() == pytest.approx([weights[n] for n in model.channel_names])
    assert len(model.channel_names) == len(model.schema) and model.schema.extensions
    assert make(use_extensions=False).channel_names == ["LOC", "ORG", "PER"]


# --- forward ----------------------------------------------------------------------------------

@pytest.mark.parametrize("head", ["knowfree", "cnn", "tagger"])
def test_padding_invariance(make, head):
    model = make(head).eval()
    data = samples()
    batch = model.collate(data)
    with torch.no_grad():
        together = model(batch)
        for k, s in enumerate(data):
            alone = model(model.collate([s]))
            if head == "tagger":
                part = together[k, :len(s)]
                alone = alone[0]
            else:
                o = batch["cell_offsets"]
                part = together[o[k]:o[k + 1]]
            assert (part - alone).abs().max() < 1e-5


@pytest.mark.parametrize("head,kw", [("knowfree", {}), ("knowfree", {"local_attention": False}),
                                     ("cnn", {}), ("tagger", {}), ("tagger", {"tagger_crf": True})])
def test_every_parameter_receives_a_gradient(make, head, kw):
    """Fault 6 in docs/faults.md: no dead modules (the authors build, train and save an unused
    3-layer CNN)."""
    model = make(head, **kw)
    batch = model.collate(samples())
    model.loss(batch, model(batch)).backward()
    # the encoder's no_piece vector only stands in for tokens that no piece covers
    dead = [n for n, p in model.named_parameters()
            if n != "encoder.no_piece" and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert dead == []
    if head == "knowfree":
        assert not any(n.startswith("head.conv") for n, _ in model.named_parameters())


def test_weight_decay_reaches_weight_matrices_only(make):
    """Fault 7 in docs/faults.md: the authors' groups are inverted (decay on biases and norms
    only)."""
    model = make()
    groups = model.param_groups(encoder_lr=2e-5, head_lr=1e-3, weight_decay=0.01)
    names = {id(p): n for n, p in model.named_parameters()}
    by_group = {g["name"]: {names[id(p)] for p in g["params"]} for g in groups}
    assert sorted(n for g in by_group.values() for n in g) == sorted(names.values())
    assert all(n.startswith("encoder.backbone.") for g in ("encoder.decay", "encoder.no_decay")
               for n in by_group[g])
    # the encoder's fresh add-ons learn at the head's rate
    assert {"encoder.no_piece", "encoder.position_in_piece.weight"} <= by_group["head.no_decay"]
    decayed = by_group["head.decay"] | by_group["encoder.decay"]
    for n, p in model.named_parameters():
        embedding = "embedding" in n or "position_in_piece" in n
        assert (n in decayed) == (p.ndim >= 2 and not embedding), n
    assert "head.features.biaffine" in decayed and "head.attention.qkv.weight" in decayed
    for g in groups:
        assert g["weight_decay"] == (0.01 if g["name"].endswith(".decay") else 0.0)
        assert g["lr"] == (2e-5 if g["name"].startswith("encoder") else 1e-3)


# --- decoding ---------------------------------------------------------------------------------

def logits_for(model, batch, cell_probs):
    """Logits of probability 0.01 everywhere except {(b, i, j): [prob per channel]}."""
    logits = torch.full((len(batch["cells"]), len(model.channel_names)), math.log(0.01 / 0.99))
    for n, cell in enumerate(batch["cells"].tolist()):
        for c, p in enumerate(cell_probs.get(tuple(cell), [])):
            logits[n, c] = math.log(p / (1 - p))
    return logits


def test_extension_labels_are_never_predicted(make):
    model = make().eval()
    batch = model.collate(samples())
    n_ext = len(model.channel_names) - model.schema.n_targets
    assert n_ext == 3
    # cell (0, 0, 1): a target at 0.6 under extensions at 0.999; cell (0, 3, 4): extensions only
    logits = logits_for(model, batch, {(0, 0, 1): [0.2, 0.1, 0.6] + [0.999] * n_ext,
                                       (0, 3, 4): [0.01] * 3 + [0.999] * n_ext})
    out = model.decode(batch, logits)
    assert [(s, e, l) for s, e, l, _ in out[0]] == [(0, 2, "PER")]
    assert out[0][0][3] == pytest.approx(0.6) and out[1:] == [[], []]


def test_flat_and_nested_decoding(make):
    data = [Sample(list("一二三四五六"))]
    spans = {(0, 0, 3): [0.9, 0.01, 0.01], (0, 1, 2): [0.01, 0.8, 0.01],  # [0,4) LOC; [1,3) ORG inside
             (0, 2, 5): [0.01, 0.01, 0.7],  # [2,6) PER crosses [0,4)
             (0, 5, 5): [0.6, 0.01, 0.01],  # [5,6) LOC, disjoint from [0,4)
             (0, 4, 4): [0.4, 0.01, 0.01]}  # below the threshold
    flat = make().eval()
    batch = flat.collate(data)
    got = flat.decode(batch, logits_for(flat, batch, spans))[0]
    assert [(s, e, l) for s, e, l, _ in got] == [(0, 4, "LOC"), (5, 6, "LOC")]
    nested = make(flat=False).eval()
    got = nested.decode(batch, logits_for(nested, batch, spans))[0]
    assert [(s, e, l) for s, e, l, _ in got] == [(0, 4, "LOC"), (1, 3, "ORG"), (5, 6, "LOC")]


def test_bio_spans():
    # O B-0 I-0 I-1 B-1 B-1 I-1 O I-0
    assert bio_spans([0, 1, 2, 4, 3, 3, 4, 0, 2]) == [(1, 3, 0), (3, 4, 1), (4, 5, 1), (5, 7, 1), (8, 9, 0)]


def test_crf_against_brute_force():
    torch.manual_seed(0)
    crf = CRF(3)
    with torch.no_grad():
        for p in crf.parameters():
            p.copy_(torch.randn_like(p))
    emissions = torch.randn(2, 4, 3)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    tags = torch.tensor([[0, 1, 2, 1], [2, 2, 0, 0]])

    def score(em, path):
        s = crf.start[path[0]] + crf.end[path[-1]] + sum(em[t, k] for t, k in enumerate(path))
        return s + sum(crf.transitions[a, b] for a, b in zip(path, path[1:]))

    nll = crf.nll(emissions, tags, mask)
    for b, n in enumerate([4, 3]):
        paths = list(itertools.product(range(3), repeat=n))
        scores = torch.stack([score(emissions[b], p) for p in paths])
        gold = score(emissions[b], tags[b, :n].tolist())
        assert torch.allclose(nll[b], torch.logsumexp(scores, 0) - gold, atol=1e-5)
        assert crf.viterbi(emissions, mask)[b] == list(paths[int(scores.argmax())])


def test_tagger_writes_nested_gold_longest_first(make):
    model = make("tagger")
    batch = model.collate(samples()[:1])  # PER [0,2), ORG [3,7) with LOC [3,5) inside
    assert batch["tags"][0].tolist() == [5, 6, 0, 3, 4, 4, 4, 0, 0]


# --- configuration ----------------------------------------------------------------------------

def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ConfigError, match="unknown config key 'model.windw'; did you mean 'window'"):
        ModelConfig.from_dict({"head": "knowfree", "windw": 3})
    with pytest.raises(ConfigError, match="'model.head' must be one of"):
        ModelConfig(head="crf")
    with pytest.raises(ConfigError, match="divisible"):
        ModelConfig(channels=30, attention_heads=4)
    with pytest.raises(ConfigError, match="must be bool"):
        ModelConfig.from_dict({"flat": "yes"})
    assert ModelConfig.from_dict(ModelConfig(window=2).to_dict()) == ModelConfig(window=2)


# --- learning ---------------------------------------------------------------------------------

def overfit_data():
    rng = random.Random(0)
    chars = "的一是在不了有和人这中大为上个国我以要他时来用们生到作地于出就分对成会可也你"
    names = ["张伟", "王芳", "李娜", "刘洋", "陈静"]
    places = ["北京", "上海", "广州", "深圳", "杭州"]
    data = []
    for k in range(16):
        tokens, spans = [], []
        for _ in range(rng.randint(1, 2)):
            tokens += [rng.choice(chars) for _ in range(rng.randint(1, 3))]
            label, word = rng.choice([("PER", rng.choice(names)), ("LOC", rng.choice(places))])
            spans.append(Span(len(tokens), len(tokens) + 2, label))
            tokens += list(word)
        tokens += [rng.choice(chars) for _ in range(rng.randint(0, 2))]
        data.append(Sample(tokens, spans, id=str(k)))
    return data


@pytest.mark.parametrize("head", ["knowfree", "cnn", "tagger"])
def test_tiny_model_overfits_16_sentences(tiny_encoder, head):
    data = overfit_data()
    torch.manual_seed(0)
    schema = LabelSchema.from_samples(data)
    cfg = ModelConfig(head=head, channels=32, biaffine_heads=4, attention_heads=4, size_embedding=8,
                      size_buckets=8, dropout=0.1)
    model = build_model(cfg, schema, encoder=copy.deepcopy(tiny_encoder))
    opt = torch.optim.AdamW(model.param_groups(encoder_lr=1e-3, head_lr=1e-2, weight_decay=0.0))
    batch = model.collate(data)
    gold = [{(s.start, s.end, s.label) for s in x.spans} for x in data]
    for step in range(300):
        model.train()
        opt.zero_grad()
        model.loss(batch, model(batch)).backward()
        opt.step()
        if step % 10 == 9:
            model.eval()
            with torch.no_grad():
                pred = [{(s, e, l) for s, e, l, _ in spans} for spans in model.decode(batch, model(batch))]
            if pred == gold:
                return
    pytest.fail(f"no perfect fit after 300 steps: {sum(p == g for p, g in zip(pred, gold))}/16 right")
