"""Progress bars of training and prediction: tqdm.auto (a widget in a notebook, text in a
console), laid out so that JupyterLab keeps each on one line (scripts/browser_check.py measures
them in Chromium)."""
from __future__ import annotations

from tqdm.auto import tqdm


def bar_name(name: str, width: int = 24) -> str:
    """A run's name for its progress bar, cut in the middle to ``width`` characters: the whole
    name (dataset, K, head, seed, hash) wrapped in a notebook and squeezed the bar."""
    return name if len(name) <= width else f"{name[:width - 10]}…{name[-9:]}"


def on_one_line(bar) -> None:
    """In a notebook tqdm draws an HBox of description, bar and counts, and the browser shrinks
    the description first: beside a long postfix (best epoch, dev F1, loss) it wrapped onto a
    second line. Description and counts keep their own width; the bar takes what is left. A
    console bar has no box and is left alone."""
    box = getattr(bar, "container", None)
    for text in (box.children[0], box.children[-1]) if box is not None else ():
        text.layout.flex = "0 0 auto"


def progress_bar(iterable=None, **kwargs):
    """``tqdm(iterable, **kwargs)``, kept on one line in a notebook."""
    bar = tqdm(iterable, **kwargs)
    on_one_line(bar)
    return bar
