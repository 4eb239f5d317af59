"""Whisper's audio encoder on UNPADDED audio: the default model's speech tower.

Why: Whisper was trained on 30 s windows, and `transformers.WhisperEncoder` pads every clip to
30 s (3,000 mel frames -> 1,500 positions), which costs ~10x the compute of a 3 s command. The
encoder itself is convolutional up front and attends globally after, so a head that is trained
on its outputs works on unpadded input when the position table is sliced to the input length.

Two parts, both free of transformers so inference stays light:
- `log_mel`: Whisper's front-end (80 or 128 Slaney mel bins, 25 ms Hann window, 10 ms hop,
  log10, floor at max - 8, (x + 4) / 4), with the max taken PER CLIP (one convention for
  training, queries and exemplars alike);
- `WhisperAudioEncoder`: conv(k3) -> GELU -> conv(k3, stride 2) -> GELU -> + positions ->
  pre-norm transformer layers -> LayerNorm, one frame per 20 ms. Parameter names follow
  `transformers.WhisperEncoder`, so a hub checkpoint's encoder loads as it is
  (`load_hf_whisper_encoder`), and the bundled tiny.en tower converted from CTranslate2
  (scripts/convert_whisper_ct2.py) uses the same names. Padded batches are masked (keys and
  conv inputs), so a clip gives the same frames alone or in a batch.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voice_router.errors import ModelError
from voice_router.model.mel import HOP, N_FFT, SAMPLE_RATE, mel_filters

__all__ = ["HOP", "N_FFT", "SAMPLE_RATE", "mel_filters"]  # re-exported for older imports


class LogMel(nn.Module):
    """Whisper's log-mel front-end, per clip: (B, S) waves + lengths -> (B, n_mels, T) + (B,).

    T = S // 160 frames (Whisper drops the last STFT frame). The dynamic-range floor
    (max - 8 in log10 units) uses each clip's own maximum over its valid frames.
    """

    def __init__(self, n_mels: int = 80) -> None:
        super().__init__()
        self.n_mels = n_mels
        self.register_buffer("window", torch.hann_window(N_FFT), persistent=False)
        self.register_buffer("filters", torch.from_numpy(mel_filters(n_mels)), persistent=False)

    def forward(
        self, waves: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        half = N_FFT // 2
        padded = waves.new_zeros(waves.shape[0], waves.shape[1] + 2 * half)  # (B, S + 400)
        for i, n in enumerate(lengths.tolist()):  # reflect at each clip's own edges (centre=True)
            n = max(int(n), half + 1)
            padded[i, : n + 2 * half] = F.pad(waves[i : i + 1, :n], (half, half), mode="reflect")[0]
        stft = torch.stft(
            padded, N_FFT, HOP, window=self.window, center=False, return_complex=True
        )  # (B, F, S // 160 + 1)
        power = stft[..., :-1].abs() ** 2  # (B, F, T)
        mel = self.filters @ power  # (n_mels, F) @ (B, F, T) -> (B, n_mels, T)
        log = torch.clamp(mel, min=1e-10).log10()  # (B, n_mels, T)
        frames = (lengths // HOP).clamp(min=1)  # (B,)
        valid = torch.arange(log.shape[-1], device=log.device)[None] < frames[:, None]  # (B, T)
        peak = log.masked_fill(~valid[:, None, :], -torch.inf).amax(dim=(1, 2))  # (B,)
        log = torch.maximum(log, (peak - 8.0)[:, None, None])
        log = (log + 4.0) / 4.0
        return log * valid[:, None, :].to(log.dtype), frames


@functools.lru_cache(maxsize=4)
def _log_mel_module(n_mels: int) -> LogMel:
    """One LogMel per bin count (its mel bank and window are built once, not per call)."""
    return LogMel(n_mels)


def log_mel(audios: Sequence[np.ndarray], n_mels: int = 80) -> tuple[torch.Tensor, torch.Tensor]:
    """16 kHz mono float32 clips -> Whisper log-mel (B, n_mels, T) zero-padded, frames (B,)."""
    waves, lengths = pad_waves(audios)
    return _log_mel_module(n_mels)(waves, lengths)


def pad_waves(
    audios: Sequence[np.ndarray], min_len: int = N_FFT
) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips -> (waves (B, S) zero-padded to the longest, >= one window), lengths (B,)."""
    lengths = [len(a) for a in audios]
    s = max([min_len, *lengths])
    out = np.zeros((len(audios), s), np.float32)  # (B, S)
    for i, a in enumerate(audios):
        out[i, : len(a)] = a
    return torch.from_numpy(out), torch.tensor(lengths, dtype=torch.long)


