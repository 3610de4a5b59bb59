"""A bounded, decimated (x, y) series: O(1) amortized append, recent points exact.

Why: a run can log a million points, but a chart only needs a few thousand,
and the cost of drawing (and of sending the data to the browser) must not
grow with the run. Old points are kept at a stride that doubles whenever the
old part fills up; the newest ``exact`` points are always kept as logged.
"""

from __future__ import annotations

import math


class DecimatedSeries:
    """At most ``max_points`` points; the latest ``exact`` of them always exact.

    Layout: ``head`` (old points, every ``stride``-th one kept) + ``tail``
    (recent points, all kept). When the tail reaches ``2 * exact`` points its
    oldest half moves to the head, thinned to the current stride; when the
    head exceeds its cap, every other head point is dropped and the stride
    doubles. Each point moves at most once and is dropped at most once, so
    appends are O(1) amortized and memory is O(max_points).
    """

    __slots__ = ("_hx", "_hy", "_tx", "_ty", "_stride", "_moved", "_head_cap", "_exact", "count",
                 "version")

    def __init__(self, max_points: int = 2000, exact: int | None = None) -> None:
        if max_points < 8:
            raise ValueError("max_points must be >= 8")
        self._exact = exact if exact is not None else max_points // 4
        if not 1 <= self._exact <= max_points // 4:
            raise ValueError("exact must be between 1 and max_points // 4")
        self._head_cap = max_points - 2 * self._exact
        self._hx: list[float] = []
        self._hy: list[float] = []
        self._tx: list[float] = []
        self._ty: list[float] = []
        self._stride = 1
        self._moved = 0  # points that ever left the tail (their index decides if kept)
        self.count = 0  # points ever appended
        self.version = 0  # bumps on every change, so a renderer can skip unchanged series

    def append(self, x: float, y: float) -> None:
        """Add one point; non-finite y values are skipped (a NaN loss draws nothing)."""
        if not math.isfinite(y):
            return
        self._tx.append(x)
        self._ty.append(y)
        self.count += 1
        self.version += 1
        if len(self._tx) >= 2 * self._exact:
            self._spill()

    def _spill(self) -> None:
        n = self._exact
        stride = self._stride
        start = (-self._moved) % stride  # first index in this batch that lands on the stride grid
        self._hx.extend(self._tx[start:n:stride])
        self._hy.extend(self._ty[start:n:stride])
        self._moved += n
        del self._tx[:n]
        del self._ty[:n]
        if len(self._hx) > self._head_cap:
            # Keep the points whose global index stays on the doubled grid.
            self._hx = self._hx[::2]
            self._hy = self._hy[::2]
            self._stride = stride * 2

    def __len__(self) -> int:
        return len(self._hx) + len(self._tx)

    @property
    def stride(self) -> int:
        return self._stride

    def xs(self) -> list[float]:
        return self._hx + self._tx

    def ys(self) -> list[float]:
        return self._hy + self._ty

    def last(self) -> tuple[float, float] | None:
        if self._tx:
            return self._tx[-1], self._ty[-1]
        if self._hx:
            return self._hx[-1], self._hy[-1]
        return None


def thin(xs: list[float], ys: list[float], limit: int) -> tuple[list[float], list[float]]:
    """Every k-th point so that at most ``limit`` remain, always keeping the last one."""
    n = len(xs)
    if n <= limit:
        return xs, ys
    k = math.ceil(n / limit)
    ix = list(range(n - 1, -1, -k))[::-1]
    return [xs[i] for i in ix], [ys[i] for i in ix]


def ema(xs: list[float], ys: list[float], weight: float) -> list[float]:
    """Debiased exponential moving average, step-aware (as TensorBoard's smoothing).

    ``weight`` in [0, 1): 0 = raw. The decay for a gap of ``d`` steps is
    ``weight ** (d / base)`` where ``base`` is the smallest gap, so a thinned
    (decimated) series smooths like the full one. Gaps repeat, so the power
    is only recomputed when the gap changes.
    """
    if weight <= 0 or not ys:
        return list(ys)
    weight = min(weight, 0.999)
    base = min((b - a for a, b in zip(xs, xs[1:], strict=False) if b > a), default=1.0)
    out: list[float] = []
    append = out.append
    acc = 0.0
    norm = 0.0
    prev = xs[0]
    last_gap = None
    decay = weight
    for x, y in zip(xs, ys, strict=True):
        gap = x - prev
        if gap != last_gap:
            decay = weight ** (gap / base) if gap > 0 else weight
            last_gap = gap
        acc = acc * decay + (1 - decay) * y
        norm = norm * decay + (1 - decay)
        append(acc / norm)
        prev = x
    return out
