"""The embedding-model interface every router component is written against.

The tiny test model, the bundled compact model and a large module-combination checkpoint all
implement it, so the index, router, CLI and training code never care which one is loaded.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, runtime_checkable

import numpy as np


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
