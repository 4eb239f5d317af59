"""The decision rule, once: from per-route scores to a route or no match.

A clip goes to its best-scoring route when that score is at least the route's threshold and
its lead over the runner-up at least the set's margin; equal scores go to the alphabetically
first route name; with a single route the runner-up score is NO_RUNNER_UP (the lowest
cosine). The router (`voice_router.routing`, one clip) and evaluation and calibration
(`voice_router.evaluate`, thousands of clips at once) both call `top_two` / `decide` here, so
what `eval` measures is what `route` does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: With a single route there is no runner-up; its margin is measured against the lowest cosine.
NO_RUNNER_UP = -1.0


def top_two(scores: np.ndarray, names: Sequence[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(best route index, best score, margin over the runner-up), each (N,), for scores
    (N, R) of routes `names`. A clip with no finite score gets margin -inf (it never matches);
    one with a single finite score, margin +inf (nothing to beat)."""
    n = scores.shape[0]
    if n == 0 or not names:
        empty = np.zeros(0)
        return empty.astype(np.int64), empty, empty
    by_name = np.array(sorted(range(len(names)), key=lambda i: names[i]))  # (R,)
    best = by_name[np.argmax(scores[:, by_name], axis=1)]  # (N,) first max by name
    s1 = scores[np.arange(n), best]  # (N,)
    if len(names) == 1:
        s2 = np.full(n, NO_RUNNER_UP)
    else:
        s2 = np.sort(scores, axis=1)[:, -2]  # (N,) runner-up
    fin1, fin2 = np.isfinite(s1), np.isfinite(s2)
    gap = np.full(n, -np.inf)  # (N,)
    both = fin1 & fin2
    gap[both] = s1[both] - s2[both]
    gap[fin1 & ~fin2] = np.inf
    return best, s1, gap


def decide(
    scores: np.ndarray, names: Sequence[str], thresholds: np.ndarray, margin: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(predicted route index or -1, best index, best score, margin), each (N,), for scores
    (N, R), per-route thresholds (R,) and the set's margin."""
    best, s1, gap = top_two(scores, names)
    if best.size == 0:
        return best, best, s1, gap
    ok = np.isfinite(s1) & (s1 >= thresholds[best]) & (gap >= margin)
    return np.where(ok, best, -1), best, s1, gap
