"""AudioTextEmbedder: the module-combination audio-text embedding model, built from a config.

    audio -> audio encoder (frozen speech_embedding front-end, a Whisper/Omni tower, or a tiny
             conv for tests) -> frames (B, T, Da)
          -> prenet (small trainable conv + transformer over frames) -> (B, T', P)
          -> projector (linear) into the backbone's input embedding space -> (B, T', H)
          -> [CLS] frames [SEP] -> ONE SHARED backbone -> mean pool -> head -> L2 normalise
    text  -> tokenizer -> the same backbone (input ids) -> mean pool -> head -> L2 normalise

Both modalities run through the same backbone (the seed recipe), so with a frozen
all-MiniLM-L6-v2 backbone the text side is exactly sentence-transformers' all-MiniLM-L6-v2
at initialisation (LoRA B = 0, head = identity), and the audio side learns to land next to
the text that was spoken. Optional shared trainable parts on the backbone side (LoRA on
attention query/value, a linear head) let training pull apart near-identical commands
("on"/"off") that frozen MiniLM puts close together.

Saved model = a folder with config.json (validated with pydantic before anything is built),
model.safetensors (our weights only: nothing loaded from a pretrained package) and README.md.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voice_router.audio.prep import ClipNormalizer
from voice_router.errors import ModelError
from voice_router.model.catalog import CARD_NAME, CONFIG_NAME, WEIGHTS_NAME
from voice_router.model.config import (
    ModelConfig,
    canonical_config_json,
    read_config,
    validate_config,
)
from voice_router.model.parts import AttentionPool, Prenet
from voice_router.model.registry import (
    build_audio_encoder,
    build_backbone,
)

# =============================================================================================
# The model


class AudioTextEmbedder(nn.Module):
    """Audio and text into one L2-normalised space through one shared backbone.

    Build with `AudioTextEmbedder(config)` (config dict or ModelConfig): pretrained parts are
    read from their packages/checkpoints, our parts are initialised from `config.seed`.
    The trainer works on cached audio-encoder frames via `encode_frames` and on token ids
    via `encode_text_tokens`; `trainable_state_dict()` is what gets saved.
    """

    def __init__(self, config: ModelConfig | dict[str, Any]) -> None:
        super().__init__()
        self.config = validate_config(config)
        cfg = self.config
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            self.audio_encoder = build_audio_encoder(cfg.audio_encoder.model_dump())
            self.backbone = build_backbone(cfg.backbone.model_dump())
            audio_dim = int(self.audio_encoder.output_dim)
            hidden = int(getattr(self.backbone, "hidden_size"))  # noqa: B009
            self.prenet = Prenet(audio_dim, cfg.prenet)
            self.projector = nn.Linear(cfg.prenet.dim, hidden)
            self.attn_pool = (
                AttentionPool(hidden, cfg.audio_pool_heads)
                if cfg.audio_pool == "attention"
                else None
            )
            if cfg.head.type == "linear":
                self.head: nn.Module = nn.Linear(hidden, hidden)
                with torch.no_grad():
                    self.head.weight.copy_(torch.eye(hidden))
                    self.head.bias.zero_()
            else:
                self.head = nn.Identity()
        self.logit_scale = nn.Parameter(
            torch.tensor(float(cfg.logit_scale_init)), requires_grad=cfg.learn_logit_scale
        )
        self.joint_dim = hidden
        self.audio_dim = audio_dim
        # (joint D) + (acoustic Da when acoustic_weight > 0)
        self.dim = hidden + (audio_dim if cfg.acoustic_weight > 0 else 0)
        self.normalizer = ClipNormalizer(**cfg.audio_prep.model_dump())
        if not cfg.audio_encoder.trainable:
            self.audio_encoder.requires_grad_(False)
        self._pretrained_keys = self._find_pretrained_keys()

    # ---- which tensors are ours ------------------------------------------------------------

    def _find_pretrained_keys(self) -> frozenset[str]:
        """State keys loaded from a pretrained source (never saved unless trainable)."""
        keys = set()
        for prefix, part in (("audio_encoder.", self.audio_encoder), ("backbone.", self.backbone)):
            section = (
                self.config.audio_encoder if part is self.audio_encoder else self.config.backbone
            )
            pretrained = bool(getattr(part, "pretrained_all", False)) or bool(
                getattr(section, "pretrained", False)
            )
            if not pretrained:
                continue
            for k in part.state_dict():
                if "lora_" not in k:
                    keys.add(prefix + k)
        return frozenset(keys)

    def trainable_state_dict(self) -> dict[str, torch.Tensor]:
        """Our weights: everything not loaded from a pretrained package/checkpoint, plus any
        pretrained parameter that is being trained. This is what model.safetensors holds."""
        trainable = {n for n, p in self.named_parameters() if p.requires_grad}
        return {
            k: v
            for k, v in self.state_dict().items()
            if k not in self._pretrained_keys or k in trainable
        }

    def load_trainable_state_dict(self, state: dict[str, torch.Tensor], where: str = "") -> None:
        """Load exactly the keys `trainable_state_dict` names (ModelError on any mismatch)."""
        want = self.trainable_state_dict()
        missing = sorted(set(want) - set(state))
        unexpected = sorted(set(state) - set(want))
        bad = sorted(
            f"{k}: file {tuple(state[k].shape)} vs model {tuple(want[k].shape)}"
            for k in set(want) & set(state)
            if tuple(state[k].shape) != tuple(want[k].shape)
        )
        if missing or unexpected or bad:
            raise ModelError(
                f"{where or 'weights'} do not match the config: missing {missing[:5]}, "
                f"unexpected {unexpected[:5]}, shape mismatch {bad[:5]}; the weights file and "
                "config.json must come from the same saved model"
            )
        with torch.no_grad():
            own = self.state_dict()
            for k, v in state.items():
                own[k].copy_(v.to(dtype=own[k].dtype))

    # ---- text -------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Texts -> {"input_ids": (B, L), "attention_mask": (B, L)} for encode_text_tokens."""
        ids, mask = self.backbone.tokenize(list(texts))
        return {"input_ids": ids, "attention_mask": mask}

    def _pool(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over valid positions -> head -> L2 normalise: (B, L, H), (B, L) -> (B, D)."""
        m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, L, 1)
        pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, H)
        return F.normalize(self.head(pooled), dim=-1)  # (B, D)

    def encode_text_tokens(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        """(B, L) ids and mask -> (B, D) L2-normalised text embeddings."""
        embeds = self.backbone.embed_tokens(input_ids)  # (B, L, H)
        hidden = self.backbone(inputs_embeds=embeds, attention_mask=attention_mask)  # (B, L, H)
        joint = self._pool(hidden, attention_mask)  # (B, D)
        if self.dim == self.joint_dim:
            return joint
        return torch.cat([joint, joint.new_zeros(joint.shape[0], self.audio_dim)], -1)  # (B, D+Da)

    def encode_text(self, texts: Sequence[str]) -> torch.Tensor:
        """Texts -> (B, D) L2-normalised embeddings."""
        tok = self.tokenize(texts)
        device = self.logit_scale.device
        return self.encode_text_tokens(
            tok["input_ids"].to(device), tok["attention_mask"].to(device)
        )

    # ---- audio ------------------------------------------------------------------------------

    def audio_frames(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips -> audio-encoder frames (B, T, Da) and valid lengths (B,): what the trainer
        caches for a frozen audio encoder (then calls encode_frames). Each clip is first
        normalised as `config.audio_prep` says (voice_router.audio.prep)."""
        if self.normalizer.active:
            audios = [self.normalizer(a) for a in audios]
        feats, lengths = self.audio_encoder.featurize(audios)
        device = self.logit_scale.device
        frames, mask = self.audio_encoder(feats.to(device), lengths.to(device))  # (B, T, Da)
        return frames, mask.sum(-1).long()

    def _wrap_audio(
        self, x: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """[prefix] frames [suffix] with the backbone's special-token embeddings.

        (B, T, H), (B,) -> (B, T + P + S, H), mask (B, T + P + S).
        """
        b, t, h = x.shape
        pre_ids, suf_ids = [], []
        if self.config.audio_special_tokens and hasattr(self.backbone, "audio_special_ids"):
            pre_ids, suf_ids = self.backbone.audio_special_ids()
        valid = torch.arange(t, device=x.device)[None] < lengths[:, None]  # (B, T)
        x = x * valid.unsqueeze(-1).to(x.dtype)
        parts = []
        if pre_ids:
            ids = torch.tensor(pre_ids, device=x.device)
            parts.append(self.backbone.embed_tokens(ids).to(x.dtype).expand(b, -1, -1))  # (B, P, H)
        parts.append(x)
        if suf_ids:
            parts.append(x.new_zeros(b, len(suf_ids), h))
        out = torch.cat(parts, dim=1)  # (B, L, H)
        if suf_ids:
            suf = self.backbone.embed_tokens(torch.tensor(suf_ids, device=x.device)).to(x.dtype)
            rows = torch.arange(b, device=x.device)
            for j in range(len(suf_ids)):
                pos = len(pre_ids) + lengths + j  # (B,)
                out = out.index_put((rows, pos), suf[j].expand(b, h))
        total = len(pre_ids) + lengths + len(suf_ids)  # (B,)
        mask = torch.arange(out.shape[1], device=x.device)[None] < total[:, None]  # (B, L)
        return out, mask.long()

    def encode_frames(self, frames: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Audio-encoder frames (B, T, Da) + valid lengths (B,) -> (B, D) normalised.

        audio_path "backbone": prenet -> projector -> [CLS] x [SEP] -> backbone -> mean pool;
        audio_path "pool": prenet -> projector -> mean over valid frames. Then head, L2.
        With `acoustic_weight` > 0 the L2-normalised mean of the frames themselves follows,
        weighted: (B, D + Da), still unit length.
        """
        lengths = lengths.to(frames.device).long()
        h, hl = self.prenet(frames, lengths)  # (B, T', P), (B,)
        x = self.projector(h)  # (B, T', H)
        if self.config.audio_path == "pool":
            mask = torch.arange(x.shape[1], device=x.device)[None] < hl[:, None]  # (B, T')
            if self.attn_pool is not None:
                joint = F.normalize(self.head(self.attn_pool(x, mask)), dim=-1)  # (B, D)
            else:
                joint = self._pool(x, mask)  # (B, D)
        else:
            x, mask = self._wrap_audio(x, hl)  # (B, L, H), (B, L)
            hidden = self.backbone(inputs_embeds=x, attention_mask=mask)  # (B, L, H)
            joint = self._pool(hidden, mask)  # (B, D)
        if self.dim == self.joint_dim:
            return joint
        w = self.config.acoustic_weight
        valid = torch.arange(frames.shape[1], device=frames.device)[None] < lengths[:, None]
        m = valid.to(frames.dtype).unsqueeze(-1)  # (B, T, 1)
        acoustic = (frames * m).sum(1) / m.sum(1).clamp(min=1.0)  # (B, Da)
        acoustic = F.normalize(acoustic, dim=-1).to(joint.dtype)
        return torch.cat([math.sqrt(1 - w) * joint, math.sqrt(w) * acoustic], -1)  # (B, D+Da)

    def encode_audio(self, audios: Sequence[np.ndarray]) -> torch.Tensor:
        """Clips (16 kHz mono float32) -> (B, D) normalised (one pass each; no chunking)."""
        frames, lengths = self.audio_frames(audios)
        return self.encode_frames(frames, lengths)

    def forward(
        self,
        frames: torch.Tensor,
        lengths: torch.Tensor,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Training step helper: (audio (B, D), text (B, D)) embeddings."""
        return self.encode_frames(frames, lengths), self.encode_text_tokens(
            input_ids, attention_mask
        )

    # ---- identity ---------------------------------------------------------------------------

    def fingerprint(self) -> str:
        """sha256 over the canonical config JSON and our weights' bytes (first 16 hex)."""
        h = hashlib.sha256(canonical_config_json(self.config).encode())
        for k, v in sorted(self.trainable_state_dict().items()):
            h.update(k.encode() + b"\0")
            h.update(v.detach().to("cpu", torch.float32).contiguous().numpy().tobytes())
        return h.hexdigest()[:16]


# =============================================================================================
# Save / load


def save_model(
    model: AudioTextEmbedder,
    path: str | Path,
    *,
    dtype: Literal["float32", "float16"] = "float32",
    card: dict[str, Any] | None = None,
) -> Path:
    """Write config.json, model.safetensors (our weights only) and a README.md model card.

    dtype "float16" halves the file for shipping; weights are loaded back as float32.
    `card`: extra facts for the model card (training data, metrics...), see model/card.py.
    """
    from safetensors.torch import save_file

    from voice_router.model.card import render_model_card

    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    want = torch.float16 if dtype == "float16" else torch.float32
    state = {
        k: v.detach().to("cpu", want if v.is_floating_point() else v.dtype).contiguous()
        for k, v in model.trainable_state_dict().items()
    }
    (out / CONFIG_NAME).write_text(canonical_config_json(model.config), encoding="utf-8")
    save_file(state, str(out / WEIGHTS_NAME), metadata={"format": "pt", "dtype": dtype})
    (out / CARD_NAME).write_text(render_model_card(model, card or {}), encoding="utf-8")
    return out


def load_embedder(path: str | Path) -> AudioTextEmbedder:
    """Load a saved model folder (config validated first; weights loaded as float32)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    folder = Path(path)
    if not folder.is_dir():
        raise ModelError(f"model folder {folder} does not exist")
    config = read_config(folder / CONFIG_NAME) if (folder / CONFIG_NAME).is_file() else None
    if config is None:
        raise ModelError(f"{folder} has no {CONFIG_NAME}; is it a saved voice-router model?")
    weights = folder / WEIGHTS_NAME
    if not weights.is_file():
        raise ModelError(f"{folder} has no {WEIGHTS_NAME}; the model was not saved completely")
    try:
        state = load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as e:
        raise ModelError(f"{weights} is not a readable safetensors file: {e}") from e
    model = AudioTextEmbedder(config)
    model.load_trainable_state_dict(
        {k: v.float() if v.is_floating_point() else v for k, v in state.items()}, str(weights)
    )
    return model.eval()
