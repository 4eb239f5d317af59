"""Evaluation and calibration: hand-computed metrics on a tiny manifest, and a calibration that
is deterministic, optimal against simple baselines and meets its false-accept constraint."""

from __future__ import annotations

import csv
import hashlib
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from voice_router.calibration import fit_calibration
from voice_router.errors import AudioError, ManifestError, VoiceRouterError
from voice_router.evaluate import (
    NO_MATCH,
    ClipScore,
    ScoreTable,
    decision_metrics,
    read_manifest,
    score_clips,
    spread_subset,
)
from voice_router.model.fake import HashEmbeddingModel

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


# ---------------------------------------------------------------------------------------------
# End to end through the CLI and the real router (hash model, in-memory Qdrant, real files)

DATA = Path(__file__).resolve().parents[1] / "data" / "eval"
CLI_ARGS = ["--model", "hash", "--qdrant-url", ":memory:", "--exemplar-voices", "0", "--json"]


def _router(routes: Path | str):
    from voice_router.runnable import VoiceRouter

    return VoiceRouter(routes, model="hash", index=":memory:", exemplar_voices=0, dispatch=False)


def test_decisions_match_the_router_rule() -> None:
    router = _router(DATA / "routes.yaml")
    names = [r.name for r in router.routes.routes]
    thresholds = np.array([router.routes.route_threshold(r) for r in router.routes.routes])
    rng = np.random.default_rng(0)
    dicts = [
        dict(zip(names, rng.uniform(0.3, 0.7, 3).round(2).tolist(), strict=True))
        for _ in range(300)
    ]
    table = ScoreTable.from_clips([ClipScore(str(i), "", d) for i, d in enumerate(dicts)], names)
    pred = table.predict(thresholds, router.routes.margin)
    best, s1, gap = table.top()
    for i, d in enumerate(dicts):  # rounding to 2 decimals makes ties: tie-breaking counts too
        route, score, margin, nearest, _ = router.decide(d)
        assert (names[pred[i]] if pred[i] >= 0 else None) == route
        assert names[best[i]] == nearest
        assert s1[i] == pytest.approx(score) and gap[i] == pytest.approx(margin)
    single = ScoreTable.from_clips([ClipScore("a", "", {"x": 0.3})], ["x"])
    from voice_router.decision import NO_RUNNER_UP

    assert single.top()[2][0] == pytest.approx(0.3 - NO_RUNNER_UP)


def test_eval_cli_reports_what_the_router_decides(capsys: pytest.CaptureFixture[str]) -> None:
    from voice_router.cli import main

    routes, manifest = DATA / "routes.yaml", DATA / "manifest.csv"
    assert main(["eval", "--routes", str(routes), "--data", str(manifest), *CLI_ARGS]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep["n_rows"], rep["n"], rep["n_unreadable"]) == (5, 3, 2)
    assert {u["path"] for u in rep["unreadable"]} == {"corrupt.wav", "missing.flac"}
    # The same clips through the router itself (dry run) give the same report.
    router = _router(routes)
    rows = read_manifest(manifest)[:3]
    got = [router.route(str(r.path)).route for r in rows]
    expected = ["yes", "on", None]
    routed = [g == e for g, e in zip(got[:2], expected[:2], strict=True)]
    assert rep["accuracy"] == pytest.approx(sum(routed) / 2)
    assert rep["false_accept_rate"] == (1.0 if got[2] is not None else 0.0)
    assert rep["confusion"]["yes"][got[0] or NO_MATCH] == 1
    assert rep["confusion"][NO_MATCH][got[2] or NO_MATCH] == 1
    assert rep["latency_ms"]["p50"] > 0 and rep["latency_ms"]["p95"] >= rep["latency_ms"]["p50"]
    assert set(rep["per_route"]) == {"yes", "on", "off"}


