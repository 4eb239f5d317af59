"""Unit tests of voice_router.audio.io: formats, conversions, array input and chunking."""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from voice_router.audio.io import (
    AUDIO_EXTENSIONS,
    SILENCE_PEAK_DBFS,
    chunk_audio,
    load_audio,
)
from voice_router.errors import AudioError

REAL_CLIP = Path(__file__).resolve().parent.parent / "data" / "audio" / "on_022cd682.flac"


def _sine(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(round(seconds * rate))) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def _encode(audio: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def _dominant_hz(audio: np.ndarray, rate: int = 16000) -> float:
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.argmax(spec) * rate / audio.size)


def test_real_flac_matches_soundfile_exactly():
    out = load_audio(REAL_CLIP)
    ref, rate = sf.read(REAL_CLIP, dtype="float32")
    assert rate == 16000 and out.dtype == np.float32 and out.shape == ref.shape
    # Same samples up to the removed DC offset.
    np.testing.assert_allclose(out, ref - ref.mean(), atol=1e-6)


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "tol"),
    [
        ("WAV", "PCM_U8", 16000, 2e-2),
        ("WAV", "PCM_16", 44100, 1e-3),
        ("WAV", "PCM_24", 48000, 1e-3),
        ("WAV", "PCM_32", 22050, 1e-3),
        ("WAV", "FLOAT", 8000, 1e-3),
        ("WAV", "DOUBLE", 96000, 1e-3),
        ("FLAC", "PCM_16", 32000, 1e-3),
        ("FLAC", "PCM_24", 11025, 1e-3),
        ("OGG", "VORBIS", 44100, 5e-2),
        ("OGG", "OPUS", 48000, 1e-1),
        ("MP3", "MPEG_LAYER_III", 44100, 1e-1),
    ],
)
def test_formats_decode_to_16k_mono_with_the_right_pitch(fmt, subtype, rate, tol):
    src = _sine(1.0, rate, freq=440.0, amp=0.5)
    out = load_audio(_encode(src, rate, fmt, subtype))
    assert out.dtype == np.float32 and out.ndim == 1
    assert abs(out.size - 16000) <= 1200  # lossy codecs add priming/padding samples
    assert abs(_dominant_hz(out) - 440.0) < 3.0
    assert np.abs(out).max() <= 1.0
    # The level survives decoding and resampling (rms of a 0.5 sine is 0.354).
    mid = out[2000:-2000]
    assert abs(np.sqrt(np.mean(mid**2)) - 0.5 / np.sqrt(2)) < 0.354 * max(tol, 0.02)


def test_resampling_length_is_exact_to_a_sample():
    for rate in (8000, 11025, 22050, 44100, 48000, 96000):
        out = load_audio(_encode(_sine(2.0, rate), rate, "WAV", "PCM_16"))
        assert abs(out.size - 32000) <= 1, rate


def test_target_rate_option():
    out = load_audio(_encode(_sine(1.0, 44100), 44100), target_rate=8000)
    assert abs(out.size - 8000) <= 1
    assert abs(_dominant_hz(out, 8000) - 440.0) < 3.0


def test_channels_are_mixed_by_mean():
    left, right = _sine(1.0, 16000, 440.0, 0.4), _sine(1.0, 16000, 1000.0, 0.2)
    stereo = np.stack([left, right], axis=1)  # (n, 2)
    out = load_audio(_encode(stereo, 16000, "WAV", "FLOAT"))
    np.testing.assert_allclose(out, (left + right) / 2 - ((left + right) / 2).mean(), atol=1e-6)


def test_int16_array_is_scaled_by_32768():
    x = (_sine(0.5, 16000) * 32767).astype(np.int16)
    out = load_audio((x, 16000))
    expected = x / 32768.0
    np.testing.assert_allclose(out, expected - expected.mean(), atol=1e-6)


@pytest.mark.parametrize(
    ("dtype", "scale", "offset"),
    [(np.int8, 127, 0), (np.uint8, 127, 128), (np.int16, 32767, 0), (np.int32, 2**31 - 1, 0)],
)
def test_integer_arrays_land_in_minus_one_one(dtype, scale, offset):
    x = (np.round(_sine(0.25, 16000, amp=1.0) * scale) + offset).astype(dtype)
    out = load_audio((x, 16000))
    assert out.dtype == np.float32
    assert 0.98 < np.abs(out).max() <= 1.0


def test_stereo_array_samples_by_channels():
    x = np.stack([_sine(1.0, 8000, 300.0), _sine(1.0, 8000, 300.0)], axis=1).astype(np.float32)
    out = load_audio((x, 8000))
    assert abs(out.size - 16000) <= 1 and abs(_dominant_hz(out) - 300.0) < 3.0


