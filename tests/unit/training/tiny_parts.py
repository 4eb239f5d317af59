"""Toy-size configs shared by the training tests (random weights, built in milliseconds)."""

from __future__ import annotations

from typing import Any

#: The two Omni audio towers at toy size; output_dim 24 matches the 24-wide toy LMs.
OMNI_TOWERS: dict[str, dict[str, Any]] = {
    "qwen2_5_omni": {
        "d_model": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "output_dim": 24,
        "n_window": 50,
    },
    "qwen3_omni": {
        "d_model": 32,
        "encoder_layers": 2,
        "encoder_attention_heads": 4,
        "encoder_ffn_dim": 64,
        "output_dim": 24,
        "n_window": 50,
        "downsample_hidden_size": 8,
    },
}

#: A prenet that only projects (no conv, no transformer layers).
TINY_PRENET: dict[str, Any] = {
    "dim": 16,
    "conv_layers": 0,
    "stride": 1,
    "transformer_layers": 0,
    "heads": 2,
    "dropout": 0.0,
    "max_frames": 512,
}