class WhisperAttention(nn.Module):
    """Whisper's multi-head self-attention: its projections (the key has no bias) under
    transformers' names, so checkpoints load by name. The decoder that training/ runs in
    PyTorch subclasses it for cross-attention."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim, bias=False)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        """x (B, T, D) attends to itself; key_mask (B, T) bool, True = a real frame."""
        b, t, d = x.shape
        h = self.heads

        def split(y: torch.Tensor) -> torch.Tensor:
            return y.view(b, t, h, d // h).transpose(1, 2)  # (B, h, T, d/h)

        q, k, v = split(self.q_proj(x)), split(self.k_proj(x)), split(self.v_proj(x))
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, T)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, h, T, d/h)
        return self.out_proj(y.transpose(1, 2).reshape(b, t, d))  # (B, T, D)


class _Layer(nn.Module):
    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = WhisperAttention(dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, key_mask: torch.Tensor | None) -> torch.Tensor:
        x = x + self.self_attn(self.self_attn_layer_norm(x), key_mask)  # (B, T, D)
        return x + self.fc2(F.gelu(self.fc1(self.final_layer_norm(x))))  # (B, T, D)


class WhisperAudioEncoder(nn.Module):
    """Whisper's encoder without the 30 s padding; parameter names as transformers'.

    forward(mel (B, n_mels, T), frames (B,)) -> (hidden (B, ceil(T/2), D), mask (B, T') bool).
    `layers` < the checkpoint's count keeps only the first layers (a cheaper tower).
    """

    def __init__(
        self,
        n_mels: int = 80,
        dim: int = 384,
        layers: int = 4,
        heads: int = 6,
        ffn: int = 1536,
        max_positions: int = 1500,
    ) -> None:
        super().__init__()
        if dim % heads:
            raise ModelError(f"whisper encoder: dim {dim} is not divisible by heads {heads}")
        self.n_mels, self.dim, self.max_positions = n_mels, dim, max_positions
        self.conv1 = nn.Conv1d(n_mels, dim, 3, padding=1)
        self.conv2 = nn.Conv1d(dim, dim, 3, stride=2, padding=1)
        self.embed_positions = nn.Embedding(max_positions, dim)
        self.layers = nn.ModuleList(_Layer(dim, heads, ffn) for _ in range(layers))
        self.layer_norm = nn.LayerNorm(dim)

    @staticmethod
    def output_lengths(frames: torch.Tensor) -> torch.Tensor:
        """Encoder positions for `frames` mel frames (the stride-2 conv): (B,) -> (B,)."""
        return (frames - 1) // 2 + 1

    def forward(self, mel: torch.Tensor, frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = mel.shape[-1]
        in_valid = (torch.arange(t, device=mel.device)[None] < frames[:, None])[:, None]  # (B,1,T)
        x = F.gelu(self.conv1(mel)) * in_valid  # (B, D, T), padding zeroed as in a lone clip
        x = F.gelu(self.conv2(x))  # (B, D, T')
        x = x.transpose(1, 2)  # (B, T', D)
        tp = x.shape[1]
        if tp > self.max_positions:
            raise ModelError(
                f"audio too long for the Whisper encoder: {tp} positions > {self.max_positions} "
                f"({self.max_positions // 50} s); embed it in shorter chunks"
            )
        out_len = self.output_lengths(frames)  # (B,)
        mask = torch.arange(tp, device=mel.device)[None] < out_len[:, None]  # (B, T')
        x = x + self.embed_positions.weight[:tp]  # (B, T', D)
        key_mask = None if bool(mask.all()) else mask
        for layer in self.layers:
            x = layer(x, key_mask)
        return self.layer_norm(x) * mask[..., None], mask


def encoder_kwargs_from_hf_config(conf: dict[str, Any]) -> dict[str, int]:
    """WhisperConfig fields -> WhisperAudioEncoder kwargs."""
    return {
        "n_mels": int(conf.get("num_mel_bins", 80)),
        "dim": int(conf["d_model"]),
        "layers": int(conf["encoder_layers"]),
        "heads": int(conf["encoder_attention_heads"]),
        "ffn": int(conf["encoder_ffn_dim"]),
        "max_positions": int(conf.get("max_source_positions", 1500)),
    }


def load_hf_whisper_encoder(folder: str | Path, layers: int | None = None) -> WhisperAudioEncoder:
    """The encoder of a transformers Whisper checkpoint folder (config.json + safetensors).

    Reads `model.encoder.*` (WhisperForConditionalGeneration / WhisperModel) or `encoder.*`
    tensors; `layers` keeps only the first N transformer layers.
    """
    from safetensors.torch import load_file

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise ModelError(f"{folder} has no .safetensors weights for a Whisper encoder")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        for k, v in load_file(str(f)).items():
            for prefix in ("model.encoder.", "encoder."):
                if k.startswith(prefix):
                    state[k[len(prefix) :]] = v
    return _encoder_from(folder, state, layers)


def _encoder_from(
    folder: Path, state: dict[str, torch.Tensor], layers: int | None
) -> WhisperAudioEncoder:
    """A WhisperAudioEncoder shaped by folder/config.json (first `layers` layers) with `state`."""
    conf = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    kw = encoder_kwargs_from_hf_config(conf)
    if layers is not None:
        kw["layers"] = min(layers, kw["layers"])
    enc = WhisperAudioEncoder(**kw)
    load_encoder_state(enc, state, str(folder))
    return enc


def load_encoder_state(
    enc: WhisperAudioEncoder, state: dict[str, torch.Tensor], where: str
) -> None:
    """Copy encoder tensors into `enc` (float32); extra layers in `state` are ignored, a missing
    or mis-shaped tensor is a ModelError naming it."""
    own = enc.state_dict()
    problems = [k for k in own if k not in state]
    problems += [
        f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in state and tuple(state[k].shape) != tuple(own[k].shape)
    ]
    if problems:
        raise ModelError(f"{where}: Whisper encoder tensors missing or mis-shaped: {problems[:5]}")
    with torch.no_grad():
        for k, v in own.items():
            v.copy_(state[k].to(v.dtype))


BUNDLED_WHISPER = Path(__file__).resolve().parent.parent / "weights" / "whisper_tiny_en"


def load_whisper_encoder(
    spec: str | Path = "bundled", layers: int | None = None
) -> WhisperAudioEncoder:
    """A Whisper encoder from "bundled" (tiny.en, shipped with voice-router, MIT), a folder
    written by scripts/convert_whisper_ct2.py (config.json + encoder.safetensors), or a
    transformers Whisper checkpoint folder (e.g. a hub snapshot of openai/whisper-base.en)."""
    from safetensors.torch import load_file

    folder = BUNDLED_WHISPER if str(spec) == "bundled" else Path(spec).expanduser()
    if not (folder / "config.json").is_file():
        raise ModelError(
            f"no Whisper encoder at {folder} (config.json missing); pass 'bundled' or a folder "
            "with config.json and safetensors weights"
        )
    if not (folder / "encoder.safetensors").is_file():
        return load_hf_whisper_encoder(folder, layers)
    return _encoder_from(folder, load_file(str(folder / "encoder.safetensors")), layers)


def load_bundled_whisper(layers: int | None = None) -> WhisperAudioEncoder:
    """The bundled Whisper tiny.en encoder (float32)."""
    return load_whisper_encoder("bundled", layers)
