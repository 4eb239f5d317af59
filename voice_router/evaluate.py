"""Measure a route set on labelled recordings: the manifest, scoring each clip once, the
metrics and the `eval` report. Calibration (`voice_router.calibration`) and audio-search metrics
(`voice_router.search_eval`) are built on the same scores and manifests.

Three commands are built on these modules:

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
match). Optional: `args`, a JSON object of the argument values the route's tool should get
(slots of routes with `sentences:`): the report then adds command accuracy (route and every
expected argument right), per-argument accuracy and the slot confusions. Other columns are
ignored, except `text`, which `eval-search` uses as the caption.
"""

from __future__ import annotations

import csv
import json
import math
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from voice_router.decision import decide, overrule, route_thresholds, top_two
from voice_router.errors import AudioError, ManifestError

if TYPE_CHECKING:
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
    args: dict[str, Any] | None = None
    """The `args` column: a JSON object of the argument values the route's tool should get
    (its slots); None when absent or empty."""


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
            for line, rec in enumerate(reader, start=2):
                rec = {(k or "").strip(): (v or "").strip() for k, v in rec.items()}
                if not rec.get("path"):
                    continue
                clip = Path(rec["path"])
                args = None
                if rec.get("args"):
                    try:
                        args = json.loads(rec["args"])
                    except json.JSONDecodeError as e:
                        raise ManifestError(f"{p}:{line}: args is not JSON ({e})") from None
                    if not isinstance(args, dict):
                        raise ManifestError(
                            f"{p}:{line}: args must be a JSON object such as "
                            '{"minutes": 5}, not ' + type(args).__name__
                        )
                rows.append(
                    ManifestRow(
                        path=clip if clip.is_absolute() else (p.parent / clip),
                        display=rec["path"],
                        label=rec.get("label", ""),
                        text=rec.get("text", ""),
                        speaker=rec.get("speaker", ""),
                        args=args,
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
    expected_args: dict[str, Any] | None = None  # the manifest's `args`
    slots: dict[str, Any] | None = None  # slot values resolved for the best-scoring route
    reading: dict[str, Any] | None = None  # the slot stage's reading (Reading.to_dict())


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

    # routes whose slots are resolved too (routes with templates, when the scorer can)
    routes = getattr(scorer, "routes", None)
    slot_routes = set()
    if routes is not None and hasattr(scorer, "resolve_slots"):
        slot_routes = {r.name for r in routes.routes if getattr(r, "sentences", None)}
    out: list[ClipScore] = []
    for row in progress_bar(rows, progress, "scoring clips"):
        try:
            audio = loader(row.path)
            if noise is not None:
                audio = noise(audio, row.display)
        except AudioError as e:
            out.append(ClipScore(row.display, row.label, None, error=str(e)))
            continue
        t0 = time.perf_counter()
        slots, reading = None, None
        gate = getattr(scorer, "speech", None)
        if gate is not None and getattr(scorer, "speech_gate", None) is not None:
            speech = gate((audio, SAMPLE_RATE))  # the router's speech gate, as `route` runs it
            if speech is None:  # no speech: no route can match
                out.append(
                    ClipScore(
                        row.display,
                        row.label,
                        {},
                        latency_ms=(time.perf_counter() - t0) * 1000.0,
                        duration_s=audio.size / SAMPLE_RATE,
                        expected_args=row.args,
                    )
                )
                continue
            audio = speech
        if slot_routes:  # the Router: embed once, score, then read or resolve the slots
            # a Router embeds and keeps the encoder frames for its slot stage; other scorers
            # (the cascade) embed only
            with_frames = getattr(scorer, "embed_with_frames", None)
            if with_frames is not None:
                vector, frames = with_frames((audio, SAMPLE_RATE))
            else:
                vector, frames = scorer.embed((audio, SAMPLE_RATE)), None  # type: ignore[attr-defined]
            scores = scorer.scores_vector(vector)  # type: ignore[attr-defined]
            read_slots = getattr(scorer, "read_slots", None)
            read = read_slots(frames, scores) if read_slots is not None else None
            names = list(scores)
            top, _, _ = top_two(np.array([[scores[n] for n in names]]), names)  # (1,)
            best = names[int(top[0])]  # the decision rule's route, ties included
            if read is not None:
                reading = read.to_dict()
                if read.understood:
                    slots = dict(read.slots)
            elif best in slot_routes:
                resolved = scorer.resolve_slots(vector, best)  # type: ignore[attr-defined]
                slots = {name: s["value"] for name, s in resolved.items()}
        else:
            scores = scorer.scores((audio, SAMPLE_RATE))
        dt = (time.perf_counter() - t0) * 1000.0
        out.append(
            ClipScore(
                row.display,
                row.label,
                {k: float(v) for k, v in scores.items()},
                latency_ms=dt,
                duration_s=audio.size / SAMPLE_RATE,
                expected_args=row.args,
                slots=slots,
                reading=reading,
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


def progress_bar(items: Sequence[Any], enabled: bool, desc: str) -> Iterable[Any]:
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
        read / understood / readable: the slot stage's readings (see
            `voice_router.decision.overrule`): (N,) whether one was made, (N,) the understood
            route's index or -1, (R,) which routes have phrasings. None when no clip was read.
    """

    routes: list[str]
    clips: list[str]
    labels: list[str]
    expected: np.ndarray
    scores: np.ndarray
    read: np.ndarray | None = None
    understood: np.ndarray | None = None
    readable: np.ndarray | None = None

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
        table = cls(list(routes), [c.display for c in ok], [c.label for c in ok], expected, scores)
        if any(c.reading is not None for c in ok):
            table.read = np.array([c.reading is not None for c in ok])  # (N,)
            table.understood = np.array(
                [index.get(c.reading["route"], -1) if c.reading and c.reading["understood"]
                 else -1 for c in ok], dtype=np.int64,
            )  # fmt: skip  # (N,)
            read_from = {n for c in ok if c.reading for n in c.reading["candidates"]}
            table.readable = np.array([r in read_from for r in routes])  # (R,)
        return table

    @property
    def n(self) -> int:
        return len(self.clips)

    def top(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(best route index, best score, margin over the runner-up), each (N,): the router's
        rule (`voice_router.decision.top_two`); where the slot stage understood a phrasing, its
        route is the best."""
        best, s1, gap = top_two(self.scores, self.routes)
        if self.understood is not None:
            hit = self.understood >= 0
            best = np.where(hit, self.understood, best)
            s1 = np.where(hit, self.scores[np.arange(self.n), np.maximum(best, 0)], s1)
        return best, s1, gap

    def predict(self, thresholds: np.ndarray, margin: float) -> np.ndarray:
        """(N,) predicted route index, -1 for no match, under the router's decision rule
        (the embedding decision, then the slot stage's say: `voice_router.decision.overrule`)."""
        pred = decide(self.scores, self.routes, thresholds, margin)[0]
        if self.read is None:
            return pred
        return overrule(pred, self.read, self.understood, self.readable)


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
            "recall": rounded(recall),
            "predicted": n_pred,
            "precision": rounded(hit / n_pred) if n_pred else None,
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
        "accuracy": rounded(correct.sum() / n_want) if n_want else None,
        "macro_accuracy": rounded(float(np.mean(recalls))) if recalls else None,
        "false_accept_rate": rounded(false_accepts / n_none) if n_none else None,
        "false_accepts": false_accepts,
        "n_expect_route": n_want,
        "n_expect_none": n_none,
        "per_route": per_route,
        "confusion": confusion,
    }


def rounded(x: float | np.floating | None, nd: int = 4) -> float | None:
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
                "score": rounded(s1[i]) if np.isfinite(s1[i]) else None,
                "margin": rounded(gap[i]) if np.isfinite(gap[i]) else None,
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
        "top1_accuracy": rounded(top1),
        "macro_accuracy": metrics.pop("macro_accuracy"),
        "false_accept_rate": metrics.pop("false_accept_rate"),
        "latency_ms": _percentiles(lat),
        "real_time_factor": rounded(sum(lat) / 1000.0 / dur, 5) if dur > 0 else None,
        **metrics,
        "labels_without_route": dict(sorted(other.items())),
        "n_unreadable": len(clips) - len(ok),
        "unreadable": [{"path": c.display, "error": c.error} for c in clips if c.error],
        "thresholds": {n: rounded(t) for n, t in zip(names, thresholds, strict=True)},
        "threads": _torch_threads(),
        "margin": rounded(float(routes.margin)),
        "failures": failures(table, predicted),
    }
    if any(c.expected_args for c in ok):
        report.update(argument_metrics(table, predicted, ok, routes))
    if extra:
        report.update(extra)
    return report


def argument_metrics(
    table: ScoreTable, predicted: np.ndarray, clips: Sequence[ClipScore], routes: RouteSet
) -> dict[str, Any]:
    """Slot metrics over the clips whose manifest row gives `args`:

    - command_accuracy: the route is right AND every expected argument has the expected value
      (the tool's args: the route's static `args` with its resolved slots), as Picovoice's
      benchmark counts "command acceptance"; command_top1_accuracy: the same with the BEST
      route instead of the decision (no threshold, as top1_accuracy);
    - slot_accuracy: per argument name, over the clips expecting it whose BEST route is right
      (thresholds aside: slots are resolved for the best route), the share that got its value;
      slot_n: how many clips that is;
    - slot_confusions: (argument, expected, got, count) among those, most frequent first.
    """
    by_name = {r.name: r for r in routes.routes}
    best, s1, _ = table.top()
    n_cmd = right_cmd = right_top1 = 0
    per: dict[str, list[int]] = {}
    confusions: Counter[tuple[str, str, str]] = Counter()
    for i, c in enumerate(clips):  # `clips` are the readable ones, in the table's order
        want = c.expected_args
        if not want:
            continue
        n_cmd += 1
        route_ok = table.expected[i] >= 0 and predicted[i] == table.expected[i]
        top_ok = table.expected[i] >= 0 and best[i] == table.expected[i] and np.isfinite(s1[i])
        got: dict[str, Any] = {}
        if top_ok:
            got = {**by_name[table.routes[int(best[i])]].args, **(c.slots or {})}
        args_ok = True
        for name, value in want.items():
            hit = top_ok and got.get(name) == value
            per.setdefault(name, [0, 0])
            per[name][0] += int(hit)
            per[name][1] += int(top_ok)
            args_ok &= hit
            if top_ok and not hit:
                key = (name, json.dumps(value, default=str), json.dumps(got.get(name), default=str))
                confusions[key] += 1
        right_cmd += int(route_ok and args_ok)
        right_top1 += int(top_ok and args_ok)
    return {
        "n_with_args": n_cmd,
        "command_accuracy": rounded(right_cmd / n_cmd) if n_cmd else None,
        "command_top1_accuracy": rounded(right_top1 / n_cmd) if n_cmd else None,
        "slot_accuracy": {k: rounded(h / n) if n else None for k, (h, n) in sorted(per.items())},
        "slot_n": {k: n for k, (_, n) in sorted(per.items())},
        "slot_confusions": [
            {"arg": a, "expected": json.loads(e), "got": json.loads(g), "count": k}
            for (a, e, g), k in confusions.most_common(20)
        ],
    }


# --------------------------------------------------------------------------------------------
# Text output


def fmt_score(x: float | None, nd: int = 3) -> str:
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
    if rep.get("fusion"):
        lines.append(f"fusion: {rep['fusion']}")
    fa = rep["false_accept_rate"]
    lines += [
        f"accuracy          {fmt_score(rep['accuracy'])}   (no match counts as wrong)",
        f"top-1 accuracy    {fmt_score(rep['top1_accuracy'])}   (best route, thresholds ignored)",
        f"macro accuracy    {fmt_score(rep['macro_accuracy'])}",
        f"false-accept rate {fmt_score(fa)}"
        + (f"   ({rep['false_accepts']} of {rep['n_expect_none']})" if fa is not None else ""),
        f"latency ms        p50 {fmt_score(rep['latency_ms']['p50'], 1)}  "
        f"p95 {fmt_score(rep['latency_ms']['p95'], 1)}   (embedding + routing per clip)",
        "",
    ]
    w = max([len(n) for n in rep["per_route"]] + [5])
    lines.append(f"{'route':<{w}}  {'n':>5}  {'recall':>6}  {'precision':>9}  threshold")
    for name, pr in rep["per_route"].items():
        lines.append(
            f"{name:<{w}}  {pr['n']:>5}  {fmt_score(pr['recall']):>6}  "
            f"{fmt_score(pr['precision']):>9}  "
            f"{fmt_score(rep['thresholds'][name])}"
        )
    lines.append(f"margin: {fmt_score(rep['margin'])}")
    if rep.get("n_with_args"):
        lines += [
            "",
            f"command accuracy  {fmt_score(rep['command_accuracy'])}   (route and every "
            f"expected argument right, {rep['n_with_args']} clips with args)",
        ]
        lines += [f"  {k:<16}{fmt_score(v)}" for k, v in rep["slot_accuracy"].items()]
        lines += [
            f"  {c['arg']}: expected {c['expected']!r}, got {c['got']!r} x{c['count']}"
            for c in rep["slot_confusions"]
        ]
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
