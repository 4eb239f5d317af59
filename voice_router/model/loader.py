"""Every model name resolves here (`load_model`): bundled names, the hash fake, folders and hub
ids, each on the lightest runtime that can run it.

Runtimes: "onnx" (`OnnxEmbeddingModel`: onnxruntime + tokenizers, no PyTorch; needs the
folder's `onnx.json` from `voice-router export-onnx`) and "torch" (`TorchEmbeddingModel`:
every saved model, "tiny" and hub ids; needs the `torch` extra). "auto" (the default) takes
ONNX where the folder has its graphs and onnxruntime is installed, else PyTorch.
`VOICE_ROUTER_RUNTIME` (auto | onnx | torch) overrides the default.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from voice_router.errors import ModelError
from voice_router.model.base import EmbeddingModel
from voice_router.model.catalog import CARD_NAME, CONFIG_NAME, NAMED, WEIGHTS_NAME
from voice_router.model.catalog import FOLDERS as _FOLDERS
from voice_router.model.onnx_model import OnnxEmbeddingModel, has_onnx
from voice_router.model.routing_defaults import read_fusion

RUNTIMES = ("auto", "onnx", "torch")


def have(module: str) -> bool:
    """True when `module` can be imported here (without importing it)."""
    return importlib.util.find_spec(module) is not None


def runtime_choice(runtime: str | None = None) -> str:
    """`runtime`, else VOICE_ROUTER_RUNTIME, else "auto"; validated."""
    r = (runtime or os.environ.get("VOICE_ROUTER_RUNTIME") or "auto").strip().lower()
    if r not in RUNTIMES:
        raise ModelError(f"unknown runtime {r!r} (VOICE_ROUTER_RUNTIME): use {', '.join(RUNTIMES)}")
    return r


def load_model(
    model: EmbeddingModel | str | os.PathLike[str] = "default", runtime: str | None = None
) -> EmbeddingModel:
    """The one place a model name becomes a model (CLI `--model`, Router, VoiceRouterEmbeddings,
    training, benchmarks all call this).

    `model` is, checked in this order:
    - an `EmbeddingModel` instance: returned as is, so callers that take either call this;
    - "hash" / "hash-<dim>": the deterministic fake (`HashEmbeddingModel`, plumbing tests only);
    - "default", "compact": the folders bundled with the package (`catalog.FOLDERS`);
    - "tiny": the tiny random test config (PyTorch; nothing loaded);
    - a model folder (config.json + model.safetensors, and onnx.json once exported);
    - a Hugging Face hub id "owner/name": a snapshot of such a folder, run by PyTorch (only
      tried for strings that are none of the above, so a typo never reaches the network).

    A folder runs on ONNX Runtime when it has the graphs and onnxruntime is installed, else on
    PyTorch (`runtime`, else VOICE_ROUTER_RUNTIME: auto | onnx | torch).
    """
    if not isinstance(model, (str, os.PathLike)):
        return model
    s = os.fspath(model)
    r = runtime_choice(runtime)
    if s == "hash" or s.startswith("hash-"):
        return _hash_model(s)
    folder = _FOLDERS.get(s)
    if folder is not None and not (folder / WEIGHTS_NAME).is_file():
        raise ModelError(
            f"the bundled model weights are missing ({folder / WEIGHTS_NAME} not found). Train "
            "them with `python -m training` (see training/README.md), which saves that folder, "
            "or pass --model PATH to a saved model folder, or --model tiny for a random test model"
        )
    if folder is None and s != "tiny":
        path = Path(s).expanduser()
        if path.is_dir():
            folder = path
        elif path.exists():
            raise ModelError(f"{s} is a file; pass the model folder that contains {CONFIG_NAME}")
        elif not looks_like_hub_id(s):
            raise ModelError(
                f"no model named {s!r} and no such folder; known names: {', '.join(NAMED)}, "
                f"hash-<dim> (or a folder with {CONFIG_NAME} + {WEIGHTS_NAME}, or a hub id "
                "owner/name)"
            )
    name = s if s in _FOLDERS else (folder.name if folder is not None else s)
    onnx_ok = folder is not None and has_onnx(folder)
    if r != "torch" and onnx_ok and have("onnxruntime"):
        return OnnxEmbeddingModel(folder, name=name)
    if r == "onnx":
        why = (
            "onnxruntime is not installed (pip install onnxruntime)"
            if onnx_ok
            else f"it has no ONNX graphs ({'no folder' if folder is None else folder / 'onnx.json'}"
            " is missing; write them with `voice-router export-onnx FOLDER`)"
        )
        raise ModelError(f"model {s!r} cannot run on the ONNX runtime: {why}")
    if not (have("torch") and have("transformers")):
        raise ModelError(
            f"model {s!r} needs PyTorch (it has no ONNX graphs, or VOICE_ROUTER_RUNTIME=torch): "
            "pip install 'voice-router[torch]', or use the default model"
        )
    from voice_router.model import torch_runtime

    if s == "tiny":
        return torch_runtime.build_embedding_model("tiny")
    return torch_runtime.load_folder(folder if folder is not None else _hub_snapshot(s), name)


def looks_like_hub_id(s: str) -> bool:
    """True for "owner/name" of letters, digits, "-", "_", "." (a Hugging Face hub repo id),
    never for a relative or home path ("./x", "~/x") or a Windows one."""
    parts = s.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not s.startswith((".", "~"))
        and all(c.isalnum() or c in "-_." for c in s.replace("/", ""))
    )


def _hash_model(s: str) -> EmbeddingModel:
    """The deterministic fake: "hash" (dim 32) or "hash-<dim>"."""
    from voice_router.model.fake import HashEmbeddingModel

    try:
        dim = int(s.split("-", 1)[1]) if "-" in s else 32
    except ValueError:
        raise ModelError(f"model {s!r}: use hash or hash-<dim>, e.g. hash-64") from None
    if dim < 1:
        raise ModelError(f"model {s!r}: the dimension must be at least 1, e.g. hash-64")
    return HashEmbeddingModel(dim=dim)


def _hub_snapshot(repo_id: str) -> Path:
    """The local snapshot of a hub model folder (its config, weights, card, routing.json)."""
    from voice_router.model.routing_defaults import ROUTING_NAME

    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(
            repo_id, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME, ROUTING_NAME]
        )
    except Exception as e:
        raise ModelError(
            f"{repo_id!r} is not a known model name or local folder, and downloading it from the "
            f"Hugging Face hub failed ({type(e).__name__}: {e}); check the name, your network, "
            "or pass a local folder"
        ) from e
    return Path(local)


def list_models() -> list[dict[str, Any]]:
    """Known model names with a description, where they live, how they can run here and the
    fusion their folder names (None: the router's default)."""
    onnx = have("onnxruntime")
    torch = have("torch")
    rows = []
    for name, desc in NAMED.items():
        folder = _FOLDERS.get(name)
        graphs = folder is not None and has_onnx(folder)
        runtimes = [r for r, ok in (("onnx", graphs and onnx), ("torch", torch)) if ok]
        if name == "hash":  # numpy only: no runtime to choose
            runtimes = []
        rows.append(
            {
                "name": name,
                "description": desc,
                "path": str(folder) if folder else None,
                "available": (bool(runtimes) or name == "hash")
                and (folder is None or (folder / WEIGHTS_NAME).is_file()),
                "runtimes": runtimes,
                "fusion": read_fusion(folder) if folder is not None else None,
            }
        )
    return rows


__all__ = ["EmbeddingModel", "list_models", "load_model", "looks_like_hub_id", "runtime_choice"]
