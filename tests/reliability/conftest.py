"""Fixtures for the reliability suite: a real speech clip and helpers that write audio variants.

The variants (bit depths, rates, channel counts, damaged copies) are made from one real recording,
`tests/data/audio/on_022cd682.flac` ("on", Speech Commands v0.02), so each test decodes real
speech, not only synthetic tones.
"""

from __future__ import annotations

import io
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile as sf

AUDIO_DATA = Path(__file__).resolve().parent.parent / "data" / "audio"
REAL_CLIP = AUDIO_DATA / "on_022cd682.flac"
REAL_MP3_ID3 = AUDIO_DATA / "on_id3.mp3"


@pytest.fixture(scope="session")
def real_clip_path() -> Path:
    """A real 1 s, 16 kHz, 16-bit FLAC of a person saying "on"."""
    return REAL_CLIP


@pytest.fixture(scope="session")
def real_mp3_path() -> Path:
    """The same clip as MP3 with ID3v2 and ID3v1 tags (made by make_audio_fixtures.py)."""
    return REAL_MP3_ID3


@pytest.fixture(scope="session")
def real_clip_bytes() -> bytes:
    """The encoded bytes of the real FLAC clip."""
    return REAL_CLIP.read_bytes()


@pytest.fixture(scope="session")
def real_audio() -> np.ndarray:
    """The real clip as float64 samples at 16 kHz, straight from soundfile (the reference)."""
    audio, rate = sf.read(REAL_CLIP, dtype="float64")
    assert rate == 16000
    return audio


def encode(audio: np.ndarray, rate: int, fmt: str = "WAV", subtype: str | None = None) -> bytes:
    """Encode samples ((n,) or (n, channels)) to the bytes of an audio file."""
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format=fmt, subtype=subtype)
    return buf.getvalue()


def sine(seconds: float, rate: int, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    """(n,) float64 sine wave."""
    t = np.arange(int(round(seconds * rate))) / rate
    return amp * np.sin(2 * np.pi * freq * t)


def dominant_hz(audio: np.ndarray, rate: int) -> float:
    """Frequency of the largest FFT bin (Hann-windowed)."""
    spec = np.abs(np.fft.rfft(audio * np.hanning(audio.size)))
    return float(np.argmax(spec) * rate / audio.size)


def best_correlation(a: np.ndarray, b: np.ndarray, max_lag: int = 2000) -> float:
    """Highest normalised correlation of a and b over lags in [-max_lag, max_lag]."""
    n = min(a.size, b.size)
    a, b = a[:n] - a[:n].mean(), b[:n] - b[:n].mean()
    full = np.correlate(a, b, mode="full")  # (2n - 1,)
    mid = n - 1
    window = full[max(0, mid - max_lag) : mid + max_lag + 1]
    return float(window.max() / (np.linalg.norm(a) * np.linalg.norm(b)))


@pytest.fixture(scope="session")
def kit() -> SimpleNamespace:
    """The helpers above, as a fixture (test modules here are not importable packages)."""
    return SimpleNamespace(
        encode=encode, sine=sine, dominant_hz=dominant_hz, best_correlation=best_correlation
    )


@pytest.fixture(autouse=True)
def _no_speech_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plumbing under stress with fake models and synthetic signals: the speech gate is off
    (tests/integration runs it on real recordings)."""
    monkeypatch.setenv("VOICE_ROUTER_SPEECH_GATE", "0")
