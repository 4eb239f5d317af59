"""Evaluation and calibration: hand-computed metrics on a tiny manifest, and a calibration that
is deterministic, optimal against simple baselines and meets its false-accept constraint."""

from __future__ import annotations

import csv
import hashlib
import itertools
from pathlib import Path

import numpy as np
import pytest

from voice_router.errors import AudioError, VoiceRouterError
from voice_router.evaluate import (
    NO_MATCH,
    ClipScore,
    ManifestError,
    ScoreTable,
    decision_metrics,
    fit_calibration,
    read_manifest,
    score_clips,
    spread_subset,
)

ROUTES = ["lights_on", "lights_off", "music"]

# clip -> (label, per-route scores). Thresholds 0.5 everywhere, margin 0.1.
CLIPS: dict[str, tuple[str, dict[str, float]]] = {
    "c1.wav": ("lights_on", {"lights_on": 0.9, "lights_off": 0.3, "music": 0.1}),  # right
    "c2.wav": ("lights_on", {"lights_on": 0.6, "lights_off": 0.55, "music": 0.1}),  # margin .05
    "c3.wav": ("lights_off", {"lights_on": 0.2, "lights_off": 0.8, "music": 0.1}),  # right
    "c4.wav": ("lights_off", {"lights_on": 0.7, "lights_off": 0.3, "music": 0.0}),  # wrong route
    "c5.wav": ("music", {"lights_on": 0.05, "lights_off": 0.0, "music": 0.45}),  # below .5
    "c6.wav": ("", {"lights_on": 0.1, "lights_off": 0.0, "music": 0.7}),  # false accept
    "c7.wav": ("unknown", {"lights_on": 0.4, "lights_off": 0.0, "music": 0.0}),  # rejected
    "c8.wav": ("", {"lights_on": 0.2, "lights_off": 0.52, "music": 0.0}),  # false accept
}


def _key(audio: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(audio, np.float32).tobytes()).hexdigest()


class LookupScorer:
    """A fake router: each test clip's array maps to fixed per-route scores."""

    def __init__(self) -> None:
        self.by_audio: dict[str, dict[str, float]] = {}
        self.calls = 0

    def scores(self, audio: tuple[np.ndarray, int]) -> dict[str, float]:
        array, rate = audio
        assert rate == 16000
        self.calls += 1
        return self.by_audio[_key(array)]


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, LookupScorer, dict[str, np.ndarray]]:
    """A manifest of the CLIPS above plus one unreadable row, clip arrays and a fake scorer."""
    scorer = LookupScorer()
    arrays: dict[str, np.ndarray] = {}
    for i, (name, (_, scores)) in enumerate(CLIPS.items()):
        a = np.full(1600, 0.01 * (i + 1), np.float32)  # distinct clip per row
        arrays[name] = a
        scorer.by_audio[_key(a)] = scores
    (tmp_path / "clips").mkdir()
    manifest = tmp_path / "manifest.csv"
    with manifest.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "text", "label"])
        for name, (label, _) in CLIPS.items():
            w.writerow([f"clips/{name}", "", label])
        w.writerow(["clips/broken.wav", "", "music"])
    return manifest, scorer, arrays


def _loader(arrays: dict[str, np.ndarray]):
    def load(path: Path) -> np.ndarray:
        if path.name not in arrays:
            raise AudioError(f"{path}: corrupt or truncated audio")
        return arrays[path.name]

    return load


def _scored(tiny) -> list[ClipScore]:
    manifest, scorer, arrays = tiny
    rows = read_manifest(manifest)
    return score_clips(scorer, rows, loader=_loader(arrays))


def test_manifest_paths_resolve_against_manifest_folder(tiny) -> None:
    manifest, _, _ = tiny
    rows = read_manifest(manifest)
    assert len(rows) == 9
    assert rows[0].path == manifest.parent / "clips" / "c1.wav"
    assert rows[0].display == "clips/c1.wav"
    assert [r.label for r in rows[4:8]] == ["music", "", "unknown", ""]


def test_manifest_errors_say_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="no such manifest"):
        read_manifest(tmp_path / "nope.csv")
    bad = tmp_path / "bad.csv"
    bad.write_text("file,route\na.wav,x\n")
    with pytest.raises(ManifestError, match="lacks column"):
        read_manifest(bad)
    empty = tmp_path / "empty.csv"
    empty.write_text("path,label\n")
    with pytest.raises(ManifestError, match="no rows"):
        read_manifest(empty)


