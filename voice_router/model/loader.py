"""Load an embedding model by name or folder, on the lightest runtime that can run it.

Runtimes: "onnx" (`OnnxEmbeddingModel`: onnxruntime + tokenizers, no PyTorch; needs the
folder's `onnx.json` from `voice-router export-onnx`) and "torch" (`TorchEmbeddingModel`:
every model, hub towers and training; needs the `torch` extra). "auto" (the default) takes
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
from voice_router.model.catalog import FOLDERS as _FOLDERS
from voice_router.model.catalog import NAMED
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


def load_model(name_or_path: str | os.PathLike[str] = "default", runtime: str | None = None) -> Any:
    """An EmbeddingModel for "default", "compact", "tiny", a model folder or a hub id.

    The ONNX runtime serves folders with ONNX graphs (the bundled default has them); the rest,
    and everything when `runtime="torch"`, load through PyTorch
    (`voice_router.model.embedder.load_model`, which also documents hub ids).
    """
    r = runtime_choice(runtime)
    s = os.fspath(name_or_path)
    folder = _FOLDERS.get(s)
    if folder is None and Path(s).expanduser().is_dir():
        folder = Path(s).expanduser()
    onnx_ok = folder is not None and has_onnx(folder)
    if r != "torch" and onnx_ok and have("onnxruntime"):
        return OnnxEmbeddingModel(folder, name=s if s in _FOLDERS else Path(s).name)
    if r == "onnx":
        why = (
            "onnxruntime is not installed (pip install onnxruntime)"
            if onnx_ok
            else f"it has no ONNX graphs ({'no folder' if folder is None else folder / 'onnx.json'}"
            " is missing; write them with `voice-router export-onnx FOLDER`)"
        )
        raise ModelError(f"model {s!r} cannot run on the ONNX runtime: {why}")
    if folder is None and Path(s).expanduser().is_file():
        raise ModelError(f"{s} is a file; pass the model folder that contains config.json")
    hub_like = s.count("/") == 1 and not s.startswith((".", "/", "~"))
    if folder is None and s not in NAMED and not hub_like:
        raise ModelError(
            f"no model named {s!r} and no such folder; known names: {', '.join(NAMED)} "
            "(or a model folder, or a hub id owner/name)"
        )
    if not have("torch"):
        raise ModelError(
            f"model {s!r} needs PyTorch (it has no ONNX graphs, or VOICE_ROUTER_RUNTIME=torch): "
            "pip install 'voice-router[torch]', or use the default model"
        )
    from voice_router.model.torch_runtime import load_model as load_torch_model

    return load_torch_model(s)


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
        rows.append(
            {
                "name": name,
                "description": desc,
                "path": str(folder) if folder else None,
                "available": bool(runtimes)
                and (folder is None or (folder / "model.safetensors").is_file()),
                "runtimes": runtimes,
                "fusion": read_fusion(folder) if folder is not None else None,
            }
        )
    return rows


__all__ = ["EmbeddingModel", "list_models", "load_model", "runtime_choice"]


def resolve_model(model: EmbeddingModel | str) -> EmbeddingModel:
    """An `EmbeddingModel` from an instance or a name: "hash"/"hash-<dim>" (the deterministic
    fake, for plumbing tests only), or anything `load_model` accepts."""
    if not isinstance(model, str):
        return model
    if model == "hash" or model.startswith("hash-"):
        from voice_router.model.fake import HashEmbeddingModel

        try:
            dim = int(model.split("-", 1)[1]) if "-" in model else 32
        except ValueError:
            raise ModelError(f"model {model!r}: use hash or hash-<dim>, e.g. hash-64") from None
        return HashEmbeddingModel(dim=dim)
    return load_model(model)
