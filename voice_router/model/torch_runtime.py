"""The PyTorch runtime: `TorchEmbeddingModel` wraps an AudioTextEmbedder as an
`EmbeddingModel` (numpy in, L2-normalised vectors out; long clips chunked), and `load_model`
turns a name, a folder or a hub id into one. `voice_router.model.loader` picks between this
runtime and the ONNX one."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from voice_router.errors import ModelError
from voice_router.model.base import embed_chunked
from voice_router.model.catalog import COMPACT_WEIGHTS, DEFAULT_WEIGHTS, NAMED
from voice_router.model.config import (
    CARD_NAME,
    CONFIG_NAME,
    SAMPLE_RATE,
    WEIGHTS_NAME,
    ModelConfig,
    named_config,
    validate_config,
)
from voice_router.model.embedder import AudioTextEmbedder, load_embedder
from voice_router.model.routing_defaults import (
    ROUTING_NAME,
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
# Named models


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


_NAMED = NAMED


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not s.startswith((".", "~"))
        and "\\" not in s
        and all(c.isalnum() or c in "-_." for c in s.replace("/", ""))
    )


def load_model(name_or_path: str = "default") -> TorchEmbeddingModel:
    """Load an EmbeddingModel by name, folder or hub id.

    "default": the bundled model (voice_router/weights/whisper_tiny/);
    "compact": the first release's model (voice_router/weights/compact/);
    "tiny": the tiny random test config (deterministic; nothing loaded);
    a local folder with config.json + model.safetensors;
    otherwise, if it looks like "owner/name", a Hugging Face hub snapshot of such a folder
    (only ever tried for strings that are neither a known name nor an existing path).
    """
    s = str(name_or_path)
    if s == "default":
        if not (DEFAULT_WEIGHTS / WEIGHTS_NAME).is_file():
            raise ModelError(
                f"the bundled model weights are missing ({DEFAULT_WEIGHTS / WEIGHTS_NAME}"
                " not found). Train them with `python -m training` (see training/README.md), "
                "which saves that folder, or pass --model PATH to a saved model folder, or "
                "--model tiny for a random test model"
            )
        return _from_folder(DEFAULT_WEIGHTS, "default")
    if s == "compact":
        return _from_folder(COMPACT_WEIGHTS, "compact")
    if s == "tiny":
        return TorchEmbeddingModel(AudioTextEmbedder(named_config("tiny")), name="tiny")
    path = Path(s).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{s} is a file; pass the model folder that contains {CONFIG_NAME}")
        return _from_folder(path, path.name)
    if not _looks_like_hub_id(s):
        raise ModelError(
            f"no model named {s!r} and no such folder; known names: "
            f"{', '.join(_NAMED)} (or a folder with {CONFIG_NAME} + {WEIGHTS_NAME})"
        )
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            s, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, ROUTING_NAME]
        )
    except Exception as e:
        raise ModelError(
            f"{s!r} is not a known model name or local folder, and downloading it from the "
            f"Hugging Face hub failed ({type(e).__name__}: {e}); check the name, your network, "
            "or pass a local folder"
        ) from e
    return _from_folder(Path(local), s)


def _from_folder(folder: Path, name: str) -> TorchEmbeddingModel:
    """The saved model in `folder`, with the fusion its routing.json names."""
    return TorchEmbeddingModel(
        load_embedder(folder),
        name=name,
        fusion=read_fusion(folder),
        decision_defaults=read_decision_defaults(folder),
    )