@pytest.mark.parametrize(
    ("array", "words"),
    [
        (np.zeros((10, 2, 2), np.float32), "shape"),
        (np.float32(0.5), "shape"),
        (np.zeros((2, 16000), np.float32) + 0.1, "channels-first"),
        (np.arange(100, dtype=np.int64), "int64"),
        (np.ones(100, dtype=bool), "not audio"),
        (np.ones(100, dtype=np.complex64), "not audio"),
        (np.zeros(0, np.float32), "too short"),
    ],
)
def test_bad_arrays_raise_audio_error(array, words):
    with pytest.raises(AudioError, match=words):
        load_audio((array, 16000))


@pytest.mark.parametrize("rate", [0, -16000, 16000.5, True, "16000", 10**7])
def test_bad_sample_rates_raise(rate):
    with pytest.raises(AudioError, match="sample rate"):
        load_audio((np.ones(100, np.float32), rate))


def test_integral_float_rate_is_accepted():
    assert load_audio((_sine(0.1, 16000).astype(np.float32), 16000.0)).size == 1600


def test_float_array_beyond_full_scale_is_divided_by_its_peak(caplog):
    x = _sine(0.5, 16000, amp=1.0) * 32767.0  # int16-scaled floats, a common mistake
    with caplog.at_level(logging.WARNING, logger="voice_router.audio.io"):
        out = load_audio((x, 16000))
    assert np.abs(out).max() == pytest.approx(1.0, abs=1e-3)
    assert "exceed [-1, 1]" in caplog.text


def test_wrong_python_type_is_a_type_error():
    with pytest.raises(TypeError, match="path, bytes or"):
        load_audio(12345)  # type: ignore[arg-type]


def test_path_like_and_str_paths(tmp_path):
    p = tmp_path / "clip.wav"
    sf.write(p, _sine(0.5, 16000), 16000)
    a, b = load_audio(p), load_audio(str(p))
    np.testing.assert_array_equal(a, b)
    assert a.size == 8000


def test_dc_offset_is_removed():
    x = _sine(1.0, 16000, amp=0.3) + 0.4
    out = load_audio((x.astype(np.float32), 16000))
    assert abs(float(out.mean())) < 1e-4
    np.testing.assert_allclose(out, x - x.mean(), atol=1e-5)


def test_silence_message_names_the_threshold_and_the_fix():
    with pytest.raises(AudioError) as e:
        load_audio((np.zeros(16000, np.float32), 16000))
    assert f"audio is silent (peak < {SILENCE_PEAK_DBFS:g} dBFS)" in str(e.value)
    assert "check the microphone/gain" in str(e.value)


def test_max_duration_is_enforced_before_decoding_and_can_be_lifted():
    data = _encode(_sine(3.0, 8000), 8000)
    with pytest.raises(AudioError, match="longer than the 2 s limit"):
        load_audio(data, max_duration_s=2)
    assert load_audio(data, max_duration_s=None).size == 48000
    with pytest.raises(AudioError, match="longer than"):
        load_audio((_sine(3.0, 8000), 8000), max_duration_s=2)


def test_audio_extensions():
    assert {".wav", ".flac", ".ogg", ".mp3", ".opus"} <= AUDIO_EXTENSIONS
    assert all(e.startswith(".") and e == e.lower() for e in AUDIO_EXTENSIONS)


# ----------------------------------------------------------------------------- chunk_audio


def test_chunk_short_clip_is_returned_whole():
    x = np.ones(16000 * 5, np.float32)
    pieces = chunk_audio(x, 30.0)
    assert len(pieces) == 1 and pieces[0] is x


def test_chunks_are_balanced_and_bounded():
    x = np.arange(16000 * 61, dtype=np.float32)
    pieces = chunk_audio(x, 30.0)
    assert len(pieces) == 3
    assert all(p.size <= 30 * 16000 for p in pieces)
    assert max(p.size for p in pieces) - min(p.size for p in pieces) <= 1
    np.testing.assert_array_equal(np.concatenate(pieces), x)  # nothing lost or repeated


def test_chunk_exact_multiple_and_other_rate():
    x = np.zeros(8000 * 20, np.float32)
    pieces = chunk_audio(x, 10.0, sample_rate=8000)
    assert [p.size for p in pieces] == [80000, 80000]


def test_chunk_rejects_bad_input():
    with pytest.raises(ValueError):
        chunk_audio(np.ones(10, np.float32), 0)
    with pytest.raises(AudioError, match="1-D"):
        chunk_audio(np.ones((10, 2), np.float32), 1.0)
    with pytest.raises(AudioError, match="no samples"):
        chunk_audio(np.ones(0, np.float32), 1.0)
