"""Clip normalisation before the audio encoder: trim edge silence, centre in a noise floor.

Why: the compact model's front-end sees 775 ms windows every 80 ms and its embedding is a mean
over them, so the same word embeds differently with 0.1 s or 0.6 s of silence around it, and a
one-second clip yields only three windows, most of them cutting the word. Measured on real
speech with the untrained front-end and TTS exemplars (scripts/eval_compact.py): leaving clips
as they are, Speech Commands top-1 0.54; trimming edge silence and centring every clip in at
least 1.25 s, 0.80-0.85 (wake phrases 0.58 -> 0.99). Queries, exemplars and enrolment clips must
go through the SAME normalisation, so it belongs to the model (its config), not to callers.

The noise floor replaces digital silence: a TTS exemplar is padded with exact zeros while a
microphone never is, and the front-end's per-clip dB floor turns that into a systematic
difference. The noise is a fixed pattern (seed 0), so embeddings stay deterministic.
"""

from __future__ import annotations

import numpy as np

SAMPLE_RATE = 16000
_NOISE_SEED = 0


def trim_silence(
    audio: np.ndarray, *, threshold_db: float = -45.0, pad_s: float = 0.05, rate: int = SAMPLE_RATE
) -> np.ndarray:
    """Cut leading/trailing audio quieter than `threshold_db` below the peak, keeping `pad_s`.

    Only the edges go: quiet words inside the utterance stay, and so do quiet consonants at the
    edges thanks to the padding. 10 ms frames; all-silent or empty input comes back unchanged.
    """
    if audio.size == 0:
        return audio
    peak = float(np.max(np.abs(audio)))
    if peak <= 0.0:
        return audio
    frame = max(1, rate // 100)  # 10 ms frames
    n = audio.size // frame
    if n == 0:
        return audio
    rms = np.sqrt(np.mean(audio[: n * frame].reshape(n, frame) ** 2, axis=1) + 1e-12)  # (n,)
    loud = np.nonzero(20 * np.log10(rms / peak + 1e-12) > threshold_db)[0]
    if loud.size == 0:
        return audio
    pad = int(pad_s * rate)
    start = max(0, loud[0] * frame - pad)
    end = min(audio.size, (loud[-1] + 1) * frame + pad)
    return audio[start:end]


def center_pad(audio: np.ndarray, min_seconds: float, rate: int = SAMPLE_RATE) -> np.ndarray:
    """Centre `audio` in zeros so it lasts at least `min_seconds` (longer clips: unchanged)."""
    n = int(round(min_seconds * rate))
    if audio.size >= n:
        return audio
    out = np.zeros(n, dtype=np.float32)
    start = (n - audio.size) // 2
    out[start : start + audio.size] = audio
    return out


class ClipNormalizer:
    """Trim edge silence, centre-pad to a minimum length, add a fixed low noise floor.

    Args:
        trim_db: edges quieter than this many dB below the clip's peak are cut; None = no trim.
        trim_pad_s: silence kept on each side of the trimmed speech.
        min_seconds: shorter clips are centred in padding to this length (0 = never pad).
        noise_rms: RMS (on the [-1, 1] scale) of the noise floor added to the whole clip
            (0 = none). -70 dBFS (3e-4) sits under any real microphone's own noise.
    """

    def __init__(
        self,
        trim_db: float | None = None,
        trim_pad_s: float = 0.25,
        min_seconds: float = 0.0,
        noise_rms: float = 0.0,
    ) -> None:
        self.trim_db = trim_db
        self.trim_pad_s = float(trim_pad_s)
        self.min_seconds = float(min_seconds)
        self.noise_rms = float(noise_rms)
        self._noise = np.zeros(0, np.float32)

    @property
    def active(self) -> bool:
        """False when the normaliser leaves every clip unchanged."""
        return self.trim_db is not None or self.min_seconds > 0 or self.noise_rms > 0

    def settings(self) -> dict[str, float | None]:
        """The constructor's arguments, or {} when the normaliser changes nothing: what a
        training corpus records (prep.json) and is compared on."""
        if not self.active:
            return {}
        return {
            "trim_db": self.trim_db,
            "trim_pad_s": self.trim_pad_s,
            "min_seconds": self.min_seconds,
            "noise_rms": self.noise_rms,
        }

    def _noise_for(self, n: int) -> np.ndarray:
        """The first `n` samples of the fixed noise pattern (grown on demand, then reused)."""
        if self._noise.size < n:
            rng = np.random.default_rng(_NOISE_SEED)
            size = max(n, 2 * self._noise.size, 20 * SAMPLE_RATE)
            self._noise = (rng.standard_normal(size) * self.noise_rms).astype(np.float32)
        return self._noise[:n]

    def __call__(self, audio: np.ndarray) -> np.ndarray:
        """One mono 16 kHz float32 clip -> the normalised clip (a new array when changed)."""
        a = np.asarray(audio, np.float32)
        if self.trim_db is not None:
            a = trim_silence(a, threshold_db=self.trim_db, pad_s=self.trim_pad_s)
        if self.min_seconds > 0:
            a = center_pad(a, self.min_seconds)
        if self.noise_rms > 0:
            a = a + self._noise_for(a.size)
        return a