def test_eval_cli_with_noise_changes_audio_not_counts(capsys: pytest.CaptureFixture[str]) -> None:
    from voice_router.cli import main

    args = ["eval", "--routes", str(DATA / "routes.yaml"), "--data", str(DATA / "manifest.csv")]
    assert main([*args, *CLI_ARGS, "--noise", "pink", "--snr", "0", "--seed", "3"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["noise"] == {"source": "pink", "snr_db": 0.0, "seed": 3}
    assert rep["n"] == 3
    assert rep["fusion"] == "weighted:0.5,0.5;k=3"  # the hash model names none
    assert main([*args, *CLI_ARGS, "--fusion", "max;k=2"]) == 0
    assert json.loads(capsys.readouterr().out)["fusion"] == "max;k=2"
    assert main([*args, *CLI_ARGS[:-1], "--fusion", "text"]) == 0  # the text report says it too
    assert "fusion: text" in capsys.readouterr().out


def test_calibrate_cli_writes_routes_that_eval_reproduces(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from voice_router.cli import main
    from voice_router.routes import load_routes

    out = tmp_path / "calibrated.yaml"
    data = ["--data", str(DATA / "manifest.csv")]
    assert (
        main(
            [
                "calibrate",
                "--routes",
                str(DATA / "routes.yaml"),
                *data,
                "--out",
                str(out),
                *CLI_ARGS,
            ]
        )
        == 0
    )
    cal = json.loads(capsys.readouterr().out)
    assert cal["fusion"] == "weighted:0.5,0.5;k=3"  # thresholds hold for this fusion only
    assert cal["after"]["false_accept_rate"] <= 0.05
    assert cal["after"]["accuracy"] >= cal["before"]["accuracy"]
    new = load_routes(out)
    assert [r.name for r in new.routes] == ["yes", "on", "off"]
    assert new.margin == pytest.approx(cal["after"]["margin"])
    assert all(r.threshold is not None for r in new.routes)
    assert main(["eval", "--routes", str(out), *data, *CLI_ARGS]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["accuracy"] == cal["after"]["accuracy"]
    assert rep["false_accept_rate"] == cal["after"]["false_accept_rate"]
    # Deterministic: a second fit writes the same file.
    again = tmp_path / "again.yaml"
    assert (
        main(
            [
                "calibrate",
                "--routes",
                str(DATA / "routes.yaml"),
                *data,
                "--out",
                str(again),
                *CLI_ARGS,
            ]
        )
        == 0
    )
    capsys.readouterr()
    assert again.read_text() == out.read_text()


def test_search_metrics_hand_computed() -> None:
    from voice_router.audio.io import load_audio
    from voice_router.search_eval import search_report

    rows = read_manifest(DATA / "manifest.csv", required=("path", "text"))
    model = HashEmbeddingModel(dim=64)
    clips = {}
    for r in rows[:3]:
        clips[r.path] = load_audio(r.path)
        model.register_audio(clips[r.path], r.text)  # each clip embeds like its caption
    rep = search_report(model, rows, loader=lambda p: clips[p] if p in clips else load_audio(p))
    assert (rep["n_clips"], rep["n_queries"], rep["n_unreadable"]) == (3, 3, 2)
    assert rep["R@1"] == 1.0 and rep["cvR@5"] == 1.0 and rep["a2t_R@1"] == 1.0
    # Swap two clips' meanings: their captions now find the other clip first.
    model.register_audio(clips[rows[0].path], rows[1].text)
    model.register_audio(clips[rows[1].path], rows[0].text)
    rep = search_report(model, rows, loader=lambda p: clips[p] if p in clips else load_audio(p))
    assert rep["R@1"] == pytest.approx(1 / 3, abs=1e-4)
    assert rep["R@10"] == 1.0


def test_eval_search_cli(capsys: pytest.CaptureFixture[str]) -> None:
    from voice_router.cli import main

    args = ["--data", str(DATA / "manifest.csv"), "--model", "hash", "--json"]
    assert main(["eval-search", *args]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert (rep["n_clips"], rep["n_queries"]) == (3, 3)
    assert rep["R@10"] == 1.0  # 3 candidates: every caption's clip is in the top 10
    assert 0.0 <= rep["R@1"] <= rep["cvR@5"] <= 1.0


def test_calibration_caps_thresholds_at_one() -> None:
    clips = [
        ClipScore("a", "", {"x": 1.0, "y": 0.1}),  # a no-match clip that scores the maximum
        ClipScore("b", "y", {"x": 0.1, "y": 0.9}),
    ]
    table = ScoreTable.from_clips(clips, ["x", "y"])
    cal = fit_calibration(table, np.array([0.5, 0.5]), 0.05, max_false_accept=0.0)
    assert cal.thresholds[0] == 1.0  # the largest a routes file allows
    assert any("capped" in n for n in cal.notes)
    assert cal.correct == 1


def test_uncaptioned_clips_are_distractors_not_queries() -> None:
    from voice_router.search_eval import caption_retrieval

    model = HashEmbeddingModel(dim=64)
    captions = ["lights on", "", "music please", ""]
    clips = model.embed_text(["lights on", "lights on now", "music please", "weather"])
    rep = caption_retrieval(model, clips, captions)
    assert (rep["n_clips"], rep["n_captioned_clips"], rep["n_queries"]) == (4, 2, 2)
    assert rep["R@1"] == 1.0  # each caption's own clip embeds exactly like it
    assert rep["a2t_R@1"] == 1.0  # over the 2 captioned clips only


def test_eval_search_on_an_indexed_collection(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import shutil

    from voice_router.cli import main

    lib = tmp_path / "clips"
    lib.mkdir()
    for name in ("frontend_yes.flac", "speech_sequence.flac"):
        shutil.copy(DATA.parent / name, lib / name)
    shutil.copy(DATA.parent / "audio" / "on_022cd682.flac", lib / "on.flac")
    (tmp_path / "captions.csv").write_text(
        "path,text\nclips/frontend_yes.flac,yes\nclips/on.flac,on\nclips/not_indexed.flac,off\n"
    )
    store = ["--model", "hash", "--index", str(tmp_path / "index")]
    assert main(["index-audio", str(lib), "--collection", "c", *store, "--json"]) == 0
    capsys.readouterr()
    args = ["--data", str(tmp_path / "captions.csv"), "--collection", "c", *store, "--json"]
    assert main(["eval-search", *args]) == 0
    rep = json.loads(capsys.readouterr().out)
    # Candidates = the 3 indexed clips (speech_sequence is an uncaptioned distractor); the
    # caption of the clip that was never indexed has no relevant clip and is not a query.
    assert (rep["n_clips"], rep["n_captioned_clips"], rep["n_queries"]) == (3, 2, 2)
    assert rep["manifest_rows_not_in_collection"] == 1
    assert rep["R@10"] == 1.0
