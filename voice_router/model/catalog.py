"""The models that ship with voice-router, by name: where their weights are and what they are.

Plain data (and the file names of a model folder), imported by the loader (which picks a
runtime), the ONNX runtime and the PyTorch model code (which builds them); none imports another
for it.
"""

from __future__ import annotations

from pathlib import Path

CONFIG_NAME = "config.json"  # a model folder: its config,
WEIGHTS_NAME = "model.safetensors"  # our weights (pretrained parts come from their packages),
CARD_NAME = "README.md"  # and its model card

WEIGHTS_DIR = Path(__file__).resolve().parent.parent / "weights"
DEFAULT_WEIGHTS = WEIGHTS_DIR / "whisper_tiny"  # the bundled default model
COMPACT_WEIGHTS = WEIGHTS_DIR / "compact"  # the first release (speech_embedding front-end)

NAMED = {
    "default": "the bundled model: frozen Whisper tiny.en encoder -> trained head into the "
    "all-MiniLM-L6-v2 sentence space (voice_router/weights/whisper_tiny/); runs without PyTorch",
    "compact": "the first release: speech_embedding keyword front-end + all-MiniLM-L6-v2 "
    "(voice_router/weights/compact/); single words and wake phrases only; needs PyTorch",
    "tiny": "tiny random model for tests (fast, deterministic, meaningless embeddings); "
    "needs PyTorch",
    "hash": "deterministic fake for plumbing tests (hash-<dim> for another dimension); "
    "meaningless embeddings; needs neither runtime",
}
"""Model names `--model` accepts, with one line each (a folder or hub id works too)."""
FOLDERS = {"default": DEFAULT_WEIGHTS, "compact": COMPACT_WEIGHTS}
"""The named models that are folders of weights in the package."""
