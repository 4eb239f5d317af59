"""The embedding-model interface every router component is written against.

The tiny test model, the bundled compact model and a large module-combination checkpoint all
implement it, so the index, router, CLI and training code never care which one is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from voice_router.errors import AudioError


@runtime_checkable
class EmbeddingModel(Protocol):
    """Embeds audio and text into one L2-normalised space.

    Attributes:
        name: human-readable model name.
        dim: embedding dimension D.
        sample_rate: the rate `embed_audio` expects (16000 for every model here).
        max_seconds: the longest clip embedded in one pass; callers chunk longer audio.
        fingerprint: a short hex string that changes whenever the weights or config change;
            the index keys stored vectors by it so vectors of different models never mix.

    Optional (read with getattr; a model without it is still an EmbeddingModel):
        fusion: the fusion spec the router uses for this model when none is given
            (`voice_router.decision.Fusion.parse`; a folder's routing.json), or None.
    """

    name: str
    dim: int
    sample_rate: int
    max_seconds: float
    fingerprint: str

    def embed_audio(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """Embed mono float32 clips at `sample_rate` -> (N, D) float32, rows L2-normalised."""
        ...

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Embed strings -> (N, D) float32, rows L2-normalised."""
        ...


def check_audio(i: int, a: np.ndarray) -> np.ndarray:
    """Audio #i as float32 samples in [-1, 1], or AudioError saying what is wrong with it."""
    a = np.asarray(a)
    if a.ndim != 1:
        raise AudioError(
            f"audio #{i} has shape {a.shape}; expected 1-D mono samples "
            "(load it with voice_router.audio.io.load_audio)"
        )
    if a.size == 0:
        raise AudioError(f"audio #{i} has no samples; record or pass a non-empty clip")
    if np.issubdtype(a.dtype, np.integer):  # PCM integers -> [-1, 1]
        info = np.iinfo(a.dtype)
        a = (a.astype(np.float64) - (info.max + info.min + 1) / 2) / ((info.max - info.min + 1) / 2)
    elif not np.issubdtype(a.dtype, np.floating):
        raise AudioError(f"audio #{i} has dtype {a.dtype}; expected float32 samples in [-1, 1]")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise AudioError(f"audio #{i} contains NaN or Inf samples; check the source")
    return a


def embed_audio_pooled(model: EmbeddingModel, audio: np.ndarray) -> np.ndarray:
    """Embed one clip of any length -> (D,): clips longer than `model.max_seconds` are cut into
    chunks, each embedded, then mean-pooled and re-normalised."""
    limit = int(model.max_seconds * model.sample_rate)
    if audio.shape[0] <= limit:
        return np.asarray(model.embed_audio([audio])[0], dtype=np.float32)  # (D,)
    from voice_router.audio.io import chunk_audio

    pieces = chunk_audio(audio, model.max_seconds, model.sample_rate)
    embs = np.asarray(model.embed_audio(pieces), dtype=np.float32)  # (C, D)
    v = embs.mean(axis=0)  # (D,)
    return (v / max(float(np.linalg.norm(v)), 1e-12)).astype(np.float32)


def embed_audio_with_frames(
    model: EmbeddingModel, audio: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """(embedding (D,), speech-encoder frames (T', Da) or None) of one clip: the frames when the
    model can give them from the same pass (the ONNX Whisper-tower models), else None."""
    get = getattr(model, "embed_audio_frames", None)
    if get is None:
        return embed_audio_pooled(model, audio), None
    return get(audio)
