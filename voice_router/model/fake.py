"""A deterministic, dependency-free fake model for unit tests of the index, router and CLI.

Texts embed by hashing their lower-cased words into D buckets (so identical texts match exactly
and texts sharing words are close); audio embeds by hashing coarse energy statistics. It is not
a speech model: use it only where the test is about plumbing, never about accuracy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _unit(v: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(v, axis=-1, keepdims=True)
    return (v / np.maximum(n, 1e-12)).astype(np.float32)


class HashEmbeddingModel:
    """Bag-of-hashed-words text embeddings; audio keyed by a text registered for it.

    `register_audio(array, text)` makes that exact array embed like `text`, which lets a test
    say "this clip means 'lights on'" without a trained model.
    """

    sample_rate = 16000

    def __init__(self, dim: int = 32, max_seconds: float = 30.0, seed: int = 0) -> None:
        self.name = f"hash-{dim}"
        self.dim = dim
        self.max_seconds = max_seconds
        self.fingerprint = hashlib.sha256(f"hash:{dim}:{seed}".encode()).hexdigest()[:16]
        self._seed = seed
        self._audio_texts: dict[str, str] = {}

    def _word_vec(self, word: str) -> np.ndarray:
        h = hashlib.sha256(f"{self._seed}:{word}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(h[:8], "little"))
        return rng.standard_normal(self.dim)

    def _text_vec(self, text: str) -> np.ndarray:
        words = text.lower().split() or [""]
        return np.sum([self._word_vec(w) for w in words], axis=0)

    @staticmethod
    def _key(audio: np.ndarray) -> str:
        return hashlib.sha256(np.ascontiguousarray(audio, dtype=np.float32).tobytes()).hexdigest()

    def register_audio(self, audio: np.ndarray, text: str) -> None:
        """Make `audio` embed exactly like `text`."""
        self._audio_texts[self._key(audio)] = text

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return _unit(np.stack([self._text_vec(t) for t in texts]))  # (N, D)

    def embed_audio(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        rows = []
        for a in audios:
            text = self._audio_texts.get(self._key(a))
            if text is not None:
                rows.append(self._text_vec(text))
            else:
                a = np.asarray(a, dtype=np.float32)
                seed = int(np.round(np.sqrt(np.mean(a**2)) * 1000)) if a.size else 0
                rows.append(np.random.default_rng(seed).standard_normal(self.dim))
        if not rows:
            return np.zeros((0, self.dim), np.float32)
        return _unit(np.stack(rows))  # (N, D)
