"""The PyTorch runtime: `TorchEmbeddingModel` wraps an AudioTextEmbedder as an
`EmbeddingModel` (numpy in, L2-normalised vectors out; long clips chunked), built from a saved
folder (`load_folder`) or a config (`build_embedding_model`). Which name means which folder,
hub ids, and the choice between this runtime and the ONNX one are
`voice_router.model.loader.load_model`'s."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voice_router.errors import ModelError
from voice_router.model.base import embed_chunked
from voice_router.model.config import (
    SAMPLE_RATE,
    ModelConfig,
    named_config,
    validate_config,
)
from voice_router.model.embedder import AudioTextEmbedder, load_embedder
from voice_router.model.routing_defaults import (
    read_decision_defaults,
    read_fusion,
)

# =============================================================================================
# EmbeddingModel wrapper


class TorchEmbeddingModel:
    """EmbeddingModel over an AudioTextEmbedder: numpy in/out, batching, long-audio chunking.

    Audio longer than `max_seconds` is cut and pooled by `voice_router.model.base.embed_chunked`
    (one vector per input clip), as in `OnnxEmbeddingModel`.
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        embedder: AudioTextEmbedder,
        name: str | None = None,
        batch_size: int = 16,
        fusion: str | None = None,
        decision_defaults: dict[str, float] | None = None,
    ) -> None:
        self.embedder = embedder.eval()
        self.fusion = fusion  # the folder's routing default (routing_defaults), None = router's
        self.decision_defaults = dict(decision_defaults or {})  # threshold / margin, if given
        self.name = name or embedder.config.name
        self.dim = int(embedder.dim)
        self.max_seconds = float(embedder.config.max_seconds)
        self.batch_size = batch_size
        self.fingerprint = embedder.fingerprint()

    def __repr__(self) -> str:
        return f"TorchEmbeddingModel(name={self.name!r}, dim={self.dim}, fp={self.fingerprint})"

    def embed_audio(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """Mono float32 16 kHz clips -> (N, D) float32, rows L2-normalised (long clips cut and
        pooled by `embed_chunked`)."""
        return embed_chunked(
            self._embed_pieces, audios, self.max_seconds, self.sample_rate, self.dim
        )

    def _embed_pieces(self, pieces: list[np.ndarray]) -> np.ndarray:
        """Checked pieces no longer than `max_seconds` -> (P, D), batched by similar length."""
        order = sorted(range(len(pieces)), key=lambda j: len(pieces[j]))  # similar lengths
        vecs = torch.zeros(len(pieces), self.dim)  # (P, D)
        with torch.inference_mode():
            for s in range(0, len(order), self.batch_size):
                idx = order[s : s + self.batch_size]
                vecs[idx] = self.embedder.encode_audio([pieces[j] for j in idx]).float().cpu()
        return vecs.numpy()

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> (N, D) float32, rows L2-normalised."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ModelError(f"text #{i} is {type(t).__name__}, expected str")
        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                out.append(self.embedder.encode_text(list(texts[s : s + self.batch_size])).cpu())
        return torch.cat(out).float().numpy()


# =============================================================================================
# Construction


def build_embedding_model(
    name_or_config: str | ModelConfig | dict[str, Any],
) -> TorchEmbeddingModel:
    """A TorchEmbeddingModel built from a named config or config dict with INITIAL weights
    (our parts from the seed; pretrained parts from their packages). For tests/benchmarks."""
    cfg = (
        named_config(name_or_config)
        if isinstance(name_or_config, str)
        else validate_config(name_or_config)
    )
    return TorchEmbeddingModel(AudioTextEmbedder(cfg).eval())


def load_folder(folder: str | Path, name: str) -> TorchEmbeddingModel:
    """The saved model in `folder` (config.json + model.safetensors), with the fusion and
    decision defaults its routing.json names. Names, hub ids and the runtime choice are
    `voice_router.model.loader.load_model`'s."""
    folder = Path(folder)
    return TorchEmbeddingModel(
        load_embedder(folder),
        name=name,
        fusion=read_fusion(folder),
        decision_defaults=read_decision_defaults(folder),
    )
