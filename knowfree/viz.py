"""HTML span rendering and the plots the notebooks share.

Spans are drawn as lanes under the sentence: one table column per token, one row per lane, a
coloured cell spanning the tokens of each span. Lanes handle nested and crossing spans alike
(a gold entity, the LLM's word segmentation and its POS tags routinely cross), which inline
markup cannot. Everything is inline-styled HTML, so it survives JupyterLab's sanitiser, a
static papermill output and nbconvert.
"""
from __future__ import annotations

import colorsys
import hashlib
import html
from typing import Iterable, Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

from knowfree.data.sample import EXT_PREFIX, Sample, Span


# Hues of the entity types the registered datasets share, spread apart by hand: hashed hues
# put Weibo's PER.NOM and GPE.NAM 6 degrees apart. Other labels keep a hue from their name's
# hash; a NAM/NOM suffix (named / nominal mention) sets the shade, so a type's two kinds read as
# one family.
_TYPE_HUES = {"PER": 215, "NAME": 215, "PS": 215, "ORG": 120, "OG": 120, "LOC": 30, "LC": 30,
              "GPE": 290, "MISC": 0, "TELEVISION": 175, "TITLE": 330, "EDU": 55, "PRO": 250,
              "CONT": 90, "RACE": 15, "DT": 55, "TI": 175}
_KIND_SHADES = {"NAM": (0.74, 0.75), "NOM": (0.89, 0.6)}  # (lightness, saturation)


def label_hls(label: str) -> tuple[float, float, float]:
    """(hue in [0, 1), lightness, saturation) of a label's colour, fixed by its name."""
    digest = hashlib.md5(label.encode("utf-8")).digest()
    if label.startswith(EXT_PREFIX):
        return digest[0] / 255, 0.82, 0.65
    kind_of = label.rsplit(".", 1)
    type_, kind = (kind_of[0], kind_of[1]) if len(kind_of) == 2 and kind_of[1] in _KIND_SHADES else (label, None)
    hue = _TYPE_HUES[type_] / 360 if type_ in _TYPE_HUES else hashlib.md5(type_.encode("utf-8")).digest()[0] / 255
    light, sat = _KIND_SHADES.get(kind, (0.82, 0.65))
    return hue, light, sat


def label_color(label: str) -> str:
    """A pastel colour fixed by the label's name, so a label looks the same in every view."""
    r, g, b = colorsys.hls_to_rgb(*label_hls(label))
    return f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}"


def _short(label: str) -> str:
    return label[len(EXT_PREFIX):] if label.startswith(EXT_PREFIX) else label


def assign_lanes(spans: Iterable[Span]) -> list[list[Span]]:
    """Greedy interval colouring: spans in one lane never overlap; outer spans go first."""
    lanes: list[list[Span]] = []
    for s in sorted(set(spans), key=lambda s: (s.start, -s.end, s.label)):
        for lane in lanes:
            if lane[-1].end <= s.start:
                lane.append(s)
                break
        else:
            lanes.append([s])
    return lanes


_CELL = "padding:1px 2px;border:1px solid #ddd;"
_ROW_NAME = ("text-align:right;font-size:0.75em;font-weight:normal;padding-right:6px;white-space:nowrap;"
             "position:sticky;left:0;background:var(--jp-layout-color0, white);z-index:1")
# every sentence scrolls in its own box, never wider than the output area
SCROLL_BOX = "overflow-x:auto;max-width:100%;box-sizing:border-box"
_TOKEN = "padding:1px 3px;text-align:center;font-size:1.05em;"


def spans_html(tokens: Sequence[str], layers: Mapping[str, Iterable[Span]], sep: str = "",
               title: str | None = None) -> str:
    """One sentence with each layer's spans in lanes beneath it (layers: name -> spans).

    ``sep`` is how tokens join into text; it only affects the tooltip of each span."""
    n = len(tokens)
    esc = html.escape
    rows = [f'<tr><th style="{_ROW_NAME}"></th>' + "".join(f'<td style="{_TOKEN}">{esc(t) if t.strip() else "&nbsp;"}'
                                      f"</td>" for t in tokens) + "</tr>"]
    for layer, spans in layers.items():
        lanes = assign_lanes(spans) or [[]]
        for i, lane in enumerate(lanes):
            head = esc(layer) if i == 0 else ""
            cells, pos = [], 0
            for s in lane:
                if s.end > n:
                    raise ValueError(f"span [{s.start}, {s.end}) {s.label!r} ends past the "
                                     f"sentence ({n} tokens)")
                if s.start > pos:
                    cells.append(f'<td colspan="{s.start - pos}"></td>')
                text = sep.join(tokens[s.start:s.end])
                cells.append(f'<td colspan="{s.end - s.start}" title="{esc(s.label)}: {esc(text)}" '
                             f'style="{_CELL}background:{label_color(s.label)};font-size:0.7em;'
                             f'text-align:center;white-space:nowrap">{esc(_short(s.label))}</td>')
                pos = s.end
            if pos < n:
                cells.append(f'<td colspan="{n - pos}"></td>')
            # sticky: when a long sentence scrolls sideways, the layer names stay in view
            rows.append(f'<tr><th style="{_ROW_NAME}">{head}</th>{"".join(cells)}</tr>')
    caption = (f'<div style="font-size:0.8em;color:#555;margin-top:6px">{esc(title)}</div>'
               if title else "")
    return (f'{caption}<div style="{SCROLL_BOX}"><table style="border-collapse:collapse;'
            f'margin:2px 0 8px 0;line-height:normal">{"".join(rows)}</table></div>')


