"""The generic contrastive trainer: one config file -> metrics, evaluation, a loadable model.

    python -m training train --config training/configs/NAME.yaml --out DIR [--max-steps N]
        [--resume] [--train-data CSV ...] [--val-data CSV]
    torchrun --nproc-per-node N -m training train ...     (DDP, or FSDP with distributed: fsdp)

A config (YAML) has four sections:

    model:  the AudioTextEmbedder config (voice_router.model.embedder.ModelConfig): audio
            encoder, prenet, projector, shared backbone, head, logit scale.
    init:   optional list of shell copies (training/shells.py) run after building, e.g. the
            Qwen2.5-Omni thinker LM into a Qwen2 backbone, keeping 10 layers.
    data:   train: [sources], val: source | null. A source is {format, path, split?, weight?,
            limit?}: formats in training/data.py. `mode: text_pairs` trains on text pairs only.
    train:  the optimisation (TrainConfig below).

What one step does: every process draws its slice of one GLOBAL batch (the same seeded index
stream on every rank), embeds audio and text, gathers the embeddings of all processes
(differentiable) and computes bidirectional InfoNCE (training/losses.info_nce) with the
model's learnable temperature (1 / exp(logit_scale)); gradient accumulation sums `grad_accum`
such micro-batches (each its own set of in-batch negatives) before one optimizer step.

Outputs in DIR: metrics.jsonl (one JSON per log step: step, loss, lr, temperature, grad_norm,
bad_files, ...), checkpoint/train_state.pt (resume), the saved model (config.json,
model.safetensors, README.md: `voice_router.load_model(DIR)` loads it), eval.json.
"""

from __future__ import annotations

import fnmatch
import json
import math
import random
import time
from collections.abc import Iterator, Sequence
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from torch import nn

from training import data as D
from training import distributed as dist_utils
from training import towers  # noqa: F401 - registers the hub towers the configs name
from training.losses import info_nce
from voice_router.errors import ModelError

STATE_NAME = "train_state.pt"


class LoraSpec(BaseModel):
    """Hand-rolled LoRA on nn.Linear modules whose dotted name matches `targets` (fnmatch).

    peft is not used: it is not installed here and the adapters must merge back into plain
    weights so the saved model has the architecture its config describes.
    """

    model_config = ConfigDict(extra="forbid")
    rank: int = Field(8, ge=1)
    alpha: float = 16.0
    dropout: float = 0.0
    targets: list[str] = Field(default_factory=lambda: ["backbone.*q_proj", "backbone.*v_proj"])


