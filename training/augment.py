"""Waveform augmentation for synthetic training speech (numpy/scipy; deterministic per seed).

Why: the model trains on synthetic voices and must work on real microphones and rooms. Each
augmentation stands for one way real recordings differ from clean TTS: speaking rate and vocal
tract length (speed perturbation), reverberant rooms (synthetic impulse responses), background
noise at random SNR (white, pink, brown, babble of other utterances), cheap or telephone
microphones (band-limiting), level (gain) and silence around the utterance (padding).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import soxr
from scipy import signal

SAMPLE_RATE = 16000


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of each augmentation."""

    p_speed: float = 0.8
    speed: tuple[float, float] = (0.85, 1.15)
    p_rir: float = 0.5
    rt60: tuple[float, float] = (0.1, 0.8)
    p_noise: float = 0.8
    snr_db: tuple[float, float] = (0.0, 30.0)
    p_band: float = 0.3
    gain_db: tuple[float, float] = (-25.0, 0.0)
    pad_s: tuple[float, float] = (0.05, 0.5)


def speed_perturb(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play `factor` times faster (tempo and pitch together, Kaldi-style speed perturbation)."""
    if abs(factor - 1.0) < 1e-3:
        return audio
    out_rate = int(round(SAMPLE_RATE / factor))
    return soxr.resample(audio, SAMPLE_RATE, out_rate).astype(np.float32)


def synthetic_rir(rng: np.random.Generator, rt60: float) -> np.ndarray:
    """A room impulse response: direct path, then exponentially decaying Gaussian noise whose
    energy falls 60 dB in `rt60` seconds, with a short pre-delay before the reverb tail."""
    n = int(SAMPLE_RATE * min(1.2, rt60 * 1.2)) + 1
    t = np.arange(n) / SAMPLE_RATE
    decay = np.exp(-6.9078 * t / rt60)  # amplitude: 60 dB energy drop at rt60
    tail = rng.standard_normal(n) * decay
    predelay = int(rng.uniform(0.002, 0.02) * SAMPLE_RATE)
    tail[:predelay] = 0.0
    drr = 10 ** (rng.uniform(-3.0, 12.0) / 20)  # direct-to-reverberant ratio
    tail /= np.sqrt(np.sum(tail**2)) + 1e-9
    tail[0] = drr
    return tail.astype(np.float32)


def colored_noise(rng: np.random.Generator, n: int, kind: str) -> np.ndarray:
    """Unit-RMS noise of `n` samples: "white", "pink" (1/f) or "brown" (1/f^2)."""
    white = rng.standard_normal(n)
    if kind == "white":
        out = white
    else:
        spec = np.fft.rfft(white)
        f = np.fft.rfftfreq(n)
        f[0] = f[1] if n > 1 else 1.0
        spec /= f ** (0.5 if kind == "pink" else 1.0)
        out = np.fft.irfft(spec, n)
    return (out / (np.sqrt(np.mean(out**2)) + 1e-9)).astype(np.float32)


def babble(rng: np.random.Generator, n: int, others: Sequence[np.ndarray]) -> np.ndarray:
    """Unit-RMS babble: 2-4 other utterances, looped/cropped to `n` samples, summed."""
    out = np.zeros(n, np.float32)
    k = int(rng.integers(2, 5))
    for _ in range(k):
        o = others[int(rng.integers(len(others)))]
        if o.size == 0:
            continue
        reps = int(np.ceil((n + o.size) / o.size))
        tiled = np.tile(o, reps)
        start = int(rng.integers(o.size))
        out += tiled[start : start + n] / (np.sqrt(np.mean(o**2)) + 1e-9)
    return out / (np.sqrt(np.mean(out**2)) + 1e-9)


def band_limit(rng: np.random.Generator, audio: np.ndarray) -> np.ndarray:
    """Telephone band (300-3400 Hz) or a random low-pass (3-7 kHz) / high-pass (100-400 Hz)."""
    choice = rng.random()
    if choice < 0.4:
        sos = signal.butter(4, [300, 3400], btype="bandpass", fs=SAMPLE_RATE, output="sos")
    elif choice < 0.8:
        sos = signal.butter(
            4, rng.uniform(3000, 7000), btype="lowpass", fs=SAMPLE_RATE, output="sos"
        )
    else:
        sos = signal.butter(
            2, rng.uniform(100, 400), btype="highpass", fs=SAMPLE_RATE, output="sos"
        )
    return signal.sosfilt(sos, audio).astype(np.float32)


def augment(
    audio: np.ndarray,
    rng: np.random.Generator,
    others: Sequence[np.ndarray] = (),
    cfg: AugmentConfig = AugmentConfig(),
) -> np.ndarray:
    """One random augmentation of a clean 16 kHz utterance -> float32 in [-1, 1].

    Order: speed -> silence padding -> room -> noise at random SNR (relative to the speech
    power) -> band-limit -> gain with peak limiting. `others` (other clean utterances) feed babble.
    """
    x = np.asarray(audio, np.float32)
    if rng.random() < cfg.p_speed:
        x = speed_perturb(x, float(rng.uniform(*cfg.speed)))
    speech_rms = float(np.sqrt(np.mean(x**2)) + 1e-9)
    pre = int(rng.uniform(*cfg.pad_s) * SAMPLE_RATE)
    post = int(rng.uniform(*cfg.pad_s) * SAMPLE_RATE)
    x = np.concatenate([np.zeros(pre, np.float32), x, np.zeros(post, np.float32)])
    if rng.random() < cfg.p_rir:
        rir = synthetic_rir(rng, float(rng.uniform(*cfg.rt60)))
        y = signal.fftconvolve(x, rir)[: x.size]
        x = (y * speech_rms / (np.sqrt(np.mean(y[pre : x.size - post] ** 2)) + 1e-9)).astype(
            np.float32
        )
    if rng.random() < cfg.p_noise:
        kinds = ["white", "pink", "brown", "babble"] if others else ["white", "pink", "brown"]
        kind = kinds[int(rng.integers(len(kinds)))]
        noise = (
            babble(rng, x.size, others) if kind == "babble" else colored_noise(rng, x.size, kind)
        )
        snr = float(rng.uniform(*cfg.snr_db))
        x = x + noise * speech_rms / (10 ** (snr / 20))
    else:
        x = x + colored_noise(rng, x.size, "white") * speech_rms * 1e-3  # mic self-noise
    if rng.random() < cfg.p_band:
        x = band_limit(rng, x)
    peak = float(np.max(np.abs(x)) + 1e-9)
    gain = 10 ** (rng.uniform(*cfg.gain_db) / 20)
    x = x * (gain * 0.95 / peak)
    return np.clip(x, -1.0, 1.0).astype(np.float32)
