"""Measure a route set on labelled recordings, fit its thresholds, and score audio search.

Three commands are built on this module:

- `voice-router eval`: how often the router picks the right route, how often it fires when it
  should not, and how fast, on a CSV manifest of the user's own clips (optionally with noise).
- `voice-router calibrate`: fit per-route thresholds and the set's margin on such a manifest and
  write a routes file that every other command uses as is.
- `voice-router eval-search`: text-to-audio retrieval metrics (cvR@5, R@1, R@10) of the model on a
  manifest of captioned clips, the measure for `search` collections.

Each clip is embedded and scored ONCE; every decision (the configured thresholds, the
calibration's thousands of candidate thresholds) is then computed from the stored per-route
scores, with the router's rule: take the best-scoring route; it matches only if its score is
>= its threshold and it beats the runner-up by >= the set's margin.

Manifest format (CSV with a header): `path` (absolute, or relative to the manifest's folder) and
`label` (the route that should match; empty, or a name that is not a route, means nothing should
match). Other columns are ignored, except `text`, which `eval-search` uses as the caption.
"""

from __future__ import annotations

import csv
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from voice_router.decision import decide, top_two
from voice_router.errors import AudioError, ManifestError, VoiceRouterError
from voice_router.metrics import retrieval_metrics

if TYPE_CHECKING:
    from voice_router.model.base import EmbeddingModel
    from voice_router.noise import NoiseMixer
    from voice_router.routes import RouteSet

SAMPLE_RATE = 16000
NO_MATCH = "(none)"
"""Name used in reports (confusion table, predictions) for "no route matched"."""


class Scorer(Protocol):
    """What evaluation needs from a router: per-route scores for one clip, no tool dispatch.

    `voice_router.routing.Router` satisfies it (`.scores(audio)`).
    """

    def scores(self, audio: Any) -> Mapping[str, float]:
        """Score of every route for `audio` (a `(array, rate)` tuple here)."""
        ...


# --------------------------------------------------------------------------------------------
# Manifests


@dataclass(frozen=True)
class ManifestRow:
    """One row of a manifest: where the clip is, and what it is labelled."""

    path: Path
    """Resolved path of the clip."""
    display: str
    """The path as written in the manifest (used in reports)."""
    label: str
    """The `label` column, stripped ("" when absent)."""
    text: str
    """The `text` column, stripped ("" when absent)."""
    speaker: str = ""
    """The `speaker` column, stripped ("" when absent); used to split folds by speaker."""


def read_manifest(
    path: str | Path, *, required: Sequence[str] = ("path", "label"), limit: int | None = None
) -> list[ManifestRow]:
    """Read a manifest CSV; paths resolve against the manifest's own folder.

    Args:
        path: the CSV file.
        required: columns that must be in the header.
        limit: keep at most this many rows, spread evenly over the file (row i*len/limit for
            i < limit), so a quick run on a file sorted by label still covers every label.

    Raises:
        ManifestError: missing/unreadable file, no header, a required column missing, no rows.
    """
    p = Path(path)
    if not p.is_file():
        raise ManifestError(f"{p}: no such manifest file; pass a CSV with columns path,label")
    try:
        with p.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            header = [h.strip() for h in (reader.fieldnames or [])]
            missing = [c for c in required if c not in header]
            if missing:
                raise ManifestError(
                    f"{p}: the header {header or '(empty)'} lacks column(s) "
                    f"{', '.join(missing)}; a manifest needs a header line with "
                    f"{', '.join(required)}"
                )
            rows = []
            for rec in reader:
                rec = {(k or "").strip(): (v or "").strip() for k, v in rec.items()}
                if not rec.get("path"):
                    continue
                clip = Path(rec["path"])
                rows.append(
                    ManifestRow(
                        path=clip if clip.is_absolute() else (p.parent / clip),
                        display=rec["path"],
                        label=rec.get("label", ""),
                        text=rec.get("text", ""),
                        speaker=rec.get("speaker", ""),
                    )
                )
    except UnicodeDecodeError as e:
        raise ManifestError(f"{p}: not UTF-8 text ({e}); save the manifest as UTF-8 CSV") from e
    except csv.Error as e:
        raise ManifestError(f"{p}: not a valid CSV file ({e})") from e
    if not rows:
        raise ManifestError(f"{p}: the manifest has no rows with a path")
    return spread_subset(rows, limit)


