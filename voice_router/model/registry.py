"""Name -> builder tables for the two swappable parts of AudioTextEmbedder.

A model config names its audio encoder and its backbone (`"audio_encoder": {"name": ...}`,
`"backbone": {"name": ...}`); the builder under that name receives the whole section as a plain
dict and returns an nn.Module. Every part that ships with voice-router is listed here, by the
module and function that build it (as open_clip's factory lists its configs), all in
voice_router.model.parts; a module is imported only when one of its parts is built. Code
outside the package adds parts with `register_audio_encoder` / `register_backbone`: the large
hub towers of the training configs (Qwen Omni audio towers, Qwen LMs, transformers' Whisper and
BERT) register themselves when `training.towers` is imported (this package never imports
training/).

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

_PARTS = "voice_router.model.parts"

BUILTIN_AUDIO_ENCODERS: dict[str, str] = {
    "speech_embedding": f"{_PARTS}:build_speech_embedding_encoder",
    "tiny_conv": f"{_PARTS}:build_tiny_conv_encoder",
    "whisper_unpadded": f"{_PARTS}:build_whisper_unpadded_encoder",
}
"""Audio encoders that ship with voice-router: name -> "module:builder"."""
BUILTIN_BACKBONES: dict[str, str] = {
    "bert_encoder": f"{_PARTS}:build_bert_encoder",
}
"""Backbones that ship with voice-router: name -> "module:builder"."""

AUDIO_ENCODERS: dict[str, Builder] = {}
"""Audio encoders registered at run time (`register_audio_encoder`); they win over built-ins."""
BACKBONES: dict[str, Builder] = {}
"""Backbones registered at run time (`register_backbone`); they win over built-ins."""


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


def _resolve(target: str) -> Builder:
    module, attr = target.split(":")
    try:
        mod = importlib.import_module(module)
    except ModuleNotFoundError as e:
        raise ModelError(f"{module} failed to import ({e}); install the missing package") from e
    return getattr(mod, attr)


def _lookup(
    registered: dict[str, Builder], builtin: dict[str, str], kind: str, name: str
) -> Builder:
    if name in registered:
        return registered[name]
    if name in builtin:
        return _resolve(builtin[name])
    known = ", ".join(sorted({*registered, *builtin}))
    raise ModelError(
        f"unknown {kind} {name!r} in the model config; known {kind}s: {known}. The training "
        "configs' hub towers (qwen2_5_omni, qwen3_omni, whisper, qwen2, qwen3, bert, "
        "qwen2_5_omni_thinker) are registered by `import training.towers` (from a checkout of "
        "the repository); other parts by the code that registers them"
    )


def audio_encoder_names() -> list[str]:
    """Every audio encoder name a config may use."""
    return sorted({*AUDIO_ENCODERS, *BUILTIN_AUDIO_ENCODERS})


def backbone_names() -> list[str]:
    """Every backbone name a config may use."""
    return sorted({*BACKBONES, *BUILTIN_BACKBONES})


def get_audio_encoder_builder(name: str) -> Builder:
    """The builder of audio encoder `name` (ModelError listing the known ones)."""
    return _lookup(AUDIO_ENCODERS, BUILTIN_AUDIO_ENCODERS, "audio encoder", name)


def get_backbone_builder(name: str) -> Builder:
    """The builder of backbone `name` (ModelError listing the known ones)."""
    return _lookup(BACKBONES, BUILTIN_BACKBONES, "backbone", name)


def build_audio_encoder(section: dict[str, Any]) -> nn.Module:
    """Build the audio encoder described by a config's `audio_encoder` section."""
    return get_audio_encoder_builder(str(section["name"]))(dict(section))


def build_backbone(section: dict[str, Any]) -> nn.Module:
    """Build the backbone described by a config's `backbone` section."""
    return get_backbone_builder(str(section["name"]))(dict(section))
