"""Mix background noise into clean speech at a chosen signal-to-noise ratio.

Used by `voice-router eval --noise FILE --snr DB` to measure how routing holds up in a noisy room.

SNR convention (what "6 dB" means here): the signal level is the clean clip's MAXIMUM FRAME
ENERGY (mean square over non-overlapping 20 ms frames), not its average, so the silence that pads
short commands (a one-word Speech Commands clip is mostly silence) does not make the noise look
quieter than it sounds during the word. The noise level is the mean square of the noise segment
actually added. So::

    snr_db = 10 * log10(max_frame_energy(clean) / mean(scaled_noise ** 2))

The noise segment starts at a random offset (seeded per clip, so a run is reproducible and does
not depend on the order or number of clips) and wraps around when the noise is shorter than the
clip. If the mixture would clip (|x| > 1), clean and noise are scaled down together, which keeps
the SNR exactly.
"""

from __future__ import annotations

import zlib

import numpy as np

from voice_router.errors import AudioError

FRAME_SECONDS = 0.02
"""Frame length for the signal level (20 ms; 320 samples at 16 kHz)."""

BUILTIN_NOISES = ("white", "pink")
"""Names `--noise` accepts instead of a file: seeded synthetic noise, no file needed."""


def max_frame_energy(audio: np.ndarray, sample_rate: int = 16000) -> float:
    """Largest mean-square energy over non-overlapping 20 ms frames of `audio`.

    A clip shorter than one frame is treated as a single frame.
    """
    x = np.asarray(audio, dtype=np.float64).reshape(-1)
    if x.size == 0:
        return 0.0
    frame = max(1, int(round(FRAME_SECONDS * sample_rate)))
    if x.size < frame:
        return float(np.mean(x**2))
    n_frames = x.size // frame
    frames = x[: n_frames * frame].reshape(n_frames, frame)  # (F, frame)
    return float(np.max(np.mean(frames**2, axis=1)))


def snr_db(clean: np.ndarray, noise_part: np.ndarray, sample_rate: int = 16000) -> float:
    """The SNR of `clean` over an added `noise_part` under this module's convention (dB)."""
    p_noise = float(np.mean(np.asarray(noise_part, dtype=np.float64) ** 2))
    return 10.0 * float(np.log10(max_frame_energy(clean, sample_rate) / p_noise))


def noise_segment(noise: np.ndarray, length: int, rng: np.random.Generator) -> np.ndarray:
    """`length` samples of `noise` from a random start, wrapping around at its end."""
    noise = np.asarray(noise, dtype=np.float32).reshape(-1)
    if noise.size == 0:
        raise AudioError("the noise signal is empty: pass a noise file with audio in it")
    start = int(rng.integers(0, noise.size))
    return np.take(noise, start + np.arange(length), mode="wrap")  # (length,)


def mix_at_snr(
    clean: np.ndarray,
    noise: np.ndarray,
    snr: float,
    rng: np.random.Generator,
    sample_rate: int = 16000,
) -> np.ndarray:
    """Add `noise` (random offset from `rng`) to `clean` so that the SNR is `snr` dB.

    Args:
        clean: 1-D float32 speech in [-1, 1].
        noise: 1-D float32 noise at the same rate, any length (wraps around if short).
        snr: target signal-to-noise ratio in dB (signal = max frame energy, see module doc).
        rng: source of the random offset.
        sample_rate: rate of both signals (for the 20 ms frame length).

    Returns:
        1-D float32 mixture, same length as `clean`, peak <= 1.

    Raises:
        AudioError: the clean clip or the noise is silent, so no SNR can be set.
    """
    clean = np.asarray(clean, dtype=np.float32).reshape(-1)
    seg = noise_segment(noise, clean.size, rng).astype(np.float64)
    p_signal = max_frame_energy(clean, sample_rate)
    p_noise = float(np.mean(seg**2))
    if p_signal <= 0.0:
        raise AudioError("the clip is silent, so noise cannot be mixed in at a given SNR")
    if p_noise <= 0.0:
        raise AudioError(
            "the noise segment is silent: pass a noise file that is not digital silence"
        )
    gain = np.sqrt(p_signal / (p_noise * 10.0 ** (snr / 10.0)))
    mixed = clean.astype(np.float64) + gain * seg
    peak = float(np.max(np.abs(mixed)))
    if peak > 1.0:
        mixed /= peak  # scale speech and noise together: the SNR is unchanged
    return mixed.astype(np.float32)


def synthetic_noise(kind: str, seconds: float, seed: int, sample_rate: int = 16000) -> np.ndarray:
    """Seeded white or pink (1/f power) noise, peak-normalised to 0.5.

    Lets `--noise white` / `--noise pink` test robustness with no noise file at hand.
    """
    rng = np.random.default_rng(seed)
    n = max(1, int(seconds * sample_rate))
    x = rng.standard_normal(n)
    if kind == "pink":
        spec = np.fft.rfft(x)  # (n//2+1,)
        f = np.arange(spec.size, dtype=np.float64)
        f[0] = 1.0
        x = np.fft.irfft(spec / np.sqrt(f), n)  # 1/f power = 1/sqrt(f) amplitude
    elif kind != "white":
        raise AudioError(f"unknown built-in noise {kind!r}: use one of {', '.join(BUILTIN_NOISES)}")
    x = x - x.mean()
    return (0.5 * x / np.max(np.abs(x))).astype(np.float32)


class NoiseMixer:
    """Mixes one noise signal into many clips at a fixed SNR, reproducibly.

    Each clip's offset comes from a generator seeded by (seed, CRC32 of the clip's key), so the
    same clip gets the same noise whatever the order or subset of clips evaluated.
    """

    def __init__(self, noise: np.ndarray, snr: float, seed: int = 0, sample_rate: int = 16000):
        self.noise = np.asarray(noise, dtype=np.float32).reshape(-1)
        if self.noise.size == 0 or not np.any(self.noise):
            raise AudioError("the noise signal is empty or silent: pass a noise file with sound")
        self.snr = float(snr)
        self.seed = int(seed)
        self.sample_rate = sample_rate

    @classmethod
    def from_source(
        cls, source: str, snr: float, seed: int = 0, sample_rate: int = 16000
    ) -> NoiseMixer:
        """Build from a noise file path, or a built-in name ("white", "pink")."""
        if source in BUILTIN_NOISES:
            noise = synthetic_noise(source, 10.0, seed, sample_rate)
        else:
            from voice_router.audio.io import load_audio

            noise = load_audio(source, target_rate=sample_rate)
        return cls(noise, snr, seed, sample_rate)

    def __call__(self, clean: np.ndarray, key: str) -> np.ndarray:
        """`clean` plus this mixer's noise at its SNR; `key` (the clip path) seeds the offset."""
        rng = np.random.default_rng([self.seed, zlib.crc32(key.encode("utf-8"))])
        return mix_at_snr(clean, self.noise, self.snr, rng, self.sample_rate)