def sample_html(sample: Sample, pred: Iterable[Span] | None = None, extensions: bool = True,
                title: str | None = None) -> str:
    """A sample's gold target spans, then predictions (if given), then its extension spans."""
    layers: dict[str, list[Span]] = {"gold": sample.targets()}
    if pred is not None:
        layers["predicted"] = list(pred)
    if extensions and sample.extensions():
        layers["extension"] = sample.extensions()
    head = title if title is not None else (sample.id or None)
    return spans_html(sample.tokens, layers, sample.sep, head)


def legend_html(labels: Iterable[str]) -> str:
    return " ".join(f'<span style="background:{label_color(l)};padding:1px 4px;margin:1px;'
                    f'font-size:0.8em;display:inline-block">{html.escape(_short(l))}</span>'
                    for l in sorted(set(labels)))


def samples_html(samples: Sequence[Sample], preds: Sequence[Iterable[Span]] | None = None,
                 extensions: bool = True) -> str:
    """A static browser: a legend of every label shown, then each sample."""
    labels = {s.label for x in samples for s in x.spans if extensions or not s.label.startswith(EXT_PREFIX)}
    if preds is not None:
        labels |= {s.label for p in preds for s in p}
    body = "".join(sample_html(x, None if preds is None else preds[i], extensions)
                   for i, x in enumerate(samples))
    return f"<div>{legend_html(labels)}</div>{body}"


def _family(label: str) -> str:
    """'ext.pos.NOUN' -> 'ext.pos'; a target label -> 'gold'."""
    return ".".join(label.split(".")[:2]) if label.startswith(EXT_PREFIX) else "gold"


def knowledge_card(sample: Sample, synthetic: Sequence[Sample] = (),
                   answers: Mapping[str, str] | None = None) -> str:
    """One augmented training sentence: gold spans above each extension family (entity
    classes, POS, segmentation), the raw LLM answers, and the synthetic sentences cut from
    its explanation with their pseudo-labels and extension spans."""
    layers: dict[str, list[Span]] = {"gold": []}
    for s in sorted(sample.spans, key=lambda s: _family(s.label)):
        layers.setdefault(_family(s.label), []).append(s)
    parts = [spans_html(sample.tokens, layers, sample.sep, sample.id or None)]
    for kind, text in (answers or {}).items():
        parts.append(f"<details><summary style='font-size:0.85em'>raw LLM answer: "
                     f"{html.escape(kind)}</summary><pre style='white-space:pre-wrap;"
                     f"font-size:0.8em'>{html.escape(text)}</pre></details>")
    if synthetic:
        parts.append(f"<div style='font-size:0.85em;margin-top:4px'>{len(synthetic)} synthetic "
                     f"sentence(s) cut from the explanation (gold = pseudo-labels):</div>")
        parts += [sample_html(x, title=f"synthetic, weight {x.weight:g}") for x in synthetic]
    # line-height: a widget's HTML inherits JupyterLab's 28 px, which made rows 1.5x taller
    return ("<div style='border-left:3px solid #999;padding-left:8px;margin:10px 0;max-width:100%;"
            "box-sizing:border-box;line-height:normal'>" + "".join(parts) + "</div>")


# ipywidgets' HTML widget puts its value in a flex item (.widget-html-content) that grows to
# the width of its content, so a card's own max-width:100% scroll box never engaged and the
# VBox clipped the sentence at the right edge (seen in Chromium: scripts/browser_check.py). The
# rule pins that item to the widget's width; scoped to the inspector by its class.
INSPECTOR_STYLE = ("<style>.kf-inspector .widget-html, .kf-inspector .widget-html-content"
                   "{min-width:0;max-width:100%;width:100%;overflow:hidden;box-sizing:border-box;"
                   "margin-left:0;margin-right:0}</style>")


