"""The transcription cascade of benchmarks/: text routing of given transcripts, a real
PocketSphinx transcription, and the benchmark's cross-fitted summary."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from voice_router.evaluate import (
    ClipScore,
    ManifestRow,
    evaluation_report,
    read_manifest,
    score_clips,
)
from voice_router.model.fake import HashEmbeddingModel
from voice_router.routes import load_routes, parse_routes

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from cascade import CascadeRouter, MiniLMEmbedder, PocketSphinxTranscriber, TextRouter  # noqa: E402
from route_vs_cascade import _folds, _summarise  # noqa: E402

DATA = ROOT / "tests" / "data"

HOME = parse_routes(
    """
threshold: 0.5
margin: 0.05
routes:
  - name: lights
    description: turn the lights on or off
    examples: ["switch the lamp off"]
  - name: time
    description: what time is it
  - name: weather
    description: will it rain today
"""
)


class HashText:
    """The cascade's embedder interface over the deterministic hash model."""

    def __init__(self) -> None:
        self.model = HashEmbeddingModel(dim=64)

    def embed(self, texts: list[str]) -> np.ndarray:
        return self.model.embed_text(texts)


class GivenTranscripts:
    """Stands in for PocketSphinx: returns prepared transcripts in order."""

    def __init__(self, texts: list[str]) -> None:
        self.texts = list(texts)

    def transcribe(self, audio: np.ndarray) -> str:
        return self.texts.pop(0)


def test_text_router_scores_best_text_per_route() -> None:
    router = TextRouter(HOME, HashText())
    s = router.scores("what time is it")
    assert set(s) == {"lights", "time", "weather"}
    assert s["time"] == pytest.approx(1.0, abs=1e-6)  # identical to the description
    assert max(s, key=s.get) == "time"
    # An example counts like the description: best over the route's texts.
    assert router.scores("switch the lamp off")["lights"] == pytest.approx(1.0, abs=1e-6)
    assert router.scores("") == {}
    assert router.scores("   ") == {}


def test_cascade_decisions_through_evaluate() -> None:
    transcripts = ["what time is it", "will it rain today", "", "switch the lamp off"]
    cascade = CascadeRouter(HOME, GivenTranscripts(transcripts), HashText())
    clips = [np.full(800, 0.1 * (i + 1), np.float32) for i in range(4)]
    rows = [(f"c{i}.wav", lab) for i, lab in enumerate(["time", "weather", "time", "lights"])]
    manifest = [ManifestRow(Path(n), n, lab, "") for n, lab in rows]
    got = score_clips(cascade, manifest, loader=lambda p: clips[int(p.stem[1:])])
    assert cascade.transcripts == transcripts
    assert [c.scores == {} for c in got] == [False, False, True, False]
    rep = evaluation_report(got, HOME)
    # Exact transcripts score 1.0 for their route; the empty one matches nothing.
    assert rep["accuracy"] == pytest.approx(3 / 4)
    assert rep["confusion"]["time"]["(none)"] == 1


def test_pocketsphinx_transcribes_a_real_clip() -> None:
    from voice_router.audio.io import load_audio

    asr = PocketSphinxTranscriber()
    audio = load_audio(DATA / "frontend_yes.flac")  # Speech Commands "yes"
    assert asr.transcribe(audio) == "yes"
    assert asr.transcribe(np.zeros(1600, np.float32)) == ""


def test_folds_are_speaker_disjoint() -> None:
    rows = read_manifest(ROOT / "benchmarks" / "manifests" / "speech_commands_test.csv", limit=80)
    clips = [ClipScore(r.display, r.label, {}) for r in rows]
    folds = _folds(rows, clips)
    assert set(folds) == {0, 1}
    by_speaker: dict[str, set[int]] = {}
    for r, f in zip(rows, folds, strict=True):
        by_speaker.setdefault(r.speaker, set()).add(f)
    assert all(len(f) == 1 for f in by_speaker.values())


def test_benchmark_summary_cross_fits_thresholds() -> None:
    routes = load_routes(DATA / "eval" / "routes.yaml")
    rng = np.random.default_rng(0)
    clips = []
    for i in range(40):  # "yes" clips score high on yes; half the speakers in each fold
        lab = ["yes", "on", "off", ""][i % 4]
        s = {n: float(rng.uniform(0.1, 0.4)) for n in ("yes", "on", "off")}
        if lab:
            s[lab] = 0.8
        clips.append(
            {
                "display": f"c{i}",
                "label": lab,
                "scores": s,
                "latency_ms": 2.0,
                "duration_s": 1.0,
                "error": None,
            }
        )
    rows = [ManifestRow(Path(c["display"]), c["display"], c["label"], "") for c in clips]
    assert _folds(rows, [ClipScore(**c) for c in clips]) == [i % 2 for i in range(40)]
    result = {"name": "x", "clips": clips, "peak_rss_mb": 1.0, "setup_s": 0.1, "threads": 1}
    out = _summarise(result, routes, rows, 0.05)
    assert out["top1_accuracy"] == 1.0
    assert out["accuracy"] == 1.0  # separable: thresholds fitted on one half work on the other
    assert out["false_accept_rate"] == 0.0
    assert out["real_time_factor"] == pytest.approx(0.002)
    assert out["latency_ms"]["p50"] == pytest.approx(2.0)


@pytest.mark.slow
def test_minilm_cascade_end_to_end_on_real_speech() -> None:
    """Real PocketSphinx + real all-MiniLM-L6-v2 on a real "yes"; pooling matches
    sentence-transformers when that is installed."""
    emb = MiniLMEmbedder()
    texts = ["turn on the light", "what time is it"]
    a = emb.embed(texts)
    assert a.shape == (2, 384)
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    try:
        from cascade import minilm_path
        from sentence_transformers import SentenceTransformer

        ref = SentenceTransformer(str(minilm_path()), device="cpu").encode(
            texts, normalize_embeddings=True
        )
        assert np.allclose((a * ref).sum(axis=1), 1.0, atol=1e-4)
    except ImportError:
        pass
    routes = load_routes(DATA / "eval" / "routes.yaml")
    cascade = CascadeRouter(routes, embedder=emb)
    rows = read_manifest(DATA / "eval" / "manifest.csv")[:1]  # the real "yes"
    got = score_clips(cascade, rows)
    assert cascade.transcripts == ["yes"]
    assert max(got[0].scores, key=got[0].scores.get) == "yes"
