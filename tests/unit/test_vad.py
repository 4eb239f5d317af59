"""UtteranceSegmenter: pre-roll, endpointing, max/min length (with a scripted frame classifier),
and real silero-vad on a real recording of three commands separated by silence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_router.audio.vad import FRAME, SAMPLE_RATE, UtteranceSegmenter, segment

DATA = Path(__file__).resolve().parents[1] / "data"


class AmplitudeVAD:
    """Scripted stand-in for silero: a frame is speech iff its peak is above 0.1.

    Lets the tests place speech at exact frames and check the segmenter's bookkeeping.
    """

    def __init__(self) -> None:
        self.calls = 0
        self.resets = 0

    numpy_frames = True  # as PySileroVad: numpy frames in, a float out

    def __call__(self, frame: np.ndarray, sr: int) -> float:
        self.calls += 1
        assert sr == SAMPLE_RATE and frame.shape == (FRAME,)
        return 0.95 if float(np.abs(frame).max()) > 0.1 else 0.02

    def reset_states(self) -> None:
        self.resets += 1


def frames(*spec: tuple[str, int]) -> np.ndarray:
    """Build audio from (kind, n_frames): 'S' speech (0.5 tone), 'N' quiet noise, 'Z' zeros."""
    rng = np.random.default_rng(0)
    out = []
    for kind, n in spec:
        t = np.arange(n * FRAME) / SAMPLE_RATE
        if kind == "S":
            out.append(0.5 * np.sin(2 * np.pi * 220 * t))
        elif kind == "N":
            out.append(0.01 * rng.standard_normal(n * FRAME))
        else:
            out.append(np.zeros(n * FRAME))
    return np.concatenate(out).astype(np.float32)


def seg(**kw) -> UtteranceSegmenter:
    kw.setdefault("model", AmplitudeVAD())
    return UtteranceSegmenter(**kw)


def test_pre_roll_keeps_at_least_300_ms_before_detected_start() -> None:
    audio = frames(("N", 40), ("S", 20), ("N", 40))
    (u,) = seg(pre_roll_ms=300).feed(audio)
    assert u.start == 40 * FRAME
    assert u.start - u.audio_start >= 0.3 * SAMPLE_RATE
    # the kept pre-roll is the real preceding audio, sample for sample
    np.testing.assert_array_equal(u.audio, audio[u.audio_start : u.audio_end])


def test_pre_roll_is_limited_by_stream_start() -> None:
    audio = frames(("N", 2), ("S", 20), ("N", 40))
    (u,) = seg(pre_roll_ms=400).feed(audio)
    assert u.audio_start == 0 and u.start == 2 * FRAME


def test_endpoint_after_configured_silence_and_post_roll_trim() -> None:
    audio = frames(("N", 10), ("S", 20), ("N", 60))
    s = seg(silence_ms=500, post_roll_ms=100)
    # feed in odd-sized blocks: results must not depend on block boundaries
    out = []
    for i in range(0, len(audio), 700):
        out += s.feed(audio[i : i + 700])
    (u,) = out
    assert u.end == 30 * FRAME  # first silent frame after speech
    assert u.audio_end - u.end == int(0.1 * SAMPLE_RATE)
    assert not u.cut


def test_short_pause_does_not_end_utterance_but_long_one_does() -> None:
    audio = frames(("N", 10), ("S", 10), ("N", 8), ("S", 10), ("N", 30), ("S", 10), ("N", 30))
    utts = seg(silence_ms=500).feed(audio)  # 8 frames = 256 ms < 500 ms; 30 frames > 500 ms
    assert [(u.start // FRAME, u.end // FRAME) for u in utts] == [(10, 38), (68, 78)]


def test_endpoint_delay_is_configurable() -> None:
    audio = frames(("N", 10), ("S", 10), ("N", 12), ("S", 10), ("N", 40))
    assert len(seg(silence_ms=300).feed(audio)) == 2  # 384 ms gap splits
    assert len(seg(silence_ms=500).feed(audio)) == 1  # ... unless the endpoint waits longer


def test_max_length_cuts_into_pieces_that_cover_the_speech() -> None:
    audio = frames(("N", 10), ("S", 100), ("N", 40))  # 3.2 s of speech
    s = seg(max_ms=1000, min_ms=100)
    utts = s.feed(audio) + s.flush()
    assert len(utts) == 4
    assert [u.cut for u in utts] == [True, True, True, False]
    assert all(u.end - u.start <= 1000 * SAMPLE_RATE // 1000 + FRAME for u in utts)
    # contiguous pieces: no speech lost between them
    for a, b in zip(utts, utts[1:], strict=False):
        assert b.start == a.end == b.audio_start
    assert utts[0].start == 10 * FRAME and utts[-1].end == 110 * FRAME
    assert s.cuts == 3


def test_min_length_ignores_clicks_and_counts_them() -> None:
    audio = frames(("N", 20), ("S", 2), ("N", 40), ("S", 15), ("N", 40))
    s = seg(min_ms=200)
    (u,) = s.feed(audio)
    assert u.start == 62 * FRAME
    assert s.ignored == 1


def test_flush_emits_open_utterance_and_resets() -> None:
    s = seg()
    assert s.feed(frames(("N", 10), ("S", 20))) == []
    assert s.in_speech
    (u,) = s.flush()
    assert (u.start, u.end) == (10 * FRAME, 30 * FRAME)
    assert not s.in_speech and s.position == 0


def test_energy_floor_skips_the_model_on_digital_silence() -> None:
    model = AmplitudeVAD()
    s = seg(model=model, energy_floor_db=-70)
    s.feed(frames(("Z", 50), ("N", 10)))
    assert model.calls == 10 and s.model_frames == 10


def test_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValueError, match="threshold"):
        seg(threshold=1.5)
    with pytest.raises(ValueError, match="silence"):
        seg(silence_ms=0)


def test_silero_on_real_speech_sequence_finds_each_command() -> None:
    """Real silero-vad, real recordings: three utterances inside the known clip spans,
    deterministic across runs and with background noise added."""
    audio, sr = sf.read(DATA / "speech_sequence.flac", dtype="float32")
    meta = json.loads((DATA / "speech_sequence.json").read_text())
    assert sr == SAMPLE_RATE
    noisy = audio + np.random.default_rng(1).normal(0, 0.003, len(audio)).astype(np.float32)
    first = segment(noisy)
    assert len(first) == len(meta["clips"]) == 3
    for u, clip in zip(first, meta["clips"], strict=True):
        # detected speech lies within the clip (which has 250 ms margins around its speech)
        assert clip["start"] <= u.start < u.end <= clip["end"] + FRAME, (u.start, u.end, clip)
        assert u.start - u.audio_start >= 0.3 * SAMPLE_RATE
        assert 200 <= u.duration_ms <= 1000
    again = segment(noisy)
    assert [(u.start, u.end) for u in again] == [(u.start, u.end) for u in first]