def spread_subset(rows: Sequence[Any], limit: int | None) -> list[Any]:
    """At most `limit` items of `rows`, evenly spread (deterministic), in their order."""
    if limit is None or limit >= len(rows):
        return list(rows)
    if limit <= 0:
        raise ManifestError(f"--limit must be a positive number of rows, not {limit}")
    return [rows[(i * len(rows)) // limit] for i in range(limit)]


# --------------------------------------------------------------------------------------------
# Scoring clips once


@dataclass
class ClipScore:
    """One clip's outcome: its per-route scores, or why it could not be read."""

    display: str
    label: str
    scores: dict[str, float] | None
    latency_ms: float | None = None
    duration_s: float | None = None
    error: str | None = None


def score_clips(
    scorer: Scorer,
    rows: Sequence[ManifestRow],
    *,
    noise: NoiseMixer | None = None,
    progress: bool = False,
    loader: Callable[[Path], np.ndarray] | None = None,
) -> list[ClipScore]:
    """Decode every clip, optionally add noise, and time `scorer.scores` on it.

    Decoding and noise mixing are not in the latency; embedding plus routing is. A clip that
    cannot be read (an `AudioError`) is recorded with its error and skipped, not fatal.
    """
    if loader is None:
        from voice_router.audio.io import load_audio

        def loader(path: Path) -> np.ndarray:
            return load_audio(path, target_rate=SAMPLE_RATE)

    out: list[ClipScore] = []
    for row in _progress(rows, progress, "scoring clips"):
        try:
            audio = loader(row.path)
            if noise is not None:
                audio = noise(audio, row.display)
        except AudioError as e:
            out.append(ClipScore(row.display, row.label, None, error=str(e)))
            continue
        t0 = time.perf_counter()
        scores = scorer.scores((audio, SAMPLE_RATE))
        dt = (time.perf_counter() - t0) * 1000.0
        out.append(
            ClipScore(
                row.display,
                row.label,
                {k: float(v) for k, v in scores.items()},
                latency_ms=dt,
                duration_s=audio.size / SAMPLE_RATE,
            )
        )
    return out


def _torch_threads() -> int | None:
    """The compute thread count (latencies depend on it): torch's when torch is loaded, else
    the one the ONNX runtime reads (VOICE_ROUTER_THREADS / OMP_NUM_THREADS), else None."""
    torch = sys.modules.get("torch")
    if torch is not None:
        return int(torch.get_num_threads())
    from voice_router.model.onnx_model import compute_threads

    return compute_threads() or None


def _progress(items: Sequence[Any], enabled: bool, desc: str) -> Iterable[Any]:
    if not enabled:
        return items
    try:
        from tqdm import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        return items
    return tqdm(items, desc=desc, file=sys.stderr, leave=False)


# --------------------------------------------------------------------------------------------
# Decisions from stored scores


@dataclass
class ScoreTable:
    """Per-route scores of the readable clips, as arrays, for fast decisions.

    Attributes:
        routes: route names, in the routes file's order.
        clips: display path of each clip.
        labels: raw label of each clip.
        expected: (N,) index of the route that should match, or -1 for "nothing should match".
        scores: (N, R) scores; a clip with no scores (e.g. an empty transcript) is all -inf.
    """

    routes: list[str]
    clips: list[str]
    labels: list[str]
    expected: np.ndarray
    scores: np.ndarray

    @classmethod
    def from_clips(cls, clips: Sequence[ClipScore], routes: Sequence[str]) -> ScoreTable:
        """Build from scored clips (unreadable ones are left out)."""
        index = {r: i for i, r in enumerate(routes)}
        ok = [c for c in clips if c.error is None]
        scores = np.full((len(ok), len(routes)), -np.inf)  # (N, R)
        for i, c in enumerate(ok):
            for r, s in (c.scores or {}).items():
                if r in index and math.isfinite(s):
                    scores[i, index[r]] = s
        expected = np.array([index.get(c.label, -1) for c in ok], dtype=np.int64)  # (N,)
        return cls(list(routes), [c.display for c in ok], [c.label for c in ok], expected, scores)

    @property
    def n(self) -> int:
        return len(self.clips)

    def top(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(best route index, best score, margin over the runner-up), each (N,): the router's
        rule (`voice_router.decision.top_two`)."""
        return top_two(self.scores, self.routes)

    def predict(self, thresholds: np.ndarray, margin: float) -> np.ndarray:
        """(N,) predicted route index, -1 for no match, under the router's decision rule."""
        return decide(self.scores, self.routes, thresholds, margin)[0]


def route_thresholds(routes: RouteSet) -> np.ndarray:
    """(R,) the threshold each route of `routes` uses (its own, else the set's)."""
    return np.array([float(routes.route_threshold(r)) for r in routes.routes], dtype=np.float64)


def _percentiles(values: Sequence[float]) -> dict[str, float | None]:
    if not values:
        return {"p50": None, "p95": None, "mean": None}
    v = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(v, 50)), 3),
        "p95": round(float(np.percentile(v, 95)), 3),
        "mean": round(float(v.mean()), 3),
    }


