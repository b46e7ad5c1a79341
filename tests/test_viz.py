"""HTML span rendering: escaped, nested and crossing spans drawn, plots build headless."""
import re

import matplotlib
import pandas as pd

matplotlib.use("Agg")

from knowfree import viz  # noqa: E402
from knowfree.data.sample import Sample, Span  # noqa: E402


def test_tokens_and_labels_are_escaped():
    s = Sample(["<script>", "alert(1)", "</script>", "&"], [Span(0, 3, 'X"><b>')], id="<i>", lang="en")
    out = viz.sample_html(s)
    assert "<script>" not in out and "&lt;script&gt;" in out
    assert "&lt;/script&gt;" in out and "&amp;" in out
    assert '"><b>' not in out and "&quot;&gt;&lt;b&gt;" in out
    assert "<i>" not in out


def test_nested_and_crossing_spans_get_separate_lanes():
    spans = [Span(0, 4, "ORG"), Span(0, 2, "LOC"), Span(1, 3, "ext.seg.WORD"), Span(3, 4, "ext.pos.NOUN")]
    lanes = viz.assign_lanes(spans)
    for lane in lanes:
        assert all(a.end <= b.start for a, b in zip(lane, lane[1:]))
    assert sorted(s for lane in lanes for s in lane) == sorted(spans)
    assert lanes[0][0] == Span(0, 4, "ORG")  # the outer span is drawn first
    html = viz.spans_html(list("北京大学"), {"gold": spans})
    assert html.count('colspan="4" title="ORG') == 1 and 'title="LOC: 北京"' in html
    # every lane row covers all 4 tokens
    lane_rows = re.findall(r"<tr><th[^>]*>[^<]*</th>(.*?)</tr>", html)[1:]  # after the token row
    assert len(lane_rows) == 3
    for row in lane_rows:
        assert sum(int(n) for n in re.findall(r'colspan="(\d+)"', row)) == 4


def test_sample_html_layers_gold_prediction_extension():
    s = Sample(list("张三在北京"), [Span(0, 2, "PER"), Span(3, 5, "LOC"), Span(0, 2, "ext.pos.PROPN")])
    out = viz.sample_html(s, pred=[Span(3, 5, "ORG")])
    assert out.index(">gold<") < out.index(">predicted<") < out.index(">extension<")
    assert ">pos.PROPN<" in out  # the ext. prefix is dropped on screen, kept in the tooltip
    assert 'title="ext.pos.PROPN: 张三"' in out
    assert ">extension<" not in viz.sample_html(s, extensions=False)


def test_span_past_the_sentence_is_an_error():
    try:
        viz.spans_html(["a"], {"gold": [Span(0, 2, "X")]})
    except ValueError as e:
        assert "ends past the sentence" in str(e)
    else:
        raise AssertionError("expected ValueError")


def test_colours_are_stable_per_label():
    assert viz.label_color("PER") == viz.label_color("PER") != viz.label_color("LOC")


def test_plots_build():
    import matplotlib.pyplot as plt
    figs = [
        viz.bar_counts({"PER": 3, "LOC": 5}, "labels"),
        viz.histograms({"train": [1, 2, 3], "test": []}, "length", "lengths"),
        viz.learning_curves(pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5], "dev_f1": [0.1, 0.2]})),
        viz.grouped_bars(pd.DataFrame({"k": [20, 20, 40], "variant": ["a", "b", "a"],
                                       "mean": [1.0, 2.0, 3.0], "std": [0.1, float("nan"), 0.2]}),
                         "k", "variant", refs={"theirs": 2.5}),
    ]
    for f in figs:
        assert f.axes
        plt.close(f)


