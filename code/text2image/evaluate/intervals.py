"""95 % intervals for measured proportions: the Wilson score interval, and the mean of several.

Every share the book reports (a benchmark category, an oracle agreement, a
probe) is ``k`` successes out of ``n`` trials; the Wilson interval stays
inside ``[0, 1]`` and keeps its coverage near 0 and 1, where the normal
approximation fails (a generator at 100 % still gets a lower bound below 1).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

Z95 = 1.959963984540054  # the 97.5 % quantile of the standard normal


@dataclass(frozen=True)
class Share:
    """``k`` of ``n`` with its 95 % interval ``[lo, hi]``; ``p`` is ``k / n``."""
    k: int
    n: int
    p: float
    lo: float
    hi: float

    def as_dict(self) -> dict:
        return asdict(self)

    def ties(self, other: "Share") -> bool:
        """Two shares whose intervals overlap are not told apart by the measurement."""
        return self.lo <= other.hi and other.lo <= self.hi


def wilson(k: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson's score interval for ``k`` successes out of ``n`` (``(0, 1)`` when ``n`` is 0)."""
    if not 0 <= k <= n:
        raise ValueError(f"a share needs 0 <= k <= n, not k={k}, n={n}")
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    # exactly 0 (or 1) at the edge, where rounding would leave 1e-17 above the share (or below it)
    lo = 0.0 if k == 0 else max(0.0, centre - half)
    hi = 1.0 if k == n else min(1.0, centre + half)
    return lo, hi


def share(k: int, n: int) -> Share:
    lo, hi = wilson(k, n)
    return Share(int(k), int(n), k / n if n else float("nan"), lo, hi)


def mean_of(shares: Sequence[Share]) -> dict:
    """The mean of several shares measured on separate samples (GenEval's ``overall``) and a normal 95 %
    interval around it, each part's standard error read from the width of its Wilson interval (so a
    part at 0 or 1 still adds its uncertainty, which the binomial variance ``p (1 - p) / n`` would not)."""
    shares = [s for s in shares if s.n]
    if not shares:
        return {"p": float("nan"), "lo": float("nan"), "hi": float("nan")}
    mean = sum(s.p for s in shares) / len(shares)
    var = sum(((s.hi - s.lo) / (2 * Z95)) ** 2 for s in shares) / len(shares) ** 2
    half = Z95 * math.sqrt(var)
    return {"p": mean, "lo": max(0.0, mean - half), "hi": min(1.0, mean + half)}


def difference(a: Share, b: Share) -> dict:
    """``a.p - b.p`` for shares measured on separate samples, with Newcombe's 95 % interval (his method 10:
    the two Wilson intervals combined), which stays within [-1, 1] and keeps its coverage near 0 and 1."""
    if not (a.n and b.n):
        return {"p": float("nan"), "lo": float("nan"), "hi": float("nan")}
    d = a.p - b.p
    lo = d - math.sqrt((a.p - a.lo) ** 2 + (b.hi - b.p) ** 2)
    hi = d + math.sqrt((a.hi - a.p) ** 2 + (b.p - b.lo) ** 2)
    return {"p": d, "lo": max(-1.0, lo), "hi": min(1.0, hi)}