def _name(routes: Sequence[str], i: int) -> str:
    return routes[i] if i >= 0 else NO_MATCH


def decision_metrics(table: ScoreTable, predicted: np.ndarray) -> dict[str, Any]:
    """Accuracy, macro accuracy, false-accept rate, per-route recall/precision and confusion.

    - accuracy: over clips that expect a route, the fraction whose prediction is that route
      (no match counts as wrong).
    - macro_accuracy: the mean of per-route recall over routes with at least one clip.
    - false_accept_rate: over clips that expect no match, the fraction where a route matched;
      None when there are no such clips.
    """
    exp = table.expected
    want = exp >= 0
    none = ~want
    correct = want & (predicted == exp)
    per_route: dict[str, dict[str, Any]] = {}
    recalls = []
    for i, r in enumerate(table.routes):
        n_r = int(np.sum(exp == i))
        n_pred = int(np.sum(predicted == i))
        hit = int(np.sum(correct & (exp == i)))
        recall = hit / n_r if n_r else None
        if recall is not None:
            recalls.append(recall)
        per_route[r] = {
            "n": n_r,
            "correct": hit,
            "recall": _r(recall),
            "predicted": n_pred,
            "precision": _r(hit / n_pred) if n_pred else None,
        }
    cols = [*table.routes, NO_MATCH]
    confusion: dict[str, dict[str, int]] = {}
    for e in sorted(set(exp.tolist()), key=lambda i: (i < 0, i)):
        mask = exp == e
        counts = Counter(predicted[mask].tolist())
        confusion[_name(table.routes, e)] = {
            c: int(counts.get(table.routes.index(c) if c != NO_MATCH else -1, 0)) for c in cols
        }
    n_want, n_none = int(want.sum()), int(none.sum())
    false_accepts = int(np.sum(none & (predicted >= 0)))
    return {
        "accuracy": _r(correct.sum() / n_want) if n_want else None,
        "macro_accuracy": _r(float(np.mean(recalls))) if recalls else None,
        "false_accept_rate": _r(false_accepts / n_none) if n_none else None,
        "false_accepts": false_accepts,
        "n_expect_route": n_want,
        "n_expect_none": n_none,
        "per_route": per_route,
        "confusion": confusion,
    }


def _r(x: float | np.floating | None, nd: int = 4) -> float | None:
    return None if x is None else round(float(x), nd)