def test_inspector_widget_follows_its_controls():
    """Driving the widgets as a user would: the slider picks the sentence shown, the checkbox
    narrows the pool to sentences with synthetic data (observers run without a front end)."""
    from knowfree.data.sample import Sample, Span
    from knowfree.viz import inspector

    a = Sample(list("张三在北京"), [Span(0, 2, "PER.NAM"), Span(3, 5, "ext.ent.GPE")], id="a")
    b = Sample(list("李四去上海"), [Span(0, 2, "PER.NAM")], id="b")
    syn = Sample(list("上海是城市"), [Span(0, 2, "GPE.NAM")], id="b#0", synthetic=True, source_id="b",
                 weight=0.5)
    box = inspector([{"sample": a, "synthetic": [], "answers": {"entity": "[{\"entity\": \"北京\"}]"}},
                     {"sample": b, "synthetic": [syn], "answers": {}}])
    (pick, only_syn), view = box.children[0].children, box.children[1]
    assert "张" in view.value and "raw LLM answer" in view.value and "北京" in view.value
    pick.value = 1
    assert "李" in view.value and "synthetic sentence" in view.value and "张" not in view.value
    pick.value = 0
    only_syn.value = True
    assert pick.max == 0 and "李" in view.value and "上海是城市"[0] in view.value


def test_inspector_keeps_a_long_sentence_inside_its_own_scroll_box():
    """A 170-character Weibo-like post: the widget is as wide as the output area and never
    scrolls itself; the sentence's table scrolls inside a box no wider than the card, whose
    layer names stay in view (sticky) and whose rows do not inherit JupyterLab's line height;
    every span is in the HTML, so all are reachable by scrolling."""
    import re

    from knowfree.data.sample import Sample, Span
    from knowfree.viz import inspector

    text = ("今天和朋友去北京大学看樱花，人山人海，顺便在五道口吃了烤鸭" * 6)[:170]
    spans = [Span(i, i + 2, "PER.NOM") for i in range(0, 168, 12)] + [Span(6, 10, "ORG.NAM"),
                                                                      Span(160, 170, "ext.ent.LOC")]
    sample = Sample(list(text), spans, id="long")
    box = inspector([{"sample": sample, "synthetic": [], "answers": {}}])
    controls, view = box.children
    assert box.layout.overflow == "hidden" and box.layout.width == box.layout.max_width == "100%"
    assert view.layout.width == view.layout.max_width == "100%" and view.layout.min_width == "0"
    # ipywidgets' .widget-html-content grows to its content unless pinned: without this rule
    # Chromium showed the card cut 532 px short and unscrollable (scripts/browser_check.py)
    assert "kf-inspector" in box._dom_classes
    rule = re.search(r"<style>\.kf-inspector \.widget-html, \.kf-inspector \.widget-html-content"
                     r"\{([^}]*)\}</style>", view.value)
    assert rule and {"min-width:0", "max-width:100%", "width:100%", "overflow:hidden"} <= set(rule[1].split(";"))
    html = view.value
    tables = re.findall(r'<div style="([^"]*)"><table style="([^"]*)"', html)
    assert tables and all("overflow-x:auto" in d and "max-width:100%" in d and "line-height:normal" in t
                          for d, t in tables)
    assert html.count("position:sticky;left:0") == 3  # the token row, one gold lane, one ext.ent lane
    assert all(f'title="{s.label}: ' in html for s in spans)
    # no sentence has synthetic data (tagger knowledge): no checkbox to offer
    assert len(controls.children) == 1 and controls.children[0].description == "sentence"


def test_weibo_labels_get_colours_apart():
    """Every pair of Weibo labels differs in hue by 40 degrees or more, or is one type's NAM
    and NOM (same hue, shades apart); hashed hues had PER.NOM and GPE.NAM 6 degrees apart."""
    import itertools

    from knowfree.data.registry import REGISTRY
    from knowfree.viz import label_hls

    for a, b in itertools.combinations(REGISTRY["weibo"].labels, 2):
        (ha, la, _), (hb, lb, _) = label_hls(a), label_hls(b)
        apart = min(abs(ha - hb), 1 - abs(ha - hb)) * 360
        same_type = a.split(".")[0] == b.split(".")[0]
        assert (same_type and abs(la - lb) >= 0.1) or apart >= 40, (a, b, apart)
