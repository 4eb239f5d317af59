"""voice_router.audio.prep: edge-silence trimming, centre padding and the clip normaliser."""

from __future__ import annotations

import numpy as np

from voice_router.audio.prep import ClipNormalizer, center_pad, trim_silence

RATE = 16000


def _tone(seconds: float, amp: float = 0.5) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amp * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_trim_silence_cuts_edges_keeps_padding() -> None:
    tone = _tone(0.5)
    padded = np.concatenate([np.zeros(RATE, np.float32), tone, np.zeros(RATE, np.float32)])
    out = trim_silence(padded)
    assert RATE // 2 <= out.size <= RATE // 2 + int(0.12 * RATE)
    assert trim_silence(np.zeros(100, np.float32)).size == 100
    assert trim_silence(np.zeros(0, np.float32)).size == 0


def test_trim_threshold_is_relative_to_the_peak() -> None:
    quiet_edge = _tone(0.3, amp=0.5 * 10 ** (-30 / 20))  # 30 dB below the loud part
    clip = np.concatenate([quiet_edge, _tone(0.5), quiet_edge])
    assert trim_silence(clip, threshold_db=-40, pad_s=0).size == clip.size  # kept at -40 dB
    assert trim_silence(clip, threshold_db=-25, pad_s=0).size == _tone(0.5).size  # cut at -25


def test_center_pad_centres_and_keeps_long_clips() -> None:
    long = np.ones(20000, np.float32)
    assert center_pad(long, 1.0) is long
    out = center_pad(np.ones(10, np.float32), 0.001)
    assert out.size == 16 and out[3:13].sum() == 10 and out[:3].sum() == 0


def test_inactive_normalizer_returns_the_clip_unchanged() -> None:
    norm = ClipNormalizer()
    clip = _tone(0.7)
    assert not norm.active
    np.testing.assert_array_equal(norm(clip), clip)


def test_normalizer_makes_silence_around_speech_irrelevant() -> None:
    norm = ClipNormalizer(trim_db=-25, trim_pad_s=0.25, min_seconds=1.25, noise_rms=3e-4)
    speech = _tone(0.4)
    a = norm(speech)
    b = norm(np.concatenate([np.zeros(RATE, np.float32), speech, np.zeros(RATE // 3, np.float32)]))
    assert a.size == b.size == int(1.25 * RATE)
    np.testing.assert_allclose(a, b, atol=1e-6)  # same speech, same placement, same noise


def test_noise_floor_is_fixed_and_at_the_asked_level() -> None:
    norm = ClipNormalizer(noise_rms=3e-4)
    silence = np.zeros(3 * RATE, np.float32)
    x, y = norm(silence), norm(silence)
    np.testing.assert_array_equal(x, y)  # deterministic
    assert abs(float(np.sqrt(np.mean(x**2))) - 3e-4) < 3e-5
    longer = norm(np.zeros(30 * RATE, np.float32))  # longer than the first pattern
    np.testing.assert_array_equal(longer[: x.size], x)


def test_settings_round_trip_and_empty_when_inactive() -> None:
    assert ClipNormalizer().settings() == {}
    kw = {"trim_db": -25.0, "trim_pad_s": 0.25, "min_seconds": 1.25, "noise_rms": 3e-4}
    assert ClipNormalizer(**kw).settings() == kw
    assert ClipNormalizer(**ClipNormalizer(**kw).settings()).settings() == kw
