"""Fit a route set's thresholds on labelled recordings (`voice-router calibrate`).

From the per-route scores of every clip (scored once, `voice_router.evaluate.score_clips`), find
per-route thresholds and the set's margin that route the most clips correctly while accepting at
most a given share of the clips that expect no match; the decision is the router's own rule
(`voice_router.decision`). The result is written as a copy of the routes file."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.decision import route_thresholds
from voice_router.errors import VoiceRouterError
from voice_router.evaluate import (
    ClipScore,
    ScoreTable,
    decision_metrics,
    failures,
    fmt_score,
    rounded,
)

if TYPE_CHECKING:
    from voice_router.routes import RouteSet

# --------------------------------------------------------------------------------------------
# Calibration


@dataclass
class Calibration:
    """Fitted thresholds (per route) and margin, with the counts they achieve on the data."""

    thresholds: np.ndarray
    margin: float
    correct: int
    false_accepts: int
    budget: int | None
    notes: list[str] = field(default_factory=list)


def _round_into(x: float, lo: float, hi: float) -> float:
    """The shortest decimal in (lo, hi] near x (x itself if none with <= 8 decimals)."""
    for d in range(2, 9):
        r = round(x, d)
        if lo < r <= hi:
            return r
    return x


def _route_options(scores_desc: np.ndarray, is_ok: np.ndarray, is_fa: np.ndarray) -> list[tuple]:
    """Cut options for one route: accept the top k clips (k only between distinct scores).

    Returns [(k, correct, false_accepts)] keeping, as k grows, only options that add a correct
    clip (an option that adds no correct clip is never better: same or more false accepts and
    more wrong-route matches). k = 0 (reject all) is always first.
    """
    cum_ok = np.concatenate([[0], np.cumsum(is_ok)])
    cum_fa = np.concatenate([[0], np.cumsum(is_fa)])
    n = scores_desc.size
    cuts = [k for k in range(1, n + 1) if k == n or scores_desc[k] < scores_desc[k - 1]]
    opts = [(0, 0, 0)]
    for k in cuts:
        if cum_ok[k] > opts[-1][1]:
            opts.append((k, int(cum_ok[k]), int(cum_fa[k])))
    return opts


def _fit_at_margin(
    table: ScoreTable, margin: float, budget: int | None
) -> tuple[int, int, list[int], list[np.ndarray]]:
    """Best per-route cuts at a fixed margin: max correct s.t. total false accepts <= budget.

    A clip's decision depends only on its best route's threshold, so the routes are independent
    except for the shared false-accept budget: an exact knapsack over routes (states = total
    false accepts). Ties: fewer false accepts, then the earlier-found choice (routes in file
    order, smaller k first), so the result is deterministic.
    """
    best, s1, gap = table.top()
    eligible = np.isfinite(s1) & (gap >= margin)
    per_route_sorted = []
    options = []
    for i in range(len(table.routes)):
        idx = np.flatnonzero(eligible & (best == i))
        order = idx[np.argsort(-s1[idx], kind="stable")]
        s = s1[order]
        per_route_sorted.append(s)
        opts = _route_options(s, table.expected[order] == i, table.expected[order] == -1)
        if budget is not None:
            opts = [o for o in opts if o[2] <= budget]
        options.append(opts)
    # states: total false accepts -> (correct, chosen k per route)
    states: dict[int, tuple[int, list[int]]] = {0: (0, [])}
    for opts in options:
        new: dict[int, tuple[int, list[int]]] = {}
        for fa in sorted(states):
            c0, ks = states[fa]
            for k, c, f in opts:
                t = fa + f
                if budget is not None and t > budget:
                    continue
                if t not in new or c0 + c > new[t][0]:
                    new[t] = (c0 + c, [*ks, k])
        states = new
    fa_best = max(sorted(states), key=lambda fa: (states[fa][0], -fa))
    correct, ks = states[fa_best]
    return correct, fa_best, ks, per_route_sorted


def _margin_candidates(gaps: np.ndarray, max_candidates: int = 100) -> list[tuple[float, float]]:
    """Candidate margins as (value, lo) with value in (lo, next gap]: 0 and the midpoints
    between consecutive distinct finite gaps, evenly thinned to at most `max_candidates`."""
    g = np.unique(gaps[np.isfinite(gaps) & (gaps > 0)])
    cands = [(0.0, -np.inf)]
    mids = [((a + b) / 2.0, a, b) for a, b in zip(np.concatenate([[0.0], g[:-1]]), g, strict=True)]
    if len(mids) > max_candidates - 1:
        keep = np.linspace(0, len(mids) - 1, max_candidates - 1).round().astype(int)
        mids = [mids[i] for i in sorted(set(keep.tolist()))]
    for m, lo, hi in mids:
        cands.append((_round_into(float(m), float(lo), float(hi)), float(lo)))
    return cands


def fit_calibration(
    table: ScoreTable, thresholds: np.ndarray, margin: float, max_false_accept: float = 0.05
) -> Calibration:
    """Fit per-route thresholds and the margin on scored, labelled clips.

    Objective: the most clips that expect a route routed correctly, subject to at most
    floor(max_false_accept * n) false accepts over the n clips that expect no match (no
    constraint when there are none).

    Procedure (deterministic): for each candidate margin (0, then midpoints between the
    observed best-vs-runner-up gaps, at most 100), fit the per-route thresholds exactly
    (`_fit_at_margin`), and keep the margin with the most correct clips; ties go to fewer false
    accepts, then to the LARGER margin. Within a route, ties go to the HIGHER threshold: among
    choices that route the same clips correctly with the same false accepts, rejecting more
    means fewer clips sent to the wrong tool, and a wrong tool is worse than none.

    Threshold placement: halfway between the lowest accepted and the highest rejected score
    (rounded to the fewest decimals that keep the same decisions). When every clip of a route
    is accepted, the route keeps its old threshold if that already accepts them all, else gets
    the lowest accepted score; when all are rejected, it keeps its old threshold if that already
    rejects them, else gets just above the highest score. A route that is never the best route
    of any clip keeps its old threshold (no evidence either way).
    """
    if not 0.0 <= max_false_accept <= 1.0:
        raise VoiceRouterError(
            f"--max-false-accept must be between 0 and 1, not {max_false_accept}"
        )
    n_none = int(np.sum(table.expected < 0))
    budget = math.floor(max_false_accept * n_none + 1e-9) if n_none else None
    _, _, gap = table.top()
    best_fit: tuple | None = None
    for m, _lo in _margin_candidates(gap):
        correct, fa, ks, sorted_scores = _fit_at_margin(table, m, budget)
        if best_fit is None or (correct, -fa) >= (best_fit[0], -best_fit[1]):
            best_fit = (correct, fa, ks, sorted_scores, m)
    assert best_fit is not None
    correct, fa, ks, sorted_scores, m = best_fit
    new_t = thresholds.astype(np.float64).copy()
    notes = []
    for i, (k, s) in enumerate(zip(ks, sorted_scores, strict=True)):
        old = float(thresholds[i])
        if s.size == 0:
            notes.append(f"{table.routes[i]}: best route of no clip; threshold kept at {old:g}")
            continue
        if k == s.size:
            lo = float(s[-1])
            new_t[i] = old if old <= lo else _round_into(lo, lo - 1e-3, lo)
        elif k == 0:
            hi = float(s[0])
            new_t[i] = old if old > hi else _round_into(hi + 1e-4, hi, hi + 1e-3)
            if new_t[i] > 1.0:  # a routes file caps thresholds at 1.0 (the largest cosine)
                new_t[i] = 1.0
                notes.append(f"{table.routes[i]}: a clip scored {hi:.4f}; capped threshold at 1")
        else:
            lo, hi = float(s[k]), float(s[k - 1])
            new_t[i] = _round_into((lo + hi) / 2.0, lo, hi)
    new_t = np.clip(new_t, -1.0, 1.0)
    pred = table.predict(new_t, float(m))
    got_correct = int(np.sum((pred == table.expected) & (table.expected >= 0)))
    got_fa = int(np.sum((pred >= 0) & (table.expected < 0)))
    if got_correct < correct or (got_fa > fa and not any("capped" in n for n in notes)):
        raise RuntimeError(  # pragma: no cover - an internal invariant
            f"calibration mismatch: {(got_correct, got_fa)} != {(correct, fa)}"
        )
    return Calibration(new_t, float(m), got_correct, got_fa, budget, notes)


def calibrated_routes(routes: RouteSet, cal: Calibration) -> RouteSet:
    """A copy of `routes` with the fitted per-route thresholds and margin."""
    new_routes = [
        r.replace(threshold=float(t)) for r, t in zip(routes.routes, cal.thresholds, strict=True)
    ]
    return routes.replace(routes=new_routes, margin=float(cal.margin))


def calibration_report(
    clips: Sequence[ClipScore], routes: RouteSet, cal: Calibration, max_false_accept: float
) -> dict[str, Any]:
    """Before/after accuracy (overall and per route), the new values, the clips still failing."""
    names = [r.name for r in routes.routes]
    table = ScoreTable.from_clips(clips, names)
    old_t = route_thresholds(routes)
    before = decision_metrics(table, table.predict(old_t, float(routes.margin)))
    after_pred = table.predict(cal.thresholds, cal.margin)
    after = decision_metrics(table, after_pred)
    return {
        "n": table.n,
        "n_unreadable": sum(1 for c in clips if c.error),
        "unreadable": [{"path": c.display, "error": c.error} for c in clips if c.error],
        "max_false_accept": max_false_accept,
        "false_accept_budget": cal.budget,
        "before": {
            "accuracy": before["accuracy"],
            "macro_accuracy": before["macro_accuracy"],
            "false_accept_rate": before["false_accept_rate"],
            "margin": rounded(float(routes.margin)),
        },
        "after": {
            "accuracy": after["accuracy"],
            "macro_accuracy": after["macro_accuracy"],
            "false_accept_rate": after["false_accept_rate"],
            "margin": rounded(cal.margin, 6),
        },
        "per_route": {
            n: {
                "n": before["per_route"][n]["n"],
                "threshold_before": rounded(float(old_t[i]), 6),
                "threshold_after": rounded(float(cal.thresholds[i]), 6),
                "recall_before": before["per_route"][n]["recall"],
                "recall_after": after["per_route"][n]["recall"],
            }
            for i, n in enumerate(names)
        },
        "notes": cal.notes,
        "still_failing": failures(table, after_pred),
    }


def format_calibration(rep: Mapping[str, Any], out_path: str | None = None) -> str:
    """Human-readable `voice-router calibrate` report."""
    b, a = rep["before"], rep["after"]
    lines = [
        f"clips: {rep['n']} scored, {rep['n_unreadable']} unreadable; "
        f"false-accept target <= {rep['max_false_accept']}"
        + (
            f" (at most {rep['false_accept_budget']} clips)"
            if rep["false_accept_budget"] is not None
            else " (no clips expect no match: unconstrained)"
        ),
        f"{'':18}{'before':>8}{'after':>8}",
        f"{'accuracy':<18}{fmt_score(b['accuracy']):>8}{fmt_score(a['accuracy']):>8}",
        f"{'macro accuracy':<18}{fmt_score(b['macro_accuracy']):>8}"
        f"{fmt_score(a['macro_accuracy']):>8}",
        f"{'false-accept rate':<18}{fmt_score(b['false_accept_rate']):>8}"
        f"{fmt_score(a['false_accept_rate']):>8}",
        f"{'margin':<18}{fmt_score(b['margin'], 4):>8}{fmt_score(a['margin'], 4):>8}",
        "",
    ]
    w = max([len(n) for n in rep["per_route"]] + [5])
    lines.append(
        f"{'route':<{w}}  {'n':>5}  {'recall before':>13}  {'after':>6}  "
        f"{'threshold before':>16}  {'after':>7}"
    )
    for name, pr in rep["per_route"].items():
        lines.append(
            f"{name:<{w}}  {pr['n']:>5}  {fmt_score(pr['recall_before']):>13}  "
            f"{fmt_score(pr['recall_after']):>6}  {fmt_score(pr['threshold_before'], 4):>16}  "
            f"{fmt_score(pr['threshold_after'], 4):>7}"
        )
    lines += [f"note: {n}" for n in rep["notes"]]
    fails = rep["still_failing"]
    lines += ["", f"clips still failing: {len(fails)}"]
    for f in fails[:50]:
        sc = "" if f["score"] is None else f" (best {f['best']} {f['score']:.3f})"
        lines.append(f"  {f['path']}: expected {f['expected']}, got {f['predicted']}{sc}")
    if len(fails) > 50:
        lines.append(f"  ... and {len(fails) - 50} more (see --json)")
    if out_path:
        lines += ["", f"wrote {out_path}"]
    return "\n".join(lines)
