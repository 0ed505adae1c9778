"""Progress on long work: a bar on a terminal, one line per 10 % in a log."""

from __future__ import annotations

import io

import pytest

from attr2gender import progress as progress_module
from attr2gender.progress import LineProgress, progress


def test_off_a_terminal_progress_prints_one_line_per_tenth(capsys):
    assert not progress_module.interactive()  # pytest captures stderr: not a terminal
    bar = progress(total=1000, desc="predict", unit="img")
    assert isinstance(bar, LineProgress)
    with bar:
        for _ in range(1000):
            bar.update(1)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 10  # 10 %, 20 %, ... 90 %, then the final line at close
    assert lines[0].startswith("predict: 10% (100/1,000 img") and lines[-1].startswith("predict: 100%")


def test_iterating_a_list_and_disabled_progress(capsys):
    assert list(progress(range(25), desc="align")) == list(range(25))
    assert capsys.readouterr().err.count("\n") == 10  # 25 items: 12 %, 20 %, ... then 100 %
    assert list(progress(range(5), desc="x", disable=True)) == list(range(5))
    assert capsys.readouterr().err == ""


def test_a_terminal_gets_a_bar_redrawn_in_place(monkeypatch):
    """On a terminal the bar is redrawn on one line (carriage returns) and ends at 3/3; a log file gets
    separate lines instead (the tests above)."""
    fake = io.StringIO()
    fake.isatty = lambda: True  # type: ignore[method-assign]
    monkeypatch.setattr("sys.stderr", fake)
    with progress(total=3, desc="align", unit="img") as bar:
        for _ in range(3):
            bar.update(1)
    text = fake.getvalue()
    assert "\r" in text and "align" in text and "3/3" in text and "img" in text
    assert text.count("\n") <= 1  # one line, redrawn: not a line per update


@pytest.mark.parametrize("total", [1, 7])
def test_small_totals_still_end_with_one_line(capsys, total):
    with progress(total=total, desc="s") as bar:
        bar.update(total)
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("s: 100%")


def test_a_pandas_index_or_numpy_array_iterates_off_a_terminal(capsys):
    import numpy as np
    import pandas as pd

    # `attr2gender data summary` iterates an Index of image ids; off a terminal it crashed on its truth value.
    assert list(progress(pd.Index(["a.jpg", "b.jpg"]), desc="summary")) == ["a.jpg", "b.jpg"]
    assert list(progress(np.arange(3), desc="x")) == [0, 1, 2]
    assert "summary: 100% (2/2" in capsys.readouterr().err
