"""Copy pretrained tensors into standalone "shells" built from config.

An Omni checkpoint is one big model (thinker + talker + vocoder); the recipe needs only parts of
it: the audio tower (keys under `thinker.audio_tower.`) and, for M4 and the pruned 7B
configurations, the thinker's language model (keys under `thinker.model.`). Loading the whole
Omni model to pull out one part costs the memory of all of it, so instead:

1. build the part alone ("shell") with the dimensions of the checkpoint's config.json,
2. read only the tensors under the part's prefix (safetensors, sharded or not),
3. copy them by name, and fail loudly (ModelError) on ANY missing, unexpected or mis-shaped
   tensor before anything is copied. Silent partial loads are how random weights end up in a
   "pretrained" model.

Layer pruning (keep the first N of the LM's layers, or the listed ones) drops the other layers'
tensors on purpose and renumbers the kept ones 0..N-1.

Used by the trainer's `init:` config section:

    init:
      - module: backbone.model          # dotted path inside the AudioTextEmbedder
        checkpoint: Qwen/Qwen2.5-Omni-7B  # folder or hub id
        prefix: thinker.model.
        keep_layers: 10                 # optional: int (first N) or list of indices
      - module: ""                      # the whole model, from a saved voice-router model
        checkpoint: runs/m4
        allow_missing: true             # it stores only the tensors it trained
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.towers import (
    OMNI_AUDIO_PREFIX,
    OMNI_LM_PREFIX,
    copy_tensors_strict,
    read_prefixed_tensors,
    resolve_checkpoint_dir,
    select_layers,
)
from voice_router.errors import ModelError


def prune_layers(
    tensors: dict[str, torch.Tensor], keep: int | Sequence[int]
) -> dict[str, torch.Tensor]:
    """Keep the listed decoder layers (`layers.{i}.*`) renumbered 0..N-1; drop the others.

    Args:
        tensors: state dict of an LM (keys without the checkpoint prefix).
        keep: N (the first N layers) or explicit layer indices, in the order they are stacked.
    """
    return select_layers(tensors, list(range(keep)) if isinstance(keep, int) else list(keep))


def copy_into_shell(
    shell: nn.Module,
    checkpoint: str | Path,
    prefix: str,
    *,
    keep_layers: int | Sequence[int] | None = None,
    allow_missing: bool = False,
) -> list[str]:
    """Fill `shell` with the tensors of `checkpoint` under `prefix`, exactly and strictly.

    `allow_missing`: the checkpoint may hold a subset of the shell's tensors (a saved
    voice-router model folder stores only what it trained), e.g. to start a text-only stage
    from an audio-text run; unexpected or mis-shaped tensors still fail.

    Returns:
        The copied tensor names (shell-side), sorted.
    Raises:
        ModelError: missing, unexpected or mis-shaped tensors (all listed), or no tensors.
    """
    tensors = read_prefixed_tensors(resolve_checkpoint_dir(str(checkpoint), prefix), prefix)
    if keep_layers is not None:
        tensors = prune_layers(tensors, keep_layers)
    return copy_tensors_strict(shell, tensors, allow_missing=allow_missing)


def submodule(model: nn.Module, dotted: str) -> nn.Module:
    """`model.get_submodule(dotted)` with a ModelError that lists what exists."""
    try:
        return model.get_submodule(dotted)
    except AttributeError as e:
        names = sorted({n.split(".")[0] for n, _ in model.named_children()})
        raise ModelError(f"no module {dotted!r} in the model (top level: {names}).") from e


def apply_init(model: nn.Module, init: Sequence[dict[str, Any]]) -> dict[str, int]:
    """Run a config's `init:` list (see module docstring); returns {module: tensors copied}."""
    report: dict[str, int] = {}
    for item in init:
        target = submodule(model, str(item["module"]))
        copied = copy_into_shell(
            target,
            str(item["checkpoint"]),
            str(item.get("prefix", "")),
            keep_layers=item.get("keep_layers"),
            allow_missing=bool(item.get("allow_missing", False)),
        )
        report[str(item["module"])] = len(copied)
    return report


def omni_audio_shell(kind: str, checkpoint: str | Path, **overrides: Any) -> nn.Module:
    """A standalone Omni audio tower (transformers module) with the checkpoint's weights.

    Args:
        kind: "qwen2_5_omni" or "qwen3_omni".
        checkpoint: Omni checkpoint folder (or hub id) with config.json + safetensors.
        overrides: config values to change (rarely needed; shapes must still match).
    """
    from training import towers

    builders = {"qwen2_5_omni": towers.build_qwen2_5_omni, "qwen3_omni": towers.build_qwen3_omni}
    if kind not in builders:
        raise ModelError(f"unknown Omni tower {kind!r}; use one of {sorted(builders)}.")
    tower = builders[kind]({"pretrained": str(checkpoint), "config": overrides})
    return tower.encoder


__all__ = [
    "OMNI_AUDIO_PREFIX",
    "OMNI_LM_PREFIX",
    "apply_init",
    "copy_into_shell",
    "omni_audio_shell",
    "prune_layers",
    "submodule",
]
