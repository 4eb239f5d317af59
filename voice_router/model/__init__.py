"""Embedding models: the protocol, the fake, the speech_embedding front-end, and the
module-combination AudioTextEmbedder with its loaders.

The torch-based names are imported lazily (PEP 562), so `from voice_router.model import
HashEmbeddingModel` stays cheap for code and tests that never touch torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from voice_router.model.base import EmbeddingModel
from voice_router.model.fake import HashEmbeddingModel

if TYPE_CHECKING:
    from voice_router.model.config import ModelConfig
    from voice_router.model.embedder import AudioTextEmbedder, load_embedder, save_model
    from voice_router.model.loader import list_models, load_model
    from voice_router.model.onnx_model import OnnxEmbeddingModel
    from voice_router.model.speech_embedding import (
        SpeechEmbeddingFrontend,
        load_speech_embedding_frontend,
    )
    from voice_router.model.torch_runtime import TorchEmbeddingModel, build_embedding_model

_LAZY = {
    "AudioTextEmbedder": "voice_router.model.embedder",
    "ModelConfig": "voice_router.model.config",
    "TorchEmbeddingModel": "voice_router.model.torch_runtime",
    "build_embedding_model": "voice_router.model.torch_runtime",
    "list_models": "voice_router.model.loader",
    "load_embedder": "voice_router.model.embedder",
    "load_model": "voice_router.model.loader",
    "OnnxEmbeddingModel": "voice_router.model.onnx_model",
    "save_model": "voice_router.model.embedder",
    "SpeechEmbeddingFrontend": "voice_router.model.speech_embedding",
    "load_speech_embedding_frontend": "voice_router.model.speech_embedding",
}

__all__ = [
    "AudioTextEmbedder",
    "EmbeddingModel",
    "HashEmbeddingModel",
    "ModelConfig",
    "OnnxEmbeddingModel",
    "SpeechEmbeddingFrontend",
    "TorchEmbeddingModel",
    "build_embedding_model",
    "list_models",
    "load_embedder",
    "load_model",
    "load_speech_embedding_frontend",
    "save_model",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
