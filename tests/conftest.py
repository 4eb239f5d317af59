"""Shared test fixtures (kept small on purpose). Nothing here touches the network."""

from __future__ import annotations

import os
from pathlib import Path

# Two CPU cores are shared by everyone: keep torch/BLAS to one thread, here and in subprocesses.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402

DATA = Path(__file__).parent / "data"

#: A small, valid routes file used by the index/router/CLI tests.
ROUTES_YAML = """\
threshold: 0.5
margin: 0.05
routes:
  - name: lights_on
    description: turn on the lights
    examples: ["lights on please", "switch the lamp on"]
    tool: lights_on
    args: {room: kitchen}
  - name: lights_off
    description: turn off the lights
    examples: ["lights off please"]
    tool: lights_off
  - name: weather
    description: what is the weather forecast
    examples: ["will it rain today"]
"""


@pytest.fixture
def data_dir() -> Path:
    """tests/data (real small audio files and their README)."""
    return DATA


@pytest.fixture
def hash_model():
    """The deterministic fake model (plumbing tests only)."""
    from voice_router.model.fake import HashEmbeddingModel

    return HashEmbeddingModel(dim=32)


@pytest.fixture
def routes_file(tmp_path: Path) -> Path:
    """ROUTES_YAML written to a temporary file."""
    p = tmp_path / "routes.yaml"
    p.write_text(ROUTES_YAML, encoding="utf-8")
    return p


@pytest.fixture
def route_set(routes_file: Path):
    """ROUTES_YAML loaded as a RouteSet."""
    from voice_router.routes import load_routes

    return load_routes(routes_file)
