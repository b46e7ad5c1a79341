"""Progress bars: a notebook bar stays on one line, a console bar is left as it is."""
from tqdm import tqdm as console_tqdm
from tqdm.notebook import tqdm as notebook_tqdm

from knowfree.progress import bar_name, on_one_line


def test_notebook_bar_keeps_its_description_on_one_line():
    """In a notebook the run's bar is an HBox (description, bar, counts); a shrinkable description
    wrapped onto two lines beside a long postfix (seen in Chromium, scripts/browser_check.py).
    The texts keep their width, the bar takes the rest; a console bar is left as it is."""
    bar = notebook_tqdm(total=3, desc=bar_name("msra-k200-s42-knowfree-s1-0123abcd"), display=False)
    on_one_line(bar)
    left, middle, right = bar.container.children
    assert (left.layout.flex, right.layout.flex) == ("0 0 auto", "0 0 auto")
    assert middle.layout.flex != "0 0 auto"
    bar.close()
    plain = console_tqdm(total=3, disable=True)
    on_one_line(plain)  # no container: nothing to do, no error
    plain.close()
