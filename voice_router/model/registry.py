"""Name -> builder registries for the two swappable parts of AudioTextEmbedder.

A model config names its audio encoder and its backbone (`"audio_encoder": {"name": ...}`,
`"backbone": {"name": ...}`); the builder registered under that name receives the whole
section as a plain dict and returns an nn.Module. Built-in parts (registered by
voice_router.model.embedder): audio encoders "speech_embedding" and "tiny_conv", backbone
"bert_encoder". Large towers (Whisper, Qwen Omni audio towers, Qwen LMs) live in the optional
module voice_router.model.towers, imported the first time an unknown name is looked up.

Audio encoder contract:
    output_dim: int
    featurize(list of 16 kHz mono float32 arrays) -> (features, lengths (B,))
    forward(features, lengths) -> (frames (B, T, output_dim), mask (B, T) bool)
Backbone contract:
    hidden_size: int
    tokenize(list[str]) -> (input_ids (B, L), attention_mask (B, L))
    embed_tokens(input_ids (B, L)) -> (B, L, hidden_size)
    forward(inputs_embeds (B, L, H), attention_mask (B, L)) -> last hidden state (B, L, H)
    optional: audio_special_ids() -> (prefix ids, suffix ids) wrapped around audio frames.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

from torch import nn

from voice_router.errors import ModelError

Builder = Callable[[dict[str, Any]], nn.Module]

AUDIO_ENCODERS: dict[str, Builder] = {}
BACKBONES: dict[str, Builder] = {}

_TOWERS_MODULE = "voice_router.model.towers"
_towers_tried = False


def register_audio_encoder(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register `builder(section_dict) -> nn.Module` as audio encoder `name`."""

    def deco(fn: Builder) -> Builder:
        AUDIO_ENCODERS[name] = fn
        return fn

    return deco


def register_backbone(name: str) -> Callable[[Builder], Builder]:
    """Decorator: register `builder(section_dict) -> nn.Module` as backbone `name`."""

    def deco(fn: Builder) -> Builder:
        BACKBONES[name] = fn
        return fn

    return deco


def _load_optional_parts() -> None:
    """Import the built-in parts and, if present, voice_router.model.towers (once)."""
    global _towers_tried
    importlib.import_module("voice_router.model.embedder")  # registers the built-ins
    if _towers_tried:
        return
    _towers_tried = True
    try:
        importlib.import_module(_TOWERS_MODULE)
    except ModuleNotFoundError as e:
        if e.name != _TOWERS_MODULE:
            raise ModelError(
                f"{_TOWERS_MODULE} failed to import ({e}); install the missing package"
            ) from e


def _lookup(table: dict[str, Builder], kind: str, name: str) -> Builder:
    if name not in table:
        _load_optional_parts()
    if name not in table:
        known = ", ".join(sorted(table)) or "none"
        raise ModelError(f"unknown {kind} {name!r} in the model config; known {kind}s: {known}")
    return table[name]


def get_audio_encoder_builder(name: str) -> Builder:
    """The builder registered for audio encoder `name` (ModelError listing the known ones)."""
    return _lookup(AUDIO_ENCODERS, "audio encoder", name)


def get_backbone_builder(name: str) -> Builder:
    """The builder registered for backbone `name` (ModelError listing the known ones)."""
    return _lookup(BACKBONES, "backbone", name)


def build_audio_encoder(section: dict[str, Any]) -> nn.Module:
    """Build the audio encoder described by a config's `audio_encoder` section."""
    return get_audio_encoder_builder(str(section["name"]))(dict(section))


def build_backbone(section: dict[str, Any]) -> nn.Module:
    """Build the backbone described by a config's `backbone` section."""
    return get_backbone_builder(str(section["name"]))(dict(section))
