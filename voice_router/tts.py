"""Exemplar synthesis: speak a route's text with many synthetic voices.

Why: a route's own text, spoken by several synthetic voices and embedded by the audio encoder,
is the strongest routing signal measured for the compact model (see DESIGN.md). The router
stores those embeddings as extra "audio" points of each route. Synthesis uses the espeak-ng
binary (Debian package `espeak-ng`; optional: callers check `tts_available()` first).

The text is passed to espeak-ng as one argv element (never through a shell); a text that
starts with "-" is prefixed with a space so espeak-ng cannot read it as an option.
"""

from __future__ import annotations

import io
import shutil
import subprocess
from dataclasses import dataclass

import numpy as np

from voice_router.audio.prep import center_pad, trim_silence
from voice_router.errors import ModelError

SAMPLE_RATE = 16000

__all__ = [
    "ESPEAK_ACCENTS",
    "ESPEAK_VARIANTS",
    "ExemplarVoice",
    "center_pad",
    "default_exemplar_voices",
    "synthesize",
    "trim_silence",
    "tts_available",
]

#: English espeak-ng accents, the most natural first.
ESPEAK_ACCENTS: tuple[str, ...] = (
    "en-us",
    "en-gb",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-us-nyc",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
)
#: espeak-ng voice variants (male and female timbres) used for exemplars.
ESPEAK_VARIANTS: tuple[str, ...] = (
    "m1",
    "f1",
    "m3",
    "f2",
    "m2",
    "f3",
    "m4",
    "f4",
    "m5",
    "m6",
    "m7",
)

_TIMEOUT_S = 20.0


@dataclass(frozen=True)
class ExemplarVoice:
    """One synthetic voice: engine, voice (accent[+variant]), rate (words/min), pitch (0-99)."""

    engine: str = "espeak-ng"
    voice: str = "en-us"
    rate: int = 170
    pitch: int = 50

    @property
    def key(self) -> str:
        """A stable string id of this voice (used in cache keys and index payloads)."""
        return f"{self.engine}:{self.voice}:{self.rate}:{self.pitch}"


def tts_available() -> bool:
    """True when the espeak-ng binary is on PATH (exemplar synthesis is possible)."""
    return shutil.which("espeak-ng") is not None


def default_exemplar_voices(n: int = 12) -> list[ExemplarVoice]:
    """`n` deterministic, diverse espeak-ng voices for route exemplars.

    Cycles accents and variants together so consecutive voices differ in both, and spreads
    rate (140-200) and pitch (35-70) so the set covers slow/fast and low/high speakers.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    rates = (165, 145, 185, 155, 200, 175, 140, 190)
    pitches = (50, 40, 65, 45, 70, 35, 55, 60)
    voices: list[ExemplarVoice] = []
    for i in range(n):
        accent = ESPEAK_ACCENTS[i % len(ESPEAK_ACCENTS)]
        variant = ESPEAK_VARIANTS[(i * 3 + i // len(ESPEAK_ACCENTS)) % len(ESPEAK_VARIANTS)]
        voices.append(
            ExemplarVoice(
                engine="espeak-ng",
                voice=f"{accent}+{variant}",
                rate=rates[i % len(rates)],
                pitch=pitches[(i * 5) % len(pitches)],
            )
        )
    return voices


def _decode_wav(data: bytes, target_rate: int) -> np.ndarray:
    """Decode WAV bytes to mono float32 at `target_rate` (soundfile + soxr)."""
    import soundfile as sf
    import soxr

    audio, rate = sf.read(io.BytesIO(data), dtype="float32", always_2d=True)  # (S, C)
    audio = audio.mean(axis=1)  # (S,)
    if rate != target_rate:
        audio = soxr.resample(audio, rate, target_rate).astype(np.float32)
    return np.ascontiguousarray(audio, dtype=np.float32)


def synthesize(
    text: str, voice: ExemplarVoice | None = None, *, min_seconds: float = 1.0
) -> np.ndarray:
    """Speak `text` with `voice` (espeak-ng) -> 1-D float32 at 16 kHz.

    Edge silence is trimmed, then the clip is centred in silence to last at least
    `min_seconds`. Why 1 s: the front-end sees 775 ms windows, and a trimmed one-word exemplar
    (~0.4 s) yields a single, edge-padded frame that matches real recordings of the same word
    poorly; centred in 1 s it matched twice as often (Speech Commands exemplar top-1 0.27 ->
    0.50 with an early compact checkpoint, training/compact.py). Pass 0 for the bare speech.

    Raises:
        ModelError: espeak-ng is not installed, fails, or produced no audio.
        ValueError: `text` is empty or the voice's engine is not espeak-ng.
    """
    voice = voice or ExemplarVoice()
    if voice.engine != "espeak-ng":
        raise ValueError(f"unsupported TTS engine {voice.engine!r}: only 'espeak-ng' is built in")
    text = " ".join(str(text).split())
    if not text:
        raise ValueError("cannot synthesize empty text")
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise ModelError(
            "espeak-ng is not installed, so route exemplars cannot be synthesized: "
            "install it (Debian/Ubuntu: `apt-get install espeak-ng`) or disable audio exemplars"
        )
    if text.startswith("-"):
        text = " " + text  # never parsed as an option
    cmd = [
        exe,
        "-v",
        voice.voice,
        "-s",
        str(int(voice.rate)),
        "-p",
        str(int(voice.pitch)),
        "--stdout",
        text,
    ]
    try:
        proc = subprocess.run(cmd, capture_output=True, timeout=_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ModelError(f"espeak-ng failed to run for voice {voice.voice!r}: {e}") from e
    if proc.returncode != 0 or len(proc.stdout) < 64:
        err = proc.stderr.decode("utf-8", "replace").strip()
        raise ModelError(
            f"espeak-ng produced no audio for voice {voice.voice!r} (exit {proc.returncode}"
            f"{': ' + err if err else ''}); check the voice name with `espeak-ng --voices=en`"
        )
    audio = _decode_wav(proc.stdout, SAMPLE_RATE)
    audio = trim_silence(audio)
    if audio.size == 0 or not np.any(audio):
        raise ModelError(f"espeak-ng produced silent audio for {text!r} with {voice.voice!r}")
    return center_pad(audio, min_seconds) if min_seconds > 0 else audio