class TrainConfig(BaseModel):
    """The `train:` section."""

    model_config = ConfigDict(extra="forbid")
    mode: Literal["audio", "text_pairs"] = "audio"
    steps: int = Field(1000, ge=1)
    batch_size: int = Field(32, ge=2)  # GLOBAL batch (split over processes)
    grad_accum: int = Field(1, ge=1)
    lr: float = Field(1e-4, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1)
    warmup_steps: int = Field(100, ge=0)
    schedule: Literal["cosine", "constant"] = "cosine"
    weight_decay: float = Field(0.01, ge=0)
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = Field(1.0, ge=0)
    precision: Literal["fp32", "bf16"] = "fp32"
    gradient_checkpointing: bool = False
    freeze: list[str] = Field(default_factory=list)  # fnmatch patterns on parameter names
    unfreeze: list[str] = Field(default_factory=list)  # applied after freeze
    lora: LoraSpec | None = None
    seed: int = 0
    augment: bool = False  # training/augment.augment on training waveforms (`train` extra)
    random_crop: bool = True
    log_every: int = Field(10, ge=1)
    eval_every: int = Field(0, ge=0)  # 0: only at the end
    save_every: int = Field(0, ge=0)  # 0: only at the end
    eval_batch_size: int = Field(16, ge=1)
    num_workers: int = Field(0, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    distributed: Literal["ddp", "fsdp", "none"] = "ddp"
    find_unused_parameters: bool = False


class DataConfig(BaseModel):
    """The `data:` section."""

    model_config = ConfigDict(extra="forbid")
    train: list[dict[str, Any]] = Field(default_factory=list)
    val: dict[str, Any] | None = None


class RunConfig(BaseModel):
    """A whole training config file."""

    model_config = ConfigDict(extra="forbid")
    name: str = "run"
    description: str = ""
    model: dict[str, Any]
    init: list[dict[str, Any]] = Field(default_factory=list)
    data: DataConfig = Field(default_factory=DataConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    reference: dict[str, Any] = Field(default_factory=dict)  # published dims, notes (not used)


def load_run_config(path: str | Path) -> tuple[RunConfig, Path]:
    """Read and validate a YAML training config; returns it and its folder (for data paths)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as e:
        raise ModelError(f"cannot read training config {path}: {e}") from e
    try:
        return RunConfig.model_validate(raw), path.parent
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ModelError(f"{path}: invalid training config: {problems}") from None


# --------------------------------------------------------------------------------------------
# Model preparation: freezing, LoRA, checkpointing
# --------------------------------------------------------------------------------------------


def apply_freeze(model: nn.Module, freeze: Sequence[str], unfreeze: Sequence[str]) -> int:
    """Set requires_grad by fnmatch patterns on parameter names; returns trainable count."""
    for name, p in model.named_parameters():
        if any(fnmatch.fnmatchcase(name, pat) for pat in freeze):
            p.requires_grad_(False)
        if any(fnmatch.fnmatchcase(name, pat) for pat in unfreeze):
            p.requires_grad_(True)
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def add_lora(model: nn.Module, spec: LoraSpec) -> list[str]:
    """Replace matching nn.Linear modules by LoRALinear (base frozen, B = 0 so the output is
    unchanged at step 0). Returns the wrapped module names (merged back before saving)."""
    from voice_router.model.parts import LoRALinear

    wrapped = []
    for name, mod in list(model.named_modules()):
        if isinstance(mod, nn.Linear) and any(fnmatch.fnmatchcase(name, t) for t in spec.targets):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            mod.requires_grad_(False)
            setattr(parent, attr, LoRALinear(mod, spec.rank, spec.alpha, spec.dropout))
            wrapped.append(name)
    if not wrapped:
        raise ModelError(f"LoRA targets {spec.targets} match no nn.Linear in the model.")
    return wrapped


def merge_lora(model: nn.Module, names: Sequence[str]) -> None:
    """Fold the adapters listed by add_lora into their base weights and unwrap them."""
    with torch.no_grad():
        for name in names:
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            lora = getattr(parent, attr)
            base: nn.Linear = lora.base
            delta = (lora.lora_B @ lora.lora_A) * lora.scaling  # (out, in)
            base.weight += delta.to(base.weight.dtype)
            setattr(parent, attr, base)


def set_gradient_checkpointing(model: nn.Module, enabled: bool) -> list[str]:
    """Turn on activation recomputation in every part that supports it; returns their names."""
    done = []
    for part_name in ("audio_encoder", "backbone"):
        part = getattr(model, part_name, None)
        if part is None:
            continue
        if hasattr(part, "set_gradient_checkpointing"):
            part.set_gradient_checkpointing(enabled)
            done.append(part_name)
        elif hasattr(getattr(part, "model", None), "gradient_checkpointing_enable"):
            if enabled:
                part.model.gradient_checkpointing_enable(
                    gradient_checkpointing_kwargs={"use_reentrant": False}
                )
            done.append(part_name)
    return done


def finalize_for_save(model: nn.Module) -> None:
    """Make the saved file match what a fresh build of the saved config expects.

    A pretrained part of which anything was trained is marked `trainable: true` in the config
    and saved whole (a fresh build then expects all of its tensors); parameters that the part
    keeps frozen by construction (`never_trained`, e.g. Qwen2.5-Omni's unused token) stay out.
    """
    from voice_router.model.config import validate_config

    conf = model.config.model_dump(mode="json")
    for part_name in ("audio_encoder", "backbone"):
        part = getattr(model, part_name)
        # Config-level LoRA factors are our own weights (saved anyway): they do not make the
        # frozen pretrained part "trained".
        trained = any(p.requires_grad for n, p in part.named_parameters() if "lora_" not in n)
        if trained or conf[part_name].get("trainable"):
            if "trainable" in conf[part_name]:
                conf[part_name]["trainable"] = True
            part.requires_grad_(True)
            for n in getattr(part, "never_trained", ()):
                part.get_parameter(n).requires_grad_(False)
    model.config = validate_config(conf)


# --------------------------------------------------------------------------------------------
# The step module (what DDP wraps)
# --------------------------------------------------------------------------------------------


class ContrastiveStep(nn.Module):
    """Everything one training forward touches, in one module so DDP/FSDP see all of it.

    forward(batch) -> (left (B, D), right (B, D), logit_scale): audio/text embeddings, or the
    two texts of a pair in text_pairs mode.
    """

    def __init__(self, model: nn.Module, mode: str) -> None:
        super().__init__()
        self.model = model
        self.mode = mode

    def forward(self, **batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = self.model
        if self.mode == "text_pairs":
            left = m.encode_text_tokens(batch["ids2"], batch["mask2"])  # (B, D)
        else:
            enc_trains = any(p.requires_grad for p in m.audio_encoder.parameters())
            with nullcontext() if enc_trains else torch.no_grad():
                frames, fmask = m.audio_encoder(batch["features"], batch["lengths"])  # (B, T, Da)
            left = m.encode_frames(frames, fmask.sum(-1).long())  # (B, D)
        right = m.encode_text_tokens(batch["ids"], batch["mask"])  # (B, D)
        return left, right, m.logit_scale


def _prepare(model: nn.Module, batch: dict[str, Any], mode: str, device: torch.device) -> dict:
    """Featurize / tokenize a collated batch on the CPU and move it to `device`."""
    ids, mask = model.backbone.tokenize(batch["text"])
    out = {"ids": ids.to(device), "mask": mask.to(device)}
    if mode == "text_pairs":
        ids2, mask2 = model.backbone.tokenize(batch["text2"])
        out |= {"ids2": ids2.to(device), "mask2": mask2.to(device)}
    else:
        feats, lengths = model.audio_encoder.featurize(batch["audio"])
        out |= {"features": feats.to(device), "lengths": lengths.to(device)}
    return out


# --------------------------------------------------------------------------------------------
# Data plumbing
# --------------------------------------------------------------------------------------------


class GlobalBatchSampler(torch.utils.data.Sampler[list[int]]):
    """Yields this process's slice of each global batch drawn from one shared index stream.

    Every process draws the same global batch (same seed), then keeps rows
    [rank * b, (rank + 1) * b): N processes together see exactly what one process would.
    `skip` global batches are drawn and discarded first (resume).
    """

    def __init__(
        self, stream: D.WeightedMixSampler, global_batch: int, rank: int, world: int, skip: int = 0
    ) -> None:
        if global_batch % world:
            raise ModelError(
                f"batch_size {global_batch} is not divisible by {world} processes; change it."
            )
        self.stream, self.gb, self.rank, self.world, self.skip = (
            stream,
            global_batch,
            rank,
            world,
            skip,
        )

    def __iter__(self) -> Iterator[list[int]]:
        it = iter(self.stream)
        b = self.gb // self.world
        n = 0
        while True:
            batch = [next(it) for _ in range(self.gb)]
            n += 1
            if n <= self.skip:
                continue
            yield batch[self.rank * b : (self.rank + 1) * b]


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to 1, then cosine decay to min_lr_ratio at cfg.steps (or constant)."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return 1.0
    span = max(1, cfg.steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for n, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or "norm" in n.lower() else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# --------------------------------------------------------------------------------------------
# Evaluation inside training
# --------------------------------------------------------------------------------------------


def evaluate_pairs(
    model: nn.Module, pairs: Sequence[D.Pair], batch_size: int = 16
) -> dict[str, float]:
    """Retrieval metrics of `model` (an AudioTextEmbedder) on evaluation pairs."""
    from training.retrieval_eval import evaluate_embedding_model
    from voice_router.model.torch_runtime import TorchEmbeddingModel

    was_training = model.training
    try:
        return evaluate_embedding_model(TorchEmbeddingModel(model, batch_size=batch_size), pairs)
    finally:
        model.train(was_training)


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------


def _write_jsonl(path: Path, row: dict[str, Any]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(row) + "\n")


def train(
    config: RunConfig,
    out: str | Path,
    *,
    base: Path | None = None,
    max_steps: int | None = None,
    resume: bool = False,
    train_data: Sequence[str] = (),
    val_data: str | None = None,
) -> dict[str, Any]:
    """Train per `config`, writing metrics, checkpoints, the model and eval.json into `out`.

    Args:
        base: folder that relative data paths are resolved against (the config's folder).
        max_steps: stop after this many optimizer steps (the schedule still spans
            train.steps, so a short run is the start of the full run).
        resume: continue from out/checkpoint/train_state.pt.
        train_data / val_data: generic CSV/JSONL manifests replacing the config's data.
    Returns:
        A summary: steps run, last loss, eval metrics, bad/missing file counts.
    """
    from voice_router.model.embedder import AudioTextEmbedder, save_model

    tc = config.train
    out = Path(out)
    info = dist_utils.init_distributed(tc.device)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(tc.seed)

    # ---- data ---------------------------------------------------------------------------
    sources = [
        {"format": "csv" if not p.endswith(".jsonl") else "jsonl", "path": p} for p in train_data
    ] or config.data.train
    if not sources:
        raise D.DataError("no training data: give data.train in the config or --train-data.")
    train_pairs: list[D.Pair] = []
    sizes, weights, missing = [], [], 0
    for spec in sources:
        pairs, stats = D.read_source(spec, base)
        train_pairs += pairs
        sizes.append(len(pairs))
        weights.append(float(spec.get("weight", 1.0)))
        missing += stats.missing
    val_spec = (
        {"format": "jsonl" if val_data.endswith(".jsonl") else "csv", "path": val_data}
        if val_data
        else config.data.val
    )
    val_pairs: list[D.Pair] = D.read_source(val_spec, base)[0] if val_spec else []

    transform = None
    if tc.augment and tc.mode == "audio":
        from training.augment import augment

        def transform(a: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return augment(a, rng)

    dataset = D.PairDataset(
        train_pairs, transform=transform, random_crop=tc.random_crop, seed=tc.seed + info.rank
    )

    # ---- model --------------------------------------------------------------------------
    model = AudioTextEmbedder(config.model)
    if config.init:
        from training.shells import apply_init

        apply_init(model, config.init)
    if tc.mode == "text_pairs":  # the audio side is not touched by text pairs
        for part in (model.audio_encoder, model.prenet, model.projector):
            part.requires_grad_(False)
    apply_freeze(model, tc.freeze, tc.unfreeze)
    lora_names = add_lora(model, tc.lora) if tc.lora else []
    if tc.gradient_checkpointing:
        set_gradient_checkpointing(model, True)
    model.to(info.device).train()
    step_module = ContrastiveStep(model, tc.mode)
    layer_classes = dist_utils.transformer_layer_classes(model) if tc.distributed == "fsdp" else ()
    wrapped = dist_utils.wrap_model(
        step_module, info, tc.distributed, tc.find_unused_parameters, layer_classes
    )
    optimizer = torch.optim.AdamW(
        _param_groups(step_module, tc.weight_decay), lr=tc.lr, betas=tc.betas
    )
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, tc))

    start_step = 0
    ckpt_dir = out / "checkpoint"
    if resume:
        state_path = ckpt_dir / STATE_NAME
        if not state_path.is_file():
            raise ModelError(f"--resume: no checkpoint at {state_path}; run without --resume.")
        state = torch.load(state_path, map_location="cpu", weights_only=True)
        dist_utils.load_full_state(step_module, optimizer, state, info, tc.distributed)
        scheduler.load_state_dict(state["scheduler"])
        start_step = int(state["step"])
        torch.set_rng_state(state["torch_rng"])

    stream = D.WeightedMixSampler(sizes, weights, seed=tc.seed)
    batch_sampler = GlobalBatchSampler(
        stream, tc.batch_size, info.rank, info.world, skip=start_step * tc.grad_accum
    )
    loader = torch.utils.data.DataLoader(
        dataset, batch_sampler=batch_sampler, collate_fn=D.collate, num_workers=tc.num_workers
    )
    batches = iter(loader)
    autocast = (
        torch.autocast(info.device.type, dtype=torch.bfloat16)
        if tc.precision == "bf16"
        else nullcontext()
    )
    metrics_path = out / "metrics.jsonl"
    if info.is_main and not resume and metrics_path.exists():
        metrics_path.unlink()
    total_steps = min(tc.steps, max_steps) if max_steps else tc.steps
    bad = 0
    loss_value = float("nan")
    t_last = time.perf_counter()

    def save_state(step: int) -> None:
        """Write the resume state (a collective under FSDP: every process calls it)."""
        msd, osd = dist_utils.full_state(step_module, optimizer, info, tc.distributed)
        if not info.is_main:
            return
        ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = ckpt_dir / (STATE_NAME + ".tmp")
        torch.save(
            {
                "model": msd,
                "optimizer": osd,
                "scheduler": scheduler.state_dict(),
                "step": step,
                "torch_rng": torch.get_rng_state(),
                "config": config.model_dump(mode="json"),
            },
            tmp,
        )
        tmp.replace(ckpt_dir / STATE_NAME)

    for step in range(start_step, total_steps):
        optimizer.zero_grad(set_to_none=True)
        loss_sum = 0.0
        for _ in range(tc.grad_accum):
            batch = next(batches)
            bad += batch["n_bad"]
            inputs = _prepare(model, batch, tc.mode, info.device)
            with autocast:
                left, right, logit_scale = wrapped(**inputs)
            left_all = dist_utils.gather_with_grad(left.float(), info)  # (B_global, D)
            right_all = dist_utils.gather_with_grad(right.float(), info)  # (B_global, D)
            temperature = torch.exp(-logit_scale.float().clamp(max=math.log(100.0)))
            loss = info_nce(left_all, right_all, temperature) / tc.grad_accum
            loss.backward()
            loss_sum += float(loss.detach())
        params = [p for p in step_module.parameters() if p.requires_grad]
        grad_norm = float("nan")
        if tc.grad_clip:
            norm = torch.nn.utils.clip_grad_norm_(params, tc.grad_clip)
            norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm  # FSDP: DTensor
            grad_norm = float(norm)
        optimizer.step()
        scheduler.step()
        loss_value = loss_sum
        done = step + 1
        if done % tc.log_every == 0 or done == total_steps:
            bad_all = int(dist_utils.all_reduce_sum(bad, info))  # every rank must join
        if info.is_main and (done % tc.log_every == 0 or done == total_steps):
            now = time.perf_counter()
            row = {
                "step": done,
                "loss": loss_value,
                "lr": scheduler.get_last_lr()[0],
                "temperature": float(torch.exp(-model.logit_scale.detach())),
                "grad_norm": grad_norm,
                "samples": done * tc.batch_size * tc.grad_accum,
                "bad_files": bad_all,
                "missing_files": missing,
                "sec_per_step": (now - t_last) / tc.log_every,
                "world": info.world,
            }
            t_last = now
            _write_jsonl(metrics_path, row)
        if tc.save_every and done % tc.save_every == 0 and done < total_steps:
            save_state(done)
        sharded = tc.distributed == "fsdp" and info.enabled  # no lone-process forward
        if tc.eval_every and done % tc.eval_every == 0 and done < total_steps and val_pairs:
            if sharded:
                continue
            if info.is_main:
                m = evaluate_pairs(model, val_pairs, tc.eval_batch_size)
                _write_jsonl(metrics_path, {"step": done, **{f"val_{k}": v for k, v in m.items()}})

    save_state(total_steps)
    result: dict[str, Any] = {
        "steps": total_steps,
        "loss": loss_value,
        "bad_files": bad,
        "missing_files": missing,
        "world": info.world,
    }
    if tc.distributed == "fsdp" and info.enabled:  # gather the shards (collective)
        full, _ = dist_utils.full_state(step_module, None, info, tc.distributed)
        if info.is_main:
            dist_utils.unshard_to_plain(step_module, full)
    if info.is_main:
        if lora_names:
            merge_lora(model, lora_names)
        finalize_for_save(model)
        model.eval()
        card = {"training": {"config": config.name, "steps": total_steps, "loss": loss_value}}
        save_model(model, out, card=card)
        if val_pairs:
            metrics = evaluate_pairs(model, val_pairs, tc.eval_batch_size)
            (out / "eval.json").write_text(json.dumps(metrics, indent=2) + "\n")
            result["eval"] = metrics
    dist_utils.cleanup()
    return result
