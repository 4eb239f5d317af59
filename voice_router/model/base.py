"""The embedding-model interface every router component is written against.

The tiny test model, the bundled compact model and a large module-combination checkpoint all
implement it, so the index, router, CLI and training code never care which one is loaded.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
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
        max_seconds: the longest clip embedded in one pass. Longer clips are cut and pooled by
            `embed_chunked` (both runtimes' `embed_audio` do; `embed_audio_pooled` does it for
            any model).
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


def pool_pieces(vecs: np.ndarray, owner: Sequence[int], n: int) -> np.ndarray:
    """Piece embeddings (P, D) -> one L2-normalised row per clip (n, D).

    `owner[j]` is the clip piece j was cut from. Each clip's piece vectors are summed and
    re-normalised, which is their mean re-normalised: every part of a long clip counts alike
    (the pieces are near-equal, see `voice_router.audio.io.chunk_audio`)."""
    vecs = np.asarray(vecs, dtype=np.float32)  # (P, D)
    out = np.zeros((n, vecs.shape[1]), np.float32)  # (n, D)
    np.add.at(out, np.asarray(owner, dtype=np.intp), vecs)  # sum of piece vectors per clip
    return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def embed_chunked(
    embed_pieces: Callable[[list[np.ndarray]], np.ndarray],
    audios: Sequence[np.ndarray],
    max_seconds: float,
    sample_rate: int,
    dim: int,
) -> np.ndarray:
    """The one long-clip rule: clips -> (N, D) float32, rows L2-normalised.

    Each clip is checked (`check_audio`), cut into near-equal pieces no longer than
    `max_seconds` (`voice_router.audio.io.chunk_audio`; a clip that fits is one piece),
    `embed_pieces(pieces) -> (P, D)` embeds every piece in one pass, and `pool_pieces` averages
    each clip's pieces. Both runtimes' `embed_audio` and `embed_audio_pooled` (for models that
    do not chunk) go through here, so a long clip embeds the same wherever it is embedded.
    """
    from voice_router.audio.io import chunk_audio  # soundfile/soxr load only when audio is used

    if len(audios) == 0:
        return np.zeros((0, dim), np.float32)
    pieces: list[np.ndarray] = []
    owner: list[int] = []
    for i, a in enumerate(audios):
        for p in chunk_audio(check_audio(i, a), max_seconds, sample_rate):
            pieces.append(p)
            owner.append(i)
    return pool_pieces(embed_pieces(pieces), owner, len(audios))  # (N, D)


def embed_audio_pooled(model: EmbeddingModel, audio: np.ndarray) -> np.ndarray:
    """Embed one clip of any length with any `EmbeddingModel` -> (D,): clips longer than
    `model.max_seconds` are cut, embedded and pooled by `embed_chunked` (a model whose own
    `embed_audio` already does so gets the same vector)."""
    m = model
    return embed_chunked(m.embed_audio, [audio], m.max_seconds, m.sample_rate, m.dim)[0]  # (D,)


def embed_audio_with_frames(
    model: EmbeddingModel, audio: np.ndarray
) -> tuple[np.ndarray, np.ndarray | None]:
    """(embedding (D,), speech-encoder frames (T', Da) or None) of one clip: the frames when the
    model can give them from the same pass (the ONNX Whisper-tower models), else None."""
    get = getattr(model, "embed_audio_frames", None)
    if get is None:
        return embed_audio_pooled(model, audio), None
    return get(audio)
