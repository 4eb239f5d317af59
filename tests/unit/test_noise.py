"""Noise mixing: the achieved SNR is the requested one, offsets are seeded, errors are typed."""

from __future__ import annotations

import numpy as np
import pytest

from voice_router.errors import AudioError
from voice_router.noise import (
    NoiseMixer,
    max_frame_energy,
    mix_at_snr,
    snr_db,
    synthetic_noise,
)

SR = 16000


def _speech_like(seconds: float = 1.0, amp: float = 0.1) -> np.ndarray:
    """A tone burst in the middle of silence, like a one-word command clip."""
    n = int(seconds * SR)
    x = np.zeros(n, np.float32)
    t = np.arange(n // 4) / SR
    x[n // 2 : n // 2 + n // 4] = amp * np.sin(2 * np.pi * 440 * t)
    return x


def test_max_frame_energy_uses_loudest_frame() -> None:
    x = np.zeros(SR, np.float32)
    x[:320] = 0.5  # one full 20 ms frame at 0.5 -> mean square 0.25
    assert max_frame_energy(x, SR) == pytest.approx(0.25)
    assert np.mean(x**2) == pytest.approx(0.25 / 50)  # average energy would be 50x lower


@pytest.mark.parametrize("snr", [-5.0, 0.0, 6.0, 20.0])
def test_achieved_snr_matches_request(snr: float) -> None:
    clean = _speech_like(amp=0.05)
    noise = synthetic_noise("white", 3.0, seed=1) * 0.1
    mixed = mix_at_snr(clean, noise, snr, np.random.default_rng(0), SR)
    assert mixed.shape == clean.shape and mixed.dtype == np.float32
    assert np.max(np.abs(mixed)) <= 1.0
    added = mixed.astype(np.float64) - clean
    assert snr_db(clean, added, SR) == pytest.approx(snr, abs=0.01)


def test_clipping_rescales_but_keeps_snr() -> None:
    clean = _speech_like(amp=0.9)
    noise = synthetic_noise("pink", 2.0, seed=2)
    rng = np.random.default_rng(5)
    mixed = mix_at_snr(clean, noise, -10.0, rng, SR)  # loud noise: would exceed 1.0
    assert np.max(np.abs(mixed)) == pytest.approx(1.0, abs=1e-6)
    # Rebuild the same noise segment (same seed -> same offset); the mixture must be
    # s * clean + s * g * seg for one overall scale s, with g giving the requested SNR.
    seg_rng = np.random.default_rng(5)
    start = int(seg_rng.integers(0, noise.size))
    seg = np.take(noise, start + np.arange(clean.size), mode="wrap").astype(np.float64)
    a = np.stack([clean.astype(np.float64), seg], axis=1)  # (N, 2)
    coef, *_ = np.linalg.lstsq(a, mixed.astype(np.float64), rcond=None)
    s, sg = coef
    assert np.allclose(mixed, s * clean + sg * seg, atol=1e-5)
    assert snr_db(clean, (sg / s) * seg, SR) == pytest.approx(-10.0, abs=0.01)


def test_short_noise_wraps_around() -> None:
    clean = _speech_like(seconds=2.0)
    noise = synthetic_noise("white", 0.1, seed=3)  # 1600 samples for a 32000-sample clip
    mixed = mix_at_snr(clean, noise, 10.0, np.random.default_rng(0), SR)
    added = mixed - clean
    # Wrapped: the added noise repeats with the noise's period.
    assert np.allclose(added[:1600], added[1600:3200], atol=1e-6)


def test_mixer_is_seeded_per_clip_key() -> None:
    clean = _speech_like()
    noise = synthetic_noise("white", 5.0, seed=4)
    m1 = NoiseMixer(noise, snr=6.0, seed=7)
    m2 = NoiseMixer(noise, snr=6.0, seed=7)
    a = m1(clean, "clip_a.flac")
    m1(clean, "other.flac")  # order does not matter
    assert np.array_equal(a, m2(clean, "clip_a.flac"))
    assert not np.array_equal(a, m2(clean, "clip_b.flac"))
    assert not np.array_equal(a, NoiseMixer(noise, snr=6.0, seed=8)(clean, "clip_a.flac"))


def test_pink_noise_has_falling_spectrum() -> None:
    x = synthetic_noise("pink", 4.0, seed=0).astype(np.float64)
    power = np.abs(np.fft.rfft(x)) ** 2
    freqs = np.fft.rfftfreq(x.size, 1 / SR)
    low = power[(freqs > 100) & (freqs < 200)].mean()
    high = power[(freqs > 4000) & (freqs < 4100)].mean()
    assert low / high == pytest.approx(4000 / 150 * 1.0, rel=0.5)  # 1/f: ~27x


def test_silent_inputs_raise_typed_errors() -> None:
    with pytest.raises(AudioError, match="silent"):
        NoiseMixer(np.zeros(100, np.float32), snr=0.0)
    with pytest.raises(AudioError, match="clip is silent"):
        mix_at_snr(np.zeros(SR, np.float32), np.ones(10, np.float32), 0.0, np.random.default_rng())
    with pytest.raises(AudioError, match="unknown built-in noise"):
        synthetic_noise("brown", 1.0, seed=0)
