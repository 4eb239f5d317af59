"""Integration fixtures: the tiny model (loaded once) and the bundled model when installed."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_WEIGHTS = ROOT / "voice_router" / "weights" / "whisper_tiny" / "model.safetensors"


@pytest.fixture(scope="session")
def tiny_model():
    """load_model("tiny"): real torch model code, random weights (fast, deterministic)."""
    import torch

    torch.set_num_threads(1)
    from voice_router.model import load_model

    return load_model("tiny")


@pytest.fixture(scope="session")
def default_model():
    """The bundled default model; skips when its weights are not installed yet."""
    if not DEFAULT_WEIGHTS.exists():
        pytest.skip(f"bundled model weights not installed ({DEFAULT_WEIGHTS} is absent)")
    import torch

    torch.set_num_threads(1)
    from voice_router.model import load_model

    return load_model("default")