def test_limit_spreads_over_the_file() -> None:
    rows = list(range(100))
    assert spread_subset(rows, 4) == [0, 25, 50, 75]
    assert spread_subset(rows, None) == rows
    assert spread_subset(rows, 500) == rows


def test_each_clip_scored_once_and_unreadable_listed(tiny) -> None:
    clips = _scored(tiny)
    assert tiny[1].calls == 8
    bad = [c for c in clips if c.error]
    assert [c.display for c in bad] == ["clips/broken.wav"]
    assert "corrupt" in (bad[0].error or "")
    assert all(c.latency_ms is not None and c.latency_ms >= 0 for c in clips if not c.error)
    assert all(c.duration_s == pytest.approx(0.1) for c in clips if not c.error)


def test_hand_computed_metrics(tiny) -> None:
    clips = _scored(tiny)
    table = ScoreTable.from_clips(clips, ROUTES)
    assert table.n == 8
    pred = table.predict(np.full(3, 0.5), 0.1)
    names = [NO_MATCH if p < 0 else ROUTES[p] for p in pred]
    assert names == [
        "lights_on",
        NO_MATCH,
        "lights_off",
        "lights_on",
        NO_MATCH,
        "music",
        NO_MATCH,
        "lights_off",
    ]
    m = decision_metrics(table, pred)
    assert m["accuracy"] == pytest.approx(2 / 5, abs=1e-4)
    assert m["macro_accuracy"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3, abs=1e-4)
    assert m["false_accept_rate"] == pytest.approx(2 / 3, abs=1e-4)
    assert m["per_route"]["lights_on"] == {
        "n": 2,
        "correct": 1,
        "recall": 0.5,
        "predicted": 2,
        "precision": 0.5,
    }
    assert m["per_route"]["music"]["recall"] == 0.0
    assert m["per_route"]["music"]["precision"] == 0.0
    c = m["confusion"]
    assert list(c) == ["lights_on", "lights_off", "music", NO_MATCH]
    assert c["lights_on"] == {"lights_on": 1, "lights_off": 0, "music": 0, NO_MATCH: 1}
    assert c["lights_off"] == {"lights_on": 1, "lights_off": 1, "music": 0, NO_MATCH: 0}
    assert c["music"] == {"lights_on": 0, "lights_off": 0, "music": 0, NO_MATCH: 1}
    assert c[NO_MATCH] == {"lights_on": 0, "lights_off": 1, "music": 1, NO_MATCH: 1}


def test_no_false_accept_rate_without_no_match_rows() -> None:
    clips = [ClipScore("a", "x", {"x": 0.9, "y": 0.1}), ClipScore("b", "y", {"x": 0.9, "y": 0.1})]
    table = ScoreTable.from_clips(clips, ["x", "y"])
    m = decision_metrics(table, table.predict(np.array([0.5, 0.5]), 0.0))
    assert m["false_accept_rate"] is None
    assert m["accuracy"] == 0.5


def test_clip_without_scores_never_matches() -> None:
    clips = [ClipScore("a", "x", {}), ClipScore("b", "", None)]
    table = ScoreTable.from_clips(clips, ["x", "y"])
    assert table.predict(np.array([-5.0, -5.0]), 0.0).tolist() == [-1, -1]


def test_calibration_hand_computed(tiny) -> None:
    clips = _scored(tiny)
    table = ScoreTable.from_clips(clips, ROUTES)
    cal = fit_calibration(table, np.full(3, 0.5), 0.1, max_false_accept=0.34)
    # Budget floor(0.34 * 3) = 1 false accept. Best: lights_on accepts c1, c2 (and c4, a wrong
    # route either way) but not c7; lights_off accepts c3 only; music must accept c6 (a false
    # accept) to get c5 right. Margin must stay <= 0.05 to keep c2; ties -> larger margin.
    assert (cal.correct, cal.false_accepts, cal.budget) == (4, 1, 1)
    t = dict(zip(ROUTES, cal.thresholds.tolist(), strict=True))
    assert 0.4 < t["lights_on"] <= 0.6
    assert 0.52 < t["lights_off"] <= 0.8
    assert t["music"] == pytest.approx(0.45)
    assert 0.0 < cal.margin <= 0.05
    pred = table.predict(cal.thresholds, cal.margin)
    m = decision_metrics(table, pred)
    assert m["accuracy"] == pytest.approx(0.8)
    assert m["false_accept_rate"] == pytest.approx(1 / 3, abs=1e-4)
    # A stricter target gives up music's correct clip rather than exceed it.
    strict = fit_calibration(table, np.full(3, 0.5), 0.1, max_false_accept=0.2)
    assert (strict.correct, strict.false_accepts) == (3, 0)
    assert strict.thresholds[2] > 0.7