def failures(table: ScoreTable, predicted: np.ndarray) -> list[dict[str, Any]]:
    """The clips decided wrongly: expected, predicted, best route and its score and margin."""
    best, s1, gap = table.top()
    out = []
    for i in np.flatnonzero(predicted != table.expected):
        out.append(
            {
                "path": table.clips[i],
                "label": table.labels[i],
                "expected": _name(table.routes, int(table.expected[i])),
                "predicted": _name(table.routes, int(predicted[i])),
                "best": _name(table.routes, int(best[i])) if np.isfinite(s1[i]) else NO_MATCH,
                "score": _r(s1[i]) if np.isfinite(s1[i]) else None,
                "margin": _r(gap[i]) if np.isfinite(gap[i]) else None,
            }
        )
    return out


def evaluation_report(
    clips: Sequence[ClipScore], routes: RouteSet, *, extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The `voice-router eval` report for scored clips under `routes`' thresholds and margin.

    Keys: n (clips scored), n_rows, accuracy, top1_accuracy (best route, no threshold),
    macro_accuracy, false_accept_rate, latency_ms {p50, p95, mean}, real_time_factor,
    per_route, confusion, labels_without_route (labels treated as "no match"),
    unreadable [{path, error}], failures, thresholds, margin.
    """
    names = [r.name for r in routes.routes]
    table = ScoreTable.from_clips(clips, names)
    thresholds = route_thresholds(routes)
    predicted = table.predict(thresholds, float(routes.margin))
    metrics = decision_metrics(table, predicted)
    best, s1, _ = table.top()
    want = table.expected >= 0
    top1_ok = (best == table.expected) & np.isfinite(s1)
    top1 = float(np.mean(top1_ok[want])) if want.any() else None
    ok = [c for c in clips if c.error is None]
    lat = [c.latency_ms for c in ok if c.latency_ms is not None]
    dur = sum(c.duration_s or 0.0 for c in ok)
    other = Counter(c.label for c in ok if c.label not in set(names))
    report: dict[str, Any] = {
        "n": table.n,
        "n_rows": len(clips),
        "accuracy": metrics.pop("accuracy"),
        "top1_accuracy": _r(top1),
        "macro_accuracy": metrics.pop("macro_accuracy"),
        "false_accept_rate": metrics.pop("false_accept_rate"),
        "latency_ms": _percentiles(lat),
        "real_time_factor": _r(sum(lat) / 1000.0 / dur, 5) if dur > 0 else None,
        **metrics,
        "labels_without_route": dict(sorted(other.items())),
        "n_unreadable": len(clips) - len(ok),
        "unreadable": [{"path": c.display, "error": c.error} for c in clips if c.error],
        "thresholds": {n: _r(t) for n, t in zip(names, thresholds, strict=True)},
        "threads": _torch_threads(),
        "margin": _r(float(routes.margin)),
        "failures": failures(table, predicted),
    }
    if extra:
        report.update(extra)
    return report


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
            "margin": _r(float(routes.margin)),
        },
        "after": {
            "accuracy": after["accuracy"],
            "macro_accuracy": after["macro_accuracy"],
            "false_accept_rate": after["false_accept_rate"],
            "margin": _r(cal.margin, 6),
        },
        "per_route": {
            n: {
                "n": before["per_route"][n]["n"],
                "threshold_before": _r(float(old_t[i]), 6),
                "threshold_after": _r(float(cal.thresholds[i]), 6),
                "recall_before": before["per_route"][n]["recall"],
                "recall_after": after["per_route"][n]["recall"],
            }
            for i, n in enumerate(names)
        },
        "notes": cal.notes,
        "still_failing": failures(table, after_pred),
    }


# --------------------------------------------------------------------------------------------
# Text-to-audio retrieval


def _caption(text: str) -> str:
    return " ".join(text.lower().split())


def caption_retrieval(
    model: EmbeddingModel, clip_vectors: np.ndarray, captions: Sequence[str]
) -> dict[str, Any]:
    """Text-to-audio retrieval metrics over clips with known captions.

    Each distinct non-empty caption (case- and space-insensitive) is one text query; its
    relevant clips are those with that caption; clips with an empty caption are distractors
    for text->audio and are not audio->text queries.

    Args:
        model: embeds the caption queries (`embed_text`).
        clip_vectors: (C, D) L2-normalised clip embeddings.
        captions: the C clips' captions.
    """
    norm = [_caption(c) for c in captions]
    queries = sorted({c for c in norm if c})
    if not queries:
        raise ManifestError("no clip has a non-empty caption: retrieval needs captioned clips")
    text_emb = np.asarray(model.embed_text(queries), dtype=np.float32)  # (Q, D)
    clips = np.asarray(clip_vectors, np.float32)  # (C, D)
    relevant = [{i for i, c in enumerate(norm) if c == q} for q in queries]
    metrics = retrieval_metrics(text_emb, clips, relevant)  # text->audio over every clip
    captioned = [i for i, c in enumerate(norm) if c]
    if len(captioned) < len(norm):  # audio->text only from clips that have a caption
        where = {i: j for j, i in enumerate(captioned)}
        sub = retrieval_metrics(
            text_emb, clips[captioned], [{where[i] for i in rel} for rel in relevant]
        )
        metrics.update({k: v for k, v in sub.items() if k.startswith("a2t_")})
    return {
        "n_clips": len(norm),
        "n_captioned_clips": len(captioned),
        "n_queries": len(queries),
        **{k: _r(v) for k, v in metrics.items()},
    }


def search_report(
    model: EmbeddingModel,
    rows: Sequence[ManifestRow],
    *,
    column: str = "text",
    collection: Mapping[str, np.ndarray] | None = None,
    progress: bool = False,
    loader: Callable[[Path], np.ndarray] | None = None,
) -> dict[str, Any]:
    """cvR@5, R@1, R@10 (text->audio) and audio->text R@k for a manifest of captioned clips.

    Args:
        model: the embedding model.
        rows: manifest rows; the caption is the `text` (or `label`) column.
        column: "text" or "label".
        collection: vectors of a `search` collection by absolute file path (from
            `voice-router index-audio`). When given, the candidates are ALL the collection's
            clips (those not in the manifest act as distractors, as in a real search) and the
            manifest only supplies captions; no audio is decoded. Otherwise every manifest clip
            is decoded and embedded here.
        progress: show a progress bar on stderr.
        loader: decodes a clip path (default `load_audio` at the model's rate).
    """
    from voice_router.model.base import embed_audio_pooled

    unreadable: list[dict[str, str]] = []
    if collection is not None:
        paths = sorted(collection)
        where = {p: i for i, p in enumerate(paths)}
        captions = [""] * len(paths)
        missing = 0
        for row in rows:
            i = where.get(str(row.path.resolve()))
            if i is None:
                missing += 1
            else:
                captions[i] = row.text if column == "text" else row.label
        if not paths:
            raise ManifestError("the collection is empty: index audio into it first")
        vectors = np.stack([collection[p] for p in paths])  # (C, D)
        rep = caption_retrieval(model, vectors, captions)
        rep["manifest_rows_not_in_collection"] = missing
    else:
        if loader is None:
            from voice_router.audio.io import load_audio

            def loader(path: Path) -> np.ndarray:
                return load_audio(path, target_rate=model.sample_rate)

        vecs, captions = [], []
        for row in _progress(rows, progress, "embedding clips"):
            try:
                clip = loader(row.path)
            except AudioError as e:
                unreadable.append({"path": row.display, "error": str(e)})
                continue
            vecs.append(embed_audio_pooled(model, clip))  # (D,)
            captions.append(row.text if column == "text" else row.label)
        if not vecs:
            raise ManifestError("no clip of the manifest could be read")
        rep = caption_retrieval(model, np.stack(vecs), captions)  # (C, D)
    rep.update(caption_column=column, n_unreadable=len(unreadable), unreadable=unreadable)
    return rep


# --------------------------------------------------------------------------------------------
# Text output


def _fmt(x: float | None, nd: int = 3) -> str:
    return "n/a" if x is None else f"{x:.{nd}f}"


def format_eval(rep: Mapping[str, Any]) -> str:
    """Human-readable `voice-router eval` report."""
    lines = [
        f"clips: {rep['n']} scored ({rep['n_expect_route']} expect a route, "
        f"{rep['n_expect_none']} expect no match), {rep['n_unreadable']} unreadable",
    ]
    if rep.get("labels_without_route"):
        lab = ", ".join(f"{k or '(empty)'} x{v}" for k, v in rep["labels_without_route"].items())
        lines.append(f"labels that are not routes (expect no match): {lab}")
    if rep.get("noise"):
        nz = rep["noise"]
        lines.append(f"noise: {nz['source']} at {nz['snr_db']} dB SNR (seed {nz['seed']})")
    fa = rep["false_accept_rate"]
    lines += [
        f"accuracy          {_fmt(rep['accuracy'])}   (no match counts as wrong)",
        f"top-1 accuracy    {_fmt(rep['top1_accuracy'])}   (best route, thresholds ignored)",
        f"macro accuracy    {_fmt(rep['macro_accuracy'])}",
        f"false-accept rate {_fmt(fa)}"
        + (f"   ({rep['false_accepts']} of {rep['n_expect_none']})" if fa is not None else ""),
        f"latency ms        p50 {_fmt(rep['latency_ms']['p50'], 1)}  "
        f"p95 {_fmt(rep['latency_ms']['p95'], 1)}   (embedding + routing per clip)",
        "",
    ]
    w = max([len(n) for n in rep["per_route"]] + [5])
    lines.append(f"{'route':<{w}}  {'n':>5}  {'recall':>6}  {'precision':>9}  threshold")
    for name, pr in rep["per_route"].items():
        lines.append(
            f"{name:<{w}}  {pr['n']:>5}  {_fmt(pr['recall']):>6}  {_fmt(pr['precision']):>9}  "
            f"{_fmt(rep['thresholds'][name])}"
        )
    lines.append(f"margin: {_fmt(rep['margin'])}")
    lines += ["", "confusion (rows: expected, columns: predicted)"]
    lines += _format_confusion(rep["confusion"])
    if rep["unreadable"]:
        lines += ["", "unreadable clips:"]
        lines += [f"  {u['path']}: {u['error']}" for u in rep["unreadable"]]
    return "\n".join(lines)


def _format_confusion(conf: Mapping[str, Mapping[str, int]]) -> list[str]:
    if not conf:
        return ["  (no clips)"]
    cols = list(next(iter(conf.values())).keys())
    w0 = max(len(r) for r in conf) + 1
    widths = [max(len(c), 4) for c in cols]
    out = [" " * w0 + " ".join(f"{c:>{w}}" for c, w in zip(cols, widths, strict=True))]
    for r, row in conf.items():
        cells = " ".join(f"{row[c]:>{w}}" for c, w in zip(cols, widths, strict=True))
        out.append(f"{r:<{w0}}{cells}")
    return out


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
        f"{'accuracy':<18}{_fmt(b['accuracy']):>8}{_fmt(a['accuracy']):>8}",
        f"{'macro accuracy':<18}{_fmt(b['macro_accuracy']):>8}{_fmt(a['macro_accuracy']):>8}",
        f"{'false-accept rate':<18}{_fmt(b['false_accept_rate']):>8}"
        f"{_fmt(a['false_accept_rate']):>8}",
        f"{'margin':<18}{_fmt(b['margin'], 4):>8}{_fmt(a['margin'], 4):>8}",
        "",
    ]
    w = max([len(n) for n in rep["per_route"]] + [5])
    lines.append(
        f"{'route':<{w}}  {'n':>5}  {'recall before':>13}  {'after':>6}  "
        f"{'threshold before':>16}  {'after':>7}"
    )
    for name, pr in rep["per_route"].items():
        lines.append(
            f"{name:<{w}}  {pr['n']:>5}  {_fmt(pr['recall_before']):>13}  "
            f"{_fmt(pr['recall_after']):>6}  {_fmt(pr['threshold_before'], 4):>16}  "
            f"{_fmt(pr['threshold_after'], 4):>7}"
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
