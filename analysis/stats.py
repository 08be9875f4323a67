"""Proportion statistics for CTR: Wilson score intervals and the pooled two-proportion z-test.

The normal quantiles and tails come from the standard library's ``statistics.NormalDist``, so
the ranker-side install needs no SciPy; the tests check both against ``scipy.stats``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

_NORMAL = NormalDist()


def z_quantile(confidence: float) -> float:
    """The two-sided normal quantile of a confidence level (0.95 -> 1.95996...)."""
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return _NORMAL.inv_cdf(0.5 + confidence / 2)


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of ``successes / trials``.

    Chosen over the normal (Wald) interval because CTRs are small: Wald's interval collapses to
    a point at 0 clicks and dips below 0 near it, Wilson's stays inside [0, 1] with close to
    nominal coverage. No trials gives (0, 1): nothing is known.
    """
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got {successes} of {trials}")
    if trials == 0:
        return 0.0, 1.0
    z = z_quantile(confidence)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    low = 0.0 if successes == 0 else max(0.0, centre - half)  # exact ends: rounding leaves 1e-17
    high = 1.0 if successes == trials else min(1.0, centre + half)
    return low, high


@dataclass(frozen=True)
class ZTest:
    """Two-proportion z-test of arm b against arm a: ``diff = p_b - p_a``, two-sided ``p_value``."""

    diff: float
    z: float
    p_value: float


def two_proportion_z_test(clicks_a: int, n_a: int, clicks_b: int, n_b: int) -> ZTest:
    """Pooled two-proportion z-test (H0: equal CTR), as statsmodels' ``proportions_ztest`` computes it.

    It treats impressions as independent; clicks of one request are not quite, so with long lists
    the p-value is somewhat optimistic. A pooled rate of 0 or 1 (no variance) gives z 0, p 1.
    """
    if n_a <= 0 or n_b <= 0:
        raise ValueError(f"both arms need impressions, got {n_a} and {n_b}")
    p_a, p_b = clicks_a / n_a, clicks_b / n_b
    pooled = (clicks_a + clicks_b) / (n_a + n_b)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    if se == 0:
        return ZTest(p_b - p_a, 0.0, 1.0)
    z = (p_b - p_a) / se
    return ZTest(p_b - p_a, z, 2 * _NORMAL.cdf(-abs(z)))