def _random_table(seed: int, n: int = 240, r: int = 5) -> ScoreTable:
    rng = np.random.default_rng(seed)
    routes = [f"r{i}" for i in range(r)]
    clips = []
    for i in range(n):
        label = int(rng.integers(-1, r))  # -1: expects no match (about 1 in 6)
        s = rng.uniform(0.0, 0.6, r)
        if label >= 0:
            s[label] += rng.uniform(0.0, 0.5)
        clips.append(
            ClipScore(
                f"c{i}",
                routes[label] if label >= 0 else "",
                dict(zip(routes, s.tolist(), strict=True)),
            )
        )
    return ScoreTable.from_clips(clips, routes)


@pytest.mark.parametrize("target", [0.0, 0.05, 0.2])
def test_calibration_meets_constraint_and_beats_every_global_threshold(target: float) -> None:
    table = _random_table(seed=3)
    cal = fit_calibration(table, np.full(5, 0.5), 0.05, max_false_accept=target)
    pred = table.predict(cal.thresholds, cal.margin)
    m = decision_metrics(table, pred)
    assert m["false_accept_rate"] <= target + 1e-12
    assert int(np.sum((pred == table.expected) & (table.expected >= 0))) == cal.correct
    # Brute force over one shared threshold and a few margins: none that meets the constraint
    # routes more clips correctly than the fitted per-route thresholds.
    best_baseline = 0
    for t, mg in itertools.product(np.linspace(0.0, 1.1, 111), [0.0, 0.02, 0.05, 0.1, 0.2]):
        p = table.predict(np.full(5, t), mg)
        fa = int(np.sum((p >= 0) & (table.expected < 0)))
        if fa <= np.floor(target * np.sum(table.expected < 0) + 1e-9):
            best_baseline = max(best_baseline, int(np.sum((p == table.expected) & (p >= 0))))
    assert cal.correct >= best_baseline


def test_calibration_is_deterministic_and_order_independent() -> None:
    table = _random_table(seed=11)
    a = fit_calibration(table, np.full(5, 0.5), 0.05, max_false_accept=0.05)
    b = fit_calibration(table, np.full(5, 0.5), 0.05, max_false_accept=0.05)
    perm = np.random.default_rng(0).permutation(table.n)
    shuffled = ScoreTable(
        table.routes,
        [table.clips[i] for i in perm],
        [table.labels[i] for i in perm],
        table.expected[perm],
        table.scores[perm],
    )
    c = fit_calibration(shuffled, np.full(5, 0.5), 0.05, max_false_accept=0.05)
    assert a.thresholds.tolist() == b.thresholds.tolist() == c.thresholds.tolist()
    assert a.margin == b.margin == c.margin
    assert (a.correct, a.false_accepts) == (c.correct, c.false_accepts)


def test_calibration_without_no_match_rows_keeps_every_correct_clip() -> None:
    clips = [
        ClipScore("a", "x", {"x": 0.9, "y": 0.2}),
        ClipScore("b", "x", {"x": 0.3, "y": 0.1}),
        ClipScore("c", "y", {"x": 0.1, "y": 0.35}),
    ]
    table = ScoreTable.from_clips(clips, ["x", "y"])
    cal = fit_calibration(table, np.array([0.5, 0.5]), 0.1, max_false_accept=0.05)
    assert cal.budget is None
    assert cal.correct == 3
    assert cal.thresholds[0] <= 0.3 and cal.thresholds[1] <= 0.35


def test_calibration_rejects_bad_target() -> None:
    table = _random_table(seed=1, n=10)
    with pytest.raises(VoiceRouterError, match="between 0 and 1"):
        fit_calibration(table, np.full(5, 0.5), 0.0, max_false_accept=1.5)