def inspector(records: Sequence[Mapping]):
    """A live browser over ``knowledge_card`` records (keys: sample, synthetic, answers).

    Widgets only render with a live kernel front end; notebooks show a static summary too."""
    import ipywidgets as widgets

    if not records:
        return widgets.HTML("<i>nothing to inspect</i>")
    # the widget never grows past the output area (min_width 0 lets a flex child shrink); each
    # sentence scrolls inside its own card instead
    fit = dict(width="100%", max_width="100%", min_width="0")
    view = widgets.HTML(layout=widgets.Layout(**fit))
    pick = widgets.IntSlider(value=0, min=0, max=len(records) - 1, description="sentence",
                             continuous_update=False)
    has_syn = any(r.get("synthetic") for r in records)
    # offered only when some sentence has synthetic data (none without synthesis); its own
    # width, so the label is not cut
    only_syn = widgets.Checkbox(value=False, description="only sentences with synthetic data",
                                indent=False, layout=widgets.Layout(width="auto"))

    def show(_=None):
        pool = [r for r in records if r.get("synthetic")] if only_syn.value else list(records)
        pick.max = len(pool) - 1
        view.value = INSPECTOR_STYLE + knowledge_card(**pool[min(pick.value, len(pool) - 1)])

    pick.observe(show, names="value")
    only_syn.observe(show, names="value")
    show()
    controls = widgets.HBox([pick, only_syn] if has_syn else [pick], layout=widgets.Layout(flex_flow="row wrap", **fit))
    box = widgets.VBox([controls, view], layout=widgets.Layout(overflow="hidden", **fit))
    box.add_class("kf-inspector")
    return box


# ---------------------------------------------------------------------------- plots


def bar_counts(counts: Mapping[str, float], title: str, xlabel: str = "count", top: int = 30,
               log: bool = False):
    """Horizontal bars, largest first, at most ``top`` of them."""
    items = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    fig, ax = plt.subplots(figsize=(6, 0.28 * max(len(items), 3) + 1))
    ax.barh([_short(k) for k, _ in items][::-1], [v for _, v in items][::-1],
            color=[label_color(k) for k, _ in items][::-1], edgecolor="#555")
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    if log:
        ax.set_xscale("log")
    fig.tight_layout()
    return fig


def histograms(series: Mapping[str, Sequence[float]], xlabel: str, title: str, bins: int = 40):
    """Overlaid step histograms (e.g. one per split), density-normalised to compare shapes."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    every = [v for values in series.values() for v in values]
    # one set of bin edges for all series, so their shapes compare bin for bin
    edges = np.histogram_bin_edges(every, bins=bins) if every else bins
    for name, values in series.items():
        if len(values):
            ax.hist(values, bins=edges, histtype="step", density=True, linewidth=1.5, label=name)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    return fig


def learning_curves(epochs, x: str = "epoch", left: Sequence[str] = ("train_loss",),
                    right: Sequence[str] = ("dev_f1",), title: str = "learning curves"):
    """Loss-like columns on the left axis, score-like columns on the right axis.

    ``epochs``: a DataFrame with one row per epoch (the trainer's epochs.csv); columns it
    lacks are skipped, so the plot follows whatever the trainer logs."""
    fig, ax = plt.subplots(figsize=(6, 3.2))
    for c in left:
        if c in epochs:
            ax.plot(epochs[x], epochs[c], marker="o", label=c)
    ax.set_xlabel(x)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylabel(", ".join(c for c in left if c in epochs))
    ax2 = ax.twinx()
    for i, c in enumerate(c for c in right if c in epochs):
        scored = epochs[[x, c]].dropna()  # with eval_every > 1 only some epochs are scored
        ax2.plot(scored[x], scored[c], marker="s", linestyle="--", color=f"C{i + len(left)}", label=c)
    ax2.set_ylabel(", ".join(c for c in right if c in epochs))
    lines = ax.get_legend_handles_labels()
    lines2 = ax2.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], loc="best", fontsize="small")
    ax.set_title(title)
    fig.tight_layout()
    return fig


def grouped_bars(table, group: str, hue: str, mean: str = "mean", std: str = "std",
                 refs: Mapping[str, float] | None = None, ylabel: str = "test F1 (%)",
                 title: str = ""):
    """Bars of ``mean`` with ``std`` error bars: one cluster per ``group``, one bar per ``hue``.

    ``refs``: horizontal reference lines (label -> value), e.g. published numbers obtained
    with another encoder and LLM; the label should say whose they are."""
    groups = list(dict.fromkeys(table[group]))
    hues = list(dict.fromkeys(table[hue]))
    width = 0.8 / max(len(hues), 1)
    fig, ax = plt.subplots(figsize=(max(5, 1.2 * len(groups) * max(len(hues), 1) * 0.5 + 2), 3.6))
    for i, h in enumerate(hues):
        sub = table[table[hue] == h].set_index(group)
        xs = [g + (i - (len(hues) - 1) / 2) * width for g in range(len(groups))]
        ys = [sub[mean].get(g, float("nan")) for g in groups]
        es = [sub[std].get(g, 0.0) if std in sub else 0.0 for g in groups]
        ax.bar(xs, ys, width, yerr=[0.0 if e != e else e for e in es], capsize=3, label=str(h))
    for j, (name, value) in enumerate((refs or {}).items()):
        ax.axhline(value, color="k", linestyle=[":", "--", "-."][j % 3], linewidth=1, label=name)
    ax.set_ylim(bottom=0)
    ax.set_xticks(range(len(groups)))
    ax.set_xticklabels([str(g) for g in groups])
    ax.set_xlabel(group)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.legend(fontsize="small", bbox_to_anchor=(1.01, 1), loc="upper left")
    fig.tight_layout()
    return fig
