"""Process-group setup, model wrapping (DDP / FSDP) and differentiable gathering.

The same `python -m training train ...` command runs alone or under
`torchrun --nproc-per-node N`; torchrun's RANK / WORLD_SIZE / LOCAL_RANK environment variables
switch this module on. Backend: NCCL on CUDA, gloo on CPU (the tests use 2 CPU processes).

Contrastive loss over the GLOBAL batch: every process gathers all processes' embeddings with
`torch.distributed.nn.functional.all_gather` (differentiable) and computes the same full loss.
The all_gather backward sums the gradient that every copy of the loss sends to a process's own
rows (world x the single-process gradient); DDP then averages over processes (/ world), so the
parameter gradient equals that of one process on the whole batch. Hence "2 processes on the same
global batch give the same loss (and gradients) as 1 process".

Unused parameters: DDP by default waits for a gradient of every trainable parameter. The towers
freeze parameters their forward never uses (Qwen2.5-Omni's `audio_bos_eos_token`), so no
`find_unused_parameters` is needed; a config may still set `find_unused_parameters: true`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn


@dataclass
class DistInfo:
    """Where this process sits: rank, world size, local rank, device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process writes metrics, evaluations and checkpoints."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def init_distributed(device: str = "auto") -> DistInfo:
    """Join torchrun's process group if launched by it; otherwise a single-process DistInfo.

    Args:
        device: "auto" (CUDA if available), "cpu" or "cuda".
    """
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if use_cuda:
        torch.cuda.set_device(local)
        dev = torch.device("cuda", local)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank=rank, world=world, local_rank=local, device=dev)


def cleanup() -> None:
    """Leave the process group (no-op when not distributed)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def gather_with_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Concatenate every process's (B_r, D) rows in rank order -> (sum B_r, D), differentiable.

    Processes may hold different B_r (a rank that skipped an undecodable file has fewer rows):
    rows are padded to the largest B_r for the collective and the padding is cut off again.
    """
    if not info.enabled:
        return x
    from torch.distributed.nn.functional import all_gather

    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(info.world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], dtype=torch.long, device=x.device))
    counts = [int(s.item()) for s in sizes]
    width = max(counts)
    padded = torch.cat([x, x.new_zeros(width - x.shape[0], *x.shape[1:])], dim=0)  # (Bmax, D)
    parts = all_gather(padded)  # world x (Bmax, D)
    return torch.cat([p[:n] for p, n in zip(parts, counts, strict=True)], dim=0)  # (sum B_r, D)


def all_reduce_sum(value: float, info: DistInfo) -> float:
    """Sum a Python number over processes (for counters such as skipped files)."""
    if not info.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t.item())


def wrap_model(
    model: nn.Module,
    info: DistInfo,
    strategy: str = "ddp",
    find_unused_parameters: bool = False,
    layer_classes: tuple[type[nn.Module], ...] = (),
) -> nn.Module:
    """Wrap for data parallelism; returns `model` itself when not distributed.

    Args:
        strategy: "ddp" (replicated weights; fits up to ~1B params per GPU in bf16 with
            AdamW) or "fsdp" (weights, gradients and optimizer state sharded per layer; the
            3B+ configurations).
        layer_classes: module classes that become FSDP units (transformer blocks).
    """
    if not info.enabled or strategy == "none":
        return model
    if strategy == "ddp":
        ids = [info.local_rank] if info.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(
            model, device_ids=ids, find_unused_parameters=find_unused_parameters
        )
    if strategy == "fsdp":
        return fsdp_wrap(model, info, layer_classes)
    raise ValueError(f"unknown distributed strategy {strategy!r}; use ddp, fsdp or none.")


def fsdp_wrap(
    model: nn.Module, info: DistInfo, layer_classes: tuple[type[nn.Module], ...] = ()
) -> nn.Module:
    """Shard with FSDP2 (`fully_shard`): each listed layer class is its own unit, then the root.

    Parameters stay fp32 (master weights); mixed precision comes from bf16 autocast in the
    trainer. Frozen and trainable parameters may be mixed within a unit (FSDP2 allows it).
    """
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(info.device.type, (info.world,))
    # fully_shard refuses 0-d parameters (the logit scale). It stays replicated and needs no
    # gradient sync: every process computes the same full loss on the gathered embeddings, so
    # its gradient is already identical everywhere.
    scalars = {p for p in model.parameters() if p.ndim == 0}
    if layer_classes:
        for m in model.modules():
            if isinstance(m, layer_classes):
                fully_shard(m, mesh=mesh)
    fully_shard(model, mesh=mesh, ignored_params=scalars)
    return model


def transformer_layer_classes(model: nn.Module) -> tuple[type[nn.Module], ...]:
    """The transformer block classes inside `model` (by transformers' `_no_split_modules`)."""
    names: set[str] = set()
    for m in model.modules():
        names.update(getattr(m, "_no_split_modules", None) or [])
    found = {type(m) for m in model.modules() if type(m).__name__ in names}
    return tuple(sorted(found, key=lambda c: c.__name__))


def _fsdp_options(**kw: bool) -> object:
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=True, **kw)


def full_state(
    module: nn.Module, optimizer: torch.optim.Optimizer | None, info: DistInfo, strategy: str
) -> tuple[dict, dict | None]:
    """Unsharded (model, optimizer) state dicts: on the main process complete, elsewhere empty
    under FSDP (every process must call this: it is a collective). Plain state dicts otherwise.
    """
    if strategy != "fsdp" or not info.enabled:
        return module.state_dict(), optimizer.state_dict() if optimizer is not None else None
    from torch.distributed.checkpoint.state_dict import (
        get_model_state_dict,
        get_optimizer_state_dict,
    )

    msd = get_model_state_dict(module, options=_fsdp_options())
    osd = (
        get_optimizer_state_dict(module, optimizer, options=_fsdp_options())
        if optimizer is not None
        else None
    )
    return msd, osd


def load_full_state(
    module: nn.Module, optimizer: torch.optim.Optimizer, state: dict, info: DistInfo, strategy: str
) -> None:
    """Inverse of `full_state` (resume): plain load, or FSDP broadcast from the main process."""
    if strategy != "fsdp" or not info.enabled:
        module.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import (
        StateDictOptions,
        set_model_state_dict,
        set_optimizer_state_dict,
    )

    opts = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
    set_model_state_dict(module, state["model"], options=opts)
    set_optimizer_state_dict(module, optimizer, state["optimizer"], options=opts)


def unshard_to_plain(module: nn.Module, full: dict[str, torch.Tensor]) -> nn.Module:
    """Turn an FSDP2-sharded module back into a plain one holding the gathered tensors.

    Used on the main process after training, so the model can be saved and evaluated alone
    (no collectives). `full` comes from `full_state` (complete on the main process).
    """
    from torch.distributed.fsdp import FSDPModule

    for name, p in list(module.named_parameters()):
        owner_name, _, leaf = name.rpartition(".")
        owner = module.get_submodule(owner_name) if owner_name else module
        owner._parameters[leaf] = nn.Parameter(
            full[name].to(p.device if p.device.type != "meta" else "cpu"),
            requires_grad=p.requires_grad,
        )
    for m in module.modules():
        if isinstance(m, FSDPModule):  # drop the FSDP subclass and its all-gather hooks
            m.__class__ = next(c for c in type(m).__mro__[1:] if not issubclass(c, FSDPModule))
            m._forward_pre_hooks.clear()
            m._forward_hooks.clear()
    return module
