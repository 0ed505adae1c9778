"""Progress for long work: a tqdm bar on a terminal (or in a notebook), one line per 10 % elsewhere.

A bar redraws itself many times a second; written to a file, a CI log or ``docker logs`` that becomes
thousands of lines. Where stderr is not a terminal the same calls print ``desc: 30% (300/1,000 img,
41.2 img/s)`` once per tenth of the work instead.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator


def interactive() -> bool:
    """A terminal or a Jupyter kernel: somewhere a redrawn bar reads as one line."""
    return "ipykernel" in sys.modules or bool(getattr(sys.stderr, "isatty", lambda: False)())


class LineProgress:
    """tqdm's interface (iterate, ``update``, context manager, ``close``) printing one line per 10 %."""

    def __init__(
        self, iterable: Iterable | None = None, total: int | None = None, desc: str = "", unit: str = "it"
    ):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit = total, desc, unit
        self.n = 0
        self._start = time.perf_counter()
        self._next_tenth = 1
        self._closed = False

    def __iter__(self) -> Iterator:
        # "is None", not truthiness: a pandas Index or numpy array has no truth value.
        for item in () if self.iterable is None else self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _line(self) -> str:
        seconds = max(time.perf_counter() - self._start, 1e-9)
        done = f"{self.n:,}/{self.total:,}" if self.total else f"{self.n:,}"
        percent = f"{100 * self.n // self.total}% " if self.total else ""
        return f"{self.desc}: {percent}({done} {self.unit}, {self.n / seconds:.1f} {self.unit}/s)"

    def update(self, n: int = 1) -> None:
        self.n += n
        if not self.total:
            return
        reached = 10 * self.n // self.total
        if reached >= self._next_tenth and self.n < self.total:
            print(self._line(), file=sys.stderr, flush=True)
            self._next_tenth = reached + 1

    def set_postfix(self, *args, **kwargs) -> None:  # tqdm's; nothing to redraw here
        pass

    def close(self) -> None:
        if not self._closed and self.n:
            print(self._line(), file=sys.stderr, flush=True)
        self._closed = True


def progress(
    iterable: Iterable | None = None,
    total: int | None = None,
    desc: str = "",
    unit: str = "it",
    disable: bool = False,
    **tqdm_kwargs,
):
    """A tqdm bar where one reads as a line, :class:`LineProgress` elsewhere; nothing when ``disable``."""
    from tqdm.auto import tqdm

    if disable or interactive():
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, **tqdm_kwargs)
    return LineProgress(iterable, total, desc, unit)
