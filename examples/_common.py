"""Shared command-line options of the example scripts (not part of the library)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HOME_ROUTES = ROOT / "routes" / "home.yaml"
SAMPLE_CLIP = ROOT / "tests" / "data" / "rhasspy_turn_on_the_living_room_lamp.flac"

if str(ROOT) not in sys.path:  # run as `python examples/NN_....py` from anywhere
    sys.path.insert(0, str(ROOT))


def parser(description: str) -> argparse.ArgumentParser:
    """An argument parser with --model, --index and --exemplar-voices."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument(
        "--model",
        default=None,
        help="model name or folder [default: the bundled model, or 'tiny' (random weights, "
        "meaningless routes) when it is not installed]",
    )
    p.add_argument(
        "--index",
        default=None,
        help="Qdrant Edge folder, ':memory:' or a Qdrant URL [default: the user data folder]",
    )
    p.add_argument(
        "--exemplar-voices",
        type=int,
        default=None,
        help="TTS voices per route text (0 = none) [default: 12 when espeak-ng is installed]",
    )
    return p


def pick_model(name: str | None) -> str:
    """The model to use: the given name, else the bundled one if present, else 'tiny'."""
    if name:
        return name
    from voice_router.model import list_models

    default = next((m for m in list_models() if m["name"] == "default"), None)
    if default and default.get("available"):
        return "default"
    print(
        "note: the bundled model is not installed; using 'tiny' (random weights: the routes "
        "it picks are meaningless, the plumbing is real)",
        file=sys.stderr,
    )
    return "tiny"
