"""Fixtures shared by the model tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="session")
def tiny_whisper_config() -> dict[str, Any]:
    """The bundled model's shape at toy size: a random 1-layer Whisper encoder (dim 32), input
    pooling, attention pooling, and the tiny random BERT backbone. Nothing is loaded."""
    from voice_router.model.config import named_config

    return {
        "format_version": 1,
        "name": "tiny_whisper",
        "audio_encoder": {
            "name": "whisper_unpadded",
            "pretrained": None,
            "config": {"dim": 32, "layers": 1, "heads": 2, "ffn": 64},
        },
        "audio_path": "pool",
        "audio_pool": "attention",
        "audio_pool_heads": 4,
        "prenet": {
            "dim": 32,
            "conv_layers": 1,
            "kernel_size": 3,
            "transformer_layers": 1,
            "heads": 2,
            "dropout": 0.0,
            "input_pool": 2,
        },
        "backbone": named_config("tiny").backbone.model_dump(),
        "head": {"type": "linear"},
    }
