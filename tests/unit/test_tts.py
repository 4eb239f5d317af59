"""Tests of voice_router.tts (espeak-ng exemplar synthesis)."""

from __future__ import annotations

import numpy as np
import pytest

from voice_router import tts
from voice_router.errors import ModelError

needs_espeak = pytest.mark.skipif(not tts.tts_available(), reason="espeak-ng not installed")


def test_default_voices_are_distinct_and_in_range() -> None:
    voices = tts.default_exemplar_voices(24)
    assert len(voices) == 24
    assert len({v.key for v in voices}) == 24
    for v in voices:
        assert v.engine == "espeak-ng"
        assert v.voice.split("+")[0] in tts.ESPEAK_ACCENTS
        assert 140 <= v.rate <= 200
        assert 35 <= v.pitch <= 70
    # deterministic
    assert tts.default_exemplar_voices(5) == voices[:5]
    with pytest.raises(ValueError):
        tts.default_exemplar_voices(0)


@needs_espeak
def test_synthesize_returns_16k_mono_speech() -> None:
    audio = tts.synthesize("turn on the lights", tts.ExemplarVoice(voice="en-gb+f2"))
    assert audio.dtype == np.float32 and audio.ndim == 1
    assert 0.4 * tts.SAMPLE_RATE < audio.size < 3 * tts.SAMPLE_RATE
    assert np.max(np.abs(audio)) <= 1.0 and np.max(np.abs(audio)) > 0.05


@needs_espeak
def test_voices_and_rates_change_the_audio() -> None:
    slow = tts.synthesize("stop now", tts.ExemplarVoice(voice="en-us", rate=140), min_seconds=0)
    fast = tts.synthesize("stop now", tts.ExemplarVoice(voice="en-us", rate=200), min_seconds=0)
    assert fast.size < slow.size
    a = tts.synthesize("yes", tts.ExemplarVoice(voice="en-us+m1"))
    b = tts.synthesize("yes", tts.ExemplarVoice(voice="en-gb-scotland+f3"))
    n = min(a.size, b.size)
    assert not np.allclose(a[:n], b[:n])


@needs_espeak
def test_short_words_are_centred_in_one_second() -> None:
    bare = tts.synthesize("yes", tts.ExemplarVoice(), min_seconds=0)
    padded = tts.synthesize("yes", tts.ExemplarVoice())
    assert bare.size < tts.SAMPLE_RATE == padded.size
    start = (padded.size - bare.size) // 2
    assert np.array_equal(padded[start : start + bare.size], bare)
    assert not np.any(padded[:start]) and not np.any(padded[start + bare.size :])


@needs_espeak
def test_text_is_not_parsed_as_option_or_shell() -> None:
    audio = tts.synthesize("--version; echo hi", tts.ExemplarVoice())
    assert audio.size > 0.3 * tts.SAMPLE_RATE


def test_errors() -> None:
    with pytest.raises(ValueError):
        tts.synthesize("   ")
    with pytest.raises(ValueError):
        tts.synthesize("hi", tts.ExemplarVoice(engine="piper"))
    if tts.tts_available():
        with pytest.raises(ModelError, match="voice"):
            tts.synthesize("hi", tts.ExemplarVoice(voice="xx-nonexistent"))


def test_missing_binary_raises_model_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tts.shutil, "which", lambda name: None)
    assert not tts.tts_available()
    with pytest.raises(ModelError, match="espeak-ng is not installed"):
        tts.synthesize("hello")
