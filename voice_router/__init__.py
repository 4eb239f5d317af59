"""voice-router: route spoken commands to LangChain tools by audio-text embedding similarity,
without transcription.

    from voice_router import VoiceRouter
    router = VoiceRouter("routes/home.yaml", tools=[lights_on, set_timer])
    match = router.route("kitchen.wav")      # RouteMatch(route="lights_on", score=..., ...)

Names are imported lazily (PEP 562), so `import voice_router` stays light: torch, Qdrant and
LangChain load only when the part that needs them is first used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS: dict[str, str] = {
    # audio
    "load_audio": "voice_router.audio.io",
    "chunk_audio": "voice_router.audio.io",
    "AudioInput": "voice_router.audio.io",
    # routes
    "load_routes": "voice_router.routes",
    "parse_routes": "voice_router.routes",
    "dump_routes": "voice_router.routes",
    "Route": "voice_router.routes",
    "RouteSet": "voice_router.routes",
    # model
    "load_model": "voice_router.model.loader",
    "list_models": "voice_router.model.loader",
    "EmbeddingModel": "voice_router.model.base",
    "HashEmbeddingModel": "voice_router.model.fake",
    # index, router, dispatch, library, LangChain adapter
    "RouteIndex": "voice_router.index",
    "EdgeBackend": "voice_router.store",
    "ClientBackend": "voice_router.store",
    "VectorBackend": "voice_router.store",
    "VoiceRouter": "voice_router.runnable",
    "Router": "voice_router.routing",
    "RouteMatch": "voice_router.routing",
    "Fusion": "voice_router.decision",
    "ToolRegistry": "voice_router.dispatch",
    "AudioLibrary": "voice_router.library",
    "VoiceRouterEmbeddings": "voice_router.embeddings",
    # live listening (the pipeline itself: `from voice_router.listen import listen, alisten`;
    # a top-level `listen` would be shadowed by the submodule of the same name)
    "MicrophoneSource": "voice_router.audio.capture",
    "FileSource": "voice_router.audio.capture",
    "ArraySource": "voice_router.audio.capture",
    # errors
    "VoiceRouterError": "voice_router.errors",
    "AudioError": "voice_router.errors",
    "RoutesError": "voice_router.errors",
    "ModelError": "voice_router.errors",
    "ManifestError": "voice_router.errors",
    "IndexStoreError": "voice_router.errors",
    "ToolError": "voice_router.errors",
    "ToolImportBlocked": "voice_router.errors",
    "DeviceError": "voice_router.errors",
}

__all__ = [
    "ArraySource",
    "AudioError",
    "AudioInput",
    "AudioLibrary",
    "ClientBackend",
    "DeviceError",
    "EdgeBackend",
    "EmbeddingModel",
    "FileSource",
    "Fusion",
    "HashEmbeddingModel",
    "IndexStoreError",
    "ManifestError",
    "MicrophoneSource",
    "ModelError",
    "Route",
    "RouteIndex",
    "RouteMatch",
    "RouteSet",
    "Router",
    "RoutesError",
    "ToolError",
    "ToolImportBlocked",
    "ToolRegistry",
    "VectorBackend",
    "VoiceRouter",
    "VoiceRouterEmbeddings",
    "VoiceRouterError",
    "__version__",
    "chunk_audio",
    "dump_routes",
    "list_models",
    "load_audio",
    "load_model",
    "load_routes",
    "parse_routes",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'voice_router' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # cache: the next access skips __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static analysers and IDEs see the real names
    from voice_router.audio.capture import ArraySource, FileSource, MicrophoneSource
    from voice_router.audio.io import AudioInput, chunk_audio, load_audio
    from voice_router.decision import Fusion
    from voice_router.dispatch import ToolRegistry
    from voice_router.embeddings import VoiceRouterEmbeddings
    from voice_router.errors import (
        AudioError,
        DeviceError,
        IndexStoreError,
        ManifestError,
        ModelError,
        RoutesError,
        ToolError,
        ToolImportBlocked,
        VoiceRouterError,
    )
    from voice_router.index import RouteIndex
    from voice_router.library import AudioLibrary
    from voice_router.model.base import EmbeddingModel
    from voice_router.model.fake import HashEmbeddingModel
    from voice_router.model.loader import list_models, load_model
    from voice_router.routes import Route, RouteSet, dump_routes, load_routes, parse_routes
    from voice_router.routing import RouteMatch, Router
    from voice_router.runnable import VoiceRouter
    from voice_router.store import ClientBackend, EdgeBackend, VectorBackend
