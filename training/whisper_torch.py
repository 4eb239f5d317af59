"""Whisper's text decoder in PyTorch, for training readers on cached encoder frames.

Why not transformers' WhisperDecoder: it has no cross-attention mask (Whisper always sees 30 s
of padded audio), and a training batch holds clips of different lengths, zero-padded. This
decoder is the same network with a key-padding mask on the encoder frames; its parameter names
are transformers' (`embed_tokens`, `layers.N.self_attn.q_proj`, `layers.N.encoder_attn...`),
so the bundled fp16 tiny.en weights (voice_router/weights/whisper_tiny_en/decoder.safetensors)
and a transformers WhisperDecoder state dict load as they are. The numpy decoder of the runtime
(voice_router.model.whisper_decoder) is the reference it is tested against.

One call runs a whole input sequence in parallel (causal self-attention, no key/value cache):
what a reader needs, since it feeds fixed prompt tokens and learned query vectors, never its
own outputs.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from voice_router.model.parts import LoRALinear
from voice_router.model.whisper import WhisperAttention
from voice_router.model.whisper_decoder import BUNDLED, DECODER_FILE, DecoderConfig

#: Attention projections LoRA may wrap: q and v of the self- and the cross-attention.
LORA_TARGETS = (
    "self_attn.q_proj",
    "self_attn.v_proj",
    "encoder_attn.q_proj",
    "encoder_attn.v_proj",
)


class Attention(WhisperAttention):
    """Whisper's attention (the encoder's projections and names) where the queries may attend
    to another sequence: the decoder's self- and cross-attention."""

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, kv: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """x (B, n, D) attends to kv (B, m, D); mask (B or 1, 1, n, m) bool, True = may attend."""
        b, n, d = x.shape
        m = kv.shape[1]
        h = self.heads
        q = self.q_proj(x).view(b, n, h, d // h).transpose(1, 2)  # (B, H, n, dh)
        k = self.k_proj(kv).view(b, m, h, d // h).transpose(1, 2)  # (B, H, m, dh)
        v = self.v_proj(kv).view(b, m, h, d // h).transpose(1, 2)  # (B, H, m, dh)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # (B, H, n, dh)
        return self.out_proj(y.transpose(1, 2).reshape(b, n, d))  # (B, n, D)


class DecoderLayer(nn.Module):
    """Pre-norm block: causal self-attention, cross-attention to the frames, GELU MLP."""

    def __init__(self, dim: int, heads: int, ffn: int) -> None:
        super().__init__()
        self.self_attn = Attention(dim, heads)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.encoder_attn = Attention(dim, heads)
        self.encoder_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, ffn)
        self.fc2 = nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(
        self,
        x: torch.Tensor,
        frames: torch.Tensor,
        causal: torch.Tensor,
        cross_mask: torch.Tensor | None,
    ) -> torch.Tensor:
        """x (B, n, D), frames (B, T, D), causal (1, 1, n, n), cross_mask (B, 1, 1, T)."""
        y = self.self_attn_layer_norm(x)
        x = x + self.self_attn(y, y, causal)  # (B, n, D)
        y = self.encoder_attn_layer_norm(x)
        x = x + self.encoder_attn(y, frames, cross_mask)  # (B, n, D)
        y = self.final_layer_norm(x)
        return x + self.fc2(F.gelu(self.fc1(y)))  # (B, n, D)


class TorchWhisperDecoder(nn.Module):
    """Whisper's decoder: input embeddings + encoder frames -> final hidden states.

    `embed(tokens)` gives token embeddings (B, n, D); `forward(inputs, frames, frame_mask)`
    adds positions 0..n-1 and returns the final (layer-normed) hidden states (B, n, D);
    `logits(hidden)` applies the tied output layer (..., V)."""

    def __init__(self, config: DecoderConfig) -> None:
        super().__init__()
        c = config
        if c.dim % c.heads:
            raise ValueError(f"decoder dim {c.dim} is not divisible by heads {c.heads}")
        self.config = config
        self.embed_tokens = nn.Embedding(c.vocab_size, c.dim)
        self.embed_positions = nn.Embedding(c.max_positions, c.dim)
        self.layers = nn.ModuleList(DecoderLayer(c.dim, c.heads, c.ffn) for _ in range(c.layers))
        self.layer_norm = nn.LayerNorm(c.dim)

    @classmethod
    def load(cls, folder: str | Path = "bundled") -> TorchWhisperDecoder:
        """The bundled tiny.en decoder (or a folder with decoder.json + decoder.safetensors),
        float32, in eval mode, every parameter frozen (requires_grad False)."""
        from safetensors.torch import load_file

        path = BUNDLED if str(folder) == "bundled" else Path(folder)
        conf = DecoderConfig.from_dict(json.loads((path / "decoder.json").read_text()))
        dec = cls(conf)
        state = {k: v.float() for k, v in load_file(str(path / DECODER_FILE)).items()}
        dec.load_state_dict(state, strict=True)
        return dec.freeze().eval()

    def freeze(self) -> TorchWhisperDecoder:
        """Every parameter not of a LoRA adapter stops learning."""
        for name, p in self.named_parameters():
            p.requires_grad_("lora_" in name)
        return self

    def add_lora(
        self, rank: int = 8, alpha: float = 16.0, targets: Iterable[str] = LORA_TARGETS
    ) -> list[nn.Parameter]:
        """Wrap `targets` of every layer in LoRALinear (starts equal to the base layer); returns
        the new trainable parameters."""
        new: list[nn.Parameter] = []
        for layer in self.layers:
            for target in targets:
                part, proj = target.split(".")
                attn = getattr(layer, part)
                lora = LoRALinear(getattr(attn, proj), rank, alpha, 0.0)
                lora.base.requires_grad_(False)
                setattr(attn, proj, lora)
                new += [lora.lora_A, lora.lora_B]
        return new

    def embed(self, tokens: torch.Tensor) -> torch.Tensor:
        """(B, n) or (n,) token ids -> token embeddings (..., D), no positions."""
        return self.embed_tokens(tokens)

    def forward(
        self,
        inputs: torch.Tensor,
        frames: torch.Tensor,
        frame_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """inputs (B, n, D) embeddings at positions 0..n-1, frames (B, T, D), frame_mask (B, T)
        True/1 = a real frame -> final hidden states (B, n, D)."""
        b, n, _ = inputs.shape
        if n > self.config.max_positions:
            raise ValueError(f"{n} decoder inputs exceed {self.config.max_positions} positions")
        pos = torch.arange(n, device=inputs.device)
        x = inputs + self.embed_positions(pos)[None]  # (B, n, D)
        causal = torch.ones(n, n, dtype=torch.bool, device=x.device).tril()[None, None]  # (1,1,n,n)
        cross = None
        if frame_mask is not None:
            cross = frame_mask.bool()[:, None, None, :]  # (B, 1, 1, T)
        frames = frames.to(x.dtype)
        for layer in self.layers:
            x = layer(x, frames, causal, cross)  # (B, n, D)
        return self.layer_norm(x)  # (B, n, D)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) final hidden states -> (..., V) logits (the tied token embedding)."""
        return hidden @ self.embed_tokens.weight.T  # (..., D) @ (D, V)


def tiny_decoder_config(
    vocab: int = 64, dim: int = 32, layers: int = 2, heads: int = 4
) -> DecoderConfig:
    """A small random decoder's shape, for tests."""
    return DecoderConfig(
        vocab_size=vocab, dim=dim, layers=layers, heads=heads, ffn=2 * dim, max_positions=32
    )
