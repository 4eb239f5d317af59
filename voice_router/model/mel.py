"""Whisper's log-mel front-end in NumPy: what the torch-free runtime feeds the audio graph.

The same computation as `voice_router.model.whisper.LogMel` (which training and the PyTorch
path use), one clip at a time: 25 ms periodic Hann window, 10 ms hop, reflect padding at the
clip's edges (centre=True), power spectrum, Slaney mel bank, log10, floor at the clip's own
max - 8, then (x + 4) / 4. Whisper drops the last STFT frame, so 16 kHz audio of S samples
gives S // 160 frames. `tests/unit/model/test_mel.py` checks both against each other.
"""

from __future__ import annotations

import functools
import math

import numpy as np

SAMPLE_RATE = 16000
N_FFT = 400
HOP = 160


def mel_filters(n_mels: int = 80, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT) -> np.ndarray:
    """Slaney-scale, Slaney-normalised triangular mel bank (librosa's default, which Whisper's
    `mel_filters.npz` was made with): (n_mels, n_fft // 2 + 1) float32."""
    n_freqs = n_fft // 2 + 1
    fft_freqs = np.linspace(0.0, sample_rate / 2, n_freqs)
    # Slaney's scale: linear below 1 kHz (200/3 Hz per mel), logarithmic above
    f_sp, min_log_hz, logstep = 200.0 / 3, 1000.0, math.log(6.4) / 27.0
    min_log_mel = min_log_hz / f_sp

    def hz_to_mel(f: np.ndarray) -> np.ndarray:
        f = np.asarray(f, np.float64)
        log_part = min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep
        return np.where(f >= min_log_hz, log_part, f / f_sp)

    def mel_to_hz(m: np.ndarray) -> np.ndarray:
        return np.where(
            m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m
        )

    mel_pts = np.linspace(hz_to_mel(0.0), hz_to_mel(sample_rate / 2), n_mels + 2)
    hz_pts = mel_to_hz(mel_pts)  # (n_mels + 2,)
    fdiff = np.diff(hz_pts)  # (n_mels + 1,)
    ramps = hz_pts[:, None] - fft_freqs[None, :]  # (n_mels + 2, F)
    lower = -ramps[:-2] / fdiff[:-1, None]
    upper = ramps[2:] / fdiff[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))  # (n_mels, F)
    weights *= (2.0 / (hz_pts[2:] - hz_pts[:-2]))[:, None]  # Slaney area normalisation
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=4)
def _bank(n_mels: int) -> np.ndarray:
    return mel_filters(n_mels).astype(np.float64)  # (n_mels, F)


@functools.lru_cache(maxsize=1)
def _window() -> np.ndarray:
    n = np.arange(N_FFT)
    return 0.5 - 0.5 * np.cos(2 * np.pi * n / N_FFT)  # periodic Hann, like torch.hann_window


def log_mel_np(audio: np.ndarray, n_mels: int = 80) -> np.ndarray:
    """One 16 kHz mono float32 clip -> Whisper log-mel (n_mels, S // 160) float32."""
    a = np.asarray(audio, np.float64).reshape(-1)
    half = N_FFT // 2
    if a.size < half + 1:  # the torch path zero-pads short clips to one window the same way
        a = np.pad(a, (0, half + 1 - a.size))
    frames = max(1, len(audio) // HOP)
    x = np.pad(a, (half, half), mode="reflect")  # (S' + 400,)
    n = 1 + (x.size - N_FFT) // HOP
    idx = np.arange(N_FFT)[None, :] + HOP * np.arange(n)[:, None]  # (n, 400)
    spec = np.fft.rfft(x[idx] * _window(), axis=1)  # (n, F)
    power = (spec.real**2 + spec.imag**2)[:frames].T  # (F, T): the last frame dropped
    log = np.log10(np.maximum(_bank(n_mels) @ power, 1e-10))  # (n_mels, T)
    log = np.maximum(log, log.max() - 8.0)
    return ((log + 4.0) / 4.0).astype(np.float32)
