"""The built-in parts of an AudioTextEmbedder: audio encoders (the speech_embedding front-end,
a tiny conv for tests, Whisper on unpadded audio), attention pooling, LoRA, the BERT-style
backbone (all-MiniLM-L6-v2) and the prenet. Each builder is listed by name in
voice_router.model.registry."""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voice_router.errors import ModelError
from voice_router.model.config import (
    BertBackboneConfig,
    LoraConfig,
    PrenetConfig,
    TinyConvEncoderConfig,
    WhisperUnpaddedEncoderConfig,
    resolve_package_dir,
)
from voice_router.model.speech_embedding import (
    EMBED_DIM,
    MIN_SAMPLES,
    SpeechEmbeddingFrontend,
    load_speech_embedding_frontend,
)

# =============================================================================================
# Built-in audio encoders


def _pad_batch(audios: Sequence[np.ndarray], min_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clips -> (waves (B, S) zero-padded to the longest (>= min_len), lengths (B,) samples)."""
    from voice_router.model.whisper import pad_waves

    return pad_waves(audios, min_len)


class SpeechEmbeddingEncoder(nn.Module):
    """Frozen speech_embedding front-end as an audio encoder: waves -> 96-dim frames / 80 ms."""

    output_dim = EMBED_DIM

    def __init__(self) -> None:
        super().__init__()
        # A private copy, so moving or casting this model never touches the cached instance.
        self.frontend: SpeechEmbeddingFrontend = copy.deepcopy(load_speech_embedding_frontend())
        self.frontend.requires_grad_(False)

    def train(self, mode: bool = True) -> SpeechEmbeddingEncoder:
        super().train(mode)
        self.frontend.eval()  # always frozen
        return self

    def featurize(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips -> (waves (B, S), lengths (B,) in samples)."""
        return _pad_batch(audios, MIN_SAMPLES)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waves, (B,) sample counts -> frames (B, T, 96), mask (B, T)."""
        frames = self.frontend(features)  # (B, T, 96)
        n = torch.tensor(
            [self.frontend.frames_for(int(x)) for x in lengths.tolist()], device=frames.device
        )  # (B,)
        mask = torch.arange(frames.shape[1], device=frames.device)[None] < n[:, None]  # (B, T)
        return frames, mask


def build_speech_embedding_encoder(section: dict[str, Any]) -> nn.Module:
    """Builder for `audio_encoder.name: speech_embedding`."""
    enc = SpeechEmbeddingEncoder()
    enc.pretrained_all = True  # every tensor comes from the pyopen-wakeword package
    return enc


class TinyConvEncoder(nn.Module):
    """Random tiny encoder for tests: frames of raw samples -> linear -> convs (B, T, dim)."""

    def __init__(self, dim: int, frame_samples: int, layers: int) -> None:
        super().__init__()
        self.output_dim = dim
        self.frame_samples = frame_samples
        self.inp = nn.Linear(frame_samples, dim)
        self.convs = nn.ModuleList(nn.Conv1d(dim, dim, 3, padding=1) for _ in range(layers))

    def featurize(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips -> (waves (B, S), lengths (B,) in samples)."""
        return _pad_batch(audios, self.frame_samples)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S), (B,) -> (B, T, dim), mask (B, T); T = S // frame_samples."""
        b, s = features.shape
        t = s // self.frame_samples
        x = features[:, : t * self.frame_samples].reshape(b, t, self.frame_samples)  # (B, T, fs)
        n = (lengths.to(x.device) // self.frame_samples).clamp(min=1)  # (B,)
        mask = torch.arange(t, device=x.device)[None] < n[:, None]  # (B, T)
        keep = mask[:, None, :].to(x.dtype)  # (B, 1, T): padding never leaks into valid frames
        x = F.gelu(self.inp(x)).transpose(1, 2) * keep  # (B, dim, T)
        for conv in self.convs:
            x = (x + F.gelu(conv(x))) * keep  # (B, dim, T)
        return x.transpose(1, 2), mask  # (B, T, dim)


def build_tiny_conv_encoder(section: dict[str, Any]) -> nn.Module:
    """Builder for `audio_encoder.name: tiny_conv` (random weights, seeded by the model)."""
    cfg = TinyConvEncoderConfig.model_validate(section)
    return TinyConvEncoder(cfg.dim, cfg.frame_samples, cfg.layers)


class WhisperUnpaddedEncoder(nn.Module):
    """Frozen Whisper encoder on unpadded audio: waves -> log-mel -> (B, T/2, D) per 20 ms."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        from voice_router.model.whisper import LogMel

        self.encoder = encoder.requires_grad_(False)
        self.logmel = LogMel(encoder.n_mels)
        self.output_dim = int(encoder.dim)

    def train(self, mode: bool = True) -> WhisperUnpaddedEncoder:
        super().train(mode)
        self.encoder.eval()  # always frozen
        return self

    def featurize(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips -> (waves (B, S), lengths (B,) in samples)."""
        from voice_router.model.whisper import N_FFT

        return _pad_batch(audios, N_FFT)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, S) waves, (B,) sample counts -> frames (B, T', D), mask (B, T')."""
        mel, frames = self.logmel(features, lengths.to(features.device))  # (B, n_mels, T)
        return self.encoder(mel, frames)


def build_whisper_unpadded_encoder(section: dict[str, Any]) -> nn.Module:
    """Builder for `audio_encoder.name: whisper_unpadded`."""
    from voice_router.model.whisper import WhisperAudioEncoder, load_whisper_encoder

    cfg = WhisperUnpaddedEncoderConfig.model_validate(section)
    if cfg.pretrained is None:
        kw = dict(cfg.config)
        if cfg.layers is not None:
            kw["layers"] = cfg.layers
        return WhisperUnpaddedEncoder(WhisperAudioEncoder(**kw))
    enc = WhisperUnpaddedEncoder(load_whisper_encoder(cfg.pretrained, cfg.layers))
    enc.pretrained_all = True  # every tensor comes from the Whisper weights folder
    return enc


class AttentionPool(nn.Module):
    """Multi-head attention pooling: each head scores every frame, softmax over valid frames,
    and takes the weighted mean of its slice of the features. (B, T, H), (B, T) -> (B, H)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        if dim % heads:
            raise ModelError(f"audio_pool_heads ({heads}) must divide the hidden size ({dim})")
        self.heads = heads
        self.score = nn.Linear(dim, heads)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        logits = self.score(x).masked_fill(~mask[..., None], -torch.inf)  # (B, T, h)
        w = logits.softmax(dim=1)  # (B, T, h)
        xs = x.view(b, t, self.heads, d // self.heads)  # (B, T, h, d/h)
        return (w[..., None] * xs).sum(1).reshape(b, d)  # (B, H)


# =============================================================================================
# Built-in backbone: BERT-family encoder with optional LoRA


class LoRALinear(nn.Module):
    """y = base(x) + scale * B(A(dropout(x))); B starts at zero, so the layer starts == base."""

    def __init__(self, base: nn.Linear, rank: int, alpha: float, dropout: float) -> None:
        super().__init__()
        self.base = base
        self.lora_A = nn.Parameter(torch.empty(rank, base.in_features))
        self.lora_B = nn.Parameter(torch.zeros(base.out_features, rank))
        nn.init.kaiming_uniform_(self.lora_A, a=math.sqrt(5))
        self.scaling = alpha / rank
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        delta = F.linear(F.linear(self.dropout(x), self.lora_A), self.lora_B)  # (..., out)
        return self.base(x) + delta * self.scaling


class BertEncoderBackbone(nn.Module):
    """transformers BertModel (no pooler) + its WordPiece tokenizer, with the backbone contract."""

    def __init__(self, cfg: BertBackboneConfig) -> None:
        super().__init__()
        from tokenizers import Tokenizer
        from transformers import BertConfig, BertModel

        tok_path = resolve_package_dir(cfg.tokenizer) / "tokenizer.json"
        if not tok_path.is_file():
            raise ModelError(f"tokenizer file {tok_path} not found")
        self.tokenizer = Tokenizer.from_file(str(tok_path))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length=cfg.max_length)
        self.max_length = cfg.max_length
        self.pad_id = self.tokenizer.token_to_id("[PAD]") or 0
        self.cls_id = self.tokenizer.token_to_id("[CLS]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")

        if cfg.pretrained:
            folder = resolve_package_dir(cfg.pretrained)
            conf = BertConfig.from_json_file(str(folder / "config.json"))
            for k, v in cfg.config.items():
                setattr(conf, k, v)
            self.model = BertModel(conf, add_pooling_layer=False)
            self._load_pretrained(folder / "model.safetensors")
        else:
            conf = BertConfig(vocab_size=self.tokenizer.get_vocab_size(), **cfg.config)
            self.model = BertModel(conf, add_pooling_layer=False)
        self.pretrained_all = bool(cfg.pretrained)  # every non-LoRA tensor is pretrained
        self.hidden_size = int(conf.hidden_size)
        if not cfg.trainable:
            self.model.requires_grad_(False)
        if cfg.lora is not None:
            self._add_lora(cfg.lora)
        # Nothing in it learns: keep it in eval mode (no dropout) even while the model trains,
        # so text targets stay exactly the pretrained model's.
        self.fully_frozen = not cfg.trainable and cfg.lora is None

    def train(self, mode: bool = True) -> BertEncoderBackbone:
        super().train(mode)
        if self.fully_frozen:
            self.model.eval()
        return self

    def _load_pretrained(self, path: Path) -> None:
        from safetensors.torch import load_file

        if not path.is_file():
            raise ModelError(f"pretrained weights {path} not found; reinstall the package")
        state = {k.removeprefix("bert."): v for k, v in load_file(str(path)).items()}
        state = {k: v for k, v in state.items() if not k.startswith("pooler.")}
        own = self.model.state_dict()
        missing = [k for k in own if k not in state]
        # position_ids is a non-persistent buffer in recent transformers: allowed in the file.
        unexpected = [k for k in state if k not in own and not k.endswith("position_ids")]
        if missing or unexpected:
            raise ModelError(
                f"{path} does not fit BertModel: missing {missing[:5]}, unexpected "
                f"{unexpected[:5]}; the package may be a different model"
            )
        self.model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=True)

    def _add_lora(self, lora: LoraConfig) -> None:
        for layer in self.model.encoder.layer:
            attn = layer.attention.self
            for target in lora.targets:
                base = getattr(attn, target)
                setattr(attn, target, LoRALinear(base, lora.rank, lora.alpha, lora.dropout))

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (input_ids (B, L), attention_mask (B, L)), padded to the longest."""
        enc = self.tokenizer.encode_batch(list(texts))
        n = max(len(e.ids) for e in enc)
        ids = torch.full((len(enc), n), self.pad_id, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(enc), n), dtype=torch.long)  # (B, L)
        for i, e in enumerate(enc):
            ids[i, : len(e.ids)] = torch.tensor(e.ids)
            mask[i, : len(e.ids)] = 1
        return ids, mask

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, H) word embeddings (positions are added inside forward)."""
        return self.model.get_input_embeddings()(input_ids)

    def get_input_embeddings(self) -> nn.Module:
        return self.model.get_input_embeddings()

    def audio_special_ids(self) -> tuple[list[int], list[int]]:
        """Audio frames are wrapped like text: [CLS] frames [SEP]."""
        return [self.cls_id], [self.sep_id]

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, H), (B, L) -> last hidden state (B, L, H)."""
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return out.last_hidden_state


def build_bert_encoder(section: dict[str, Any]) -> nn.Module:
    """Builder for `backbone.name: bert_encoder`."""
    return BertEncoderBackbone(BertBackboneConfig.model_validate(section))


# =============================================================================================
# Prenet


class Prenet(nn.Module):
    """Trainable sequence model over audio frames; carries word order and small words.

    LayerNorm(in) -> Linear(in, dim) -> conv blocks (the first may stride 2 in time) ->
    learned positions -> pre-norm transformer layers -> LayerNorm.
    """

    def __init__(self, in_dim: int, cfg: PrenetConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.in_norm = nn.LayerNorm(in_dim)
        self.inp = nn.Linear(in_dim, cfg.dim)
        self.convs = nn.ModuleList(
            nn.Conv1d(
                cfg.dim,
                cfg.dim,
                cfg.kernel_size,
                stride=cfg.stride if i == 0 else 1,
                padding=cfg.kernel_size // 2,
            )
            for i in range(cfg.conv_layers)
        )
        self.pos = nn.Embedding(cfg.max_frames, cfg.dim)
        nn.init.normal_(self.pos.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(
            cfg.dim,
            cfg.heads,
            cfg.dim * cfg.ff_mult,
            cfg.dropout,
            activation="gelu",
            batch_first=True,
            norm_first=True,
        )
        self.transformer = (
            nn.TransformerEncoder(layer, cfg.transformer_layers, enable_nested_tensor=False)
            if cfg.transformer_layers
            else None
        )
        self.out_norm = nn.LayerNorm(cfg.dim)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Valid frames after the (possibly strided) first conv."""
        if self.cfg.stride == 1 or not self.convs:
            return lengths
        k, p = self.cfg.kernel_size, self.cfg.kernel_size // 2
        return ((lengths + 2 * p - k) // self.cfg.stride + 1).clamp(min=1)

    def _input_pool(
        self, frames: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean of every `input_pool` valid frames: (B, T, D), (B,) -> (B, ceil(T/p), D)."""
        p = self.cfg.input_pool
        t = frames.shape[1]
        valid = (torch.arange(t, device=frames.device)[None] < lengths[:, None]).to(frames.dtype)
        valid = valid[:, None, :]  # (B, 1, T)
        # sum / count of valid frames per window (the pools' own divisors cancel)
        s = F.avg_pool1d(frames.transpose(1, 2) * valid, p, p, ceil_mode=True)  # (B, D, T/p)
        n = F.avg_pool1d(valid, p, p, ceil_mode=True)  # (B, 1, T/p)
        return (s / n.clamp(min=1e-6)).transpose(1, 2), (lengths + p - 1) // p

    def forward(
        self, frames: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, T, Din), (B,) -> (B, T', dim), (B,) valid lengths."""
        if self.cfg.input_pool > 1:
            frames, lengths = self._input_pool(frames, lengths)
        t = frames.shape[1]
        mask = (torch.arange(t, device=frames.device)[None] < lengths[:, None]).unsqueeze(-1)
        x = self.inp(self.in_norm(frames)) * mask  # (B, T, dim), padding zeroed
        out_len = lengths
        for i, conv in enumerate(self.convs):
            y = F.gelu(conv(x.transpose(1, 2))).transpose(1, 2)  # (B, T', dim)
            if i == 0 and self.cfg.stride != 1:
                out_len = self.output_lengths(lengths)
                x = y
            else:
                x = x + y
            mask = (torch.arange(x.shape[1], device=x.device)[None] < out_len[:, None]).unsqueeze(
                -1
            )  # (B, T', 1)
            x = x * mask
        if x.shape[1] > self.cfg.max_frames:
            raise ModelError(
                f"audio too long for this model: {x.shape[1]} prenet frames > max_frames "
                f"{self.cfg.max_frames}; embed it in shorter chunks (max_seconds)"
            )
        x = x + self.pos.weight[: x.shape[1]]  # (B, T', dim)
        if self.transformer is not None:
            keys = mask.squeeze(-1)[:, None, None, :]  # (B, 1, 1, T'): attend to valid frames
            for layer in self.transformer.layers:
                x = self._layer(layer, x, keys)  # (B, T', dim)
        return self.out_norm(x) * mask, out_len

    def _layer(
        self, layer: nn.TransformerEncoderLayer, x: torch.Tensor, keys: torch.Tensor
    ) -> torch.Tensor:
        """One pre-norm nn.TransformerEncoderLayer (GELU), computed from its own parameters.

        Same maths as the module's forward, written out so that the traced graph keeps the
        frame count dynamic (ONNX export) and never takes torch's fused inference kernel.
        """
        b, t, d = x.shape
        h = self.cfg.heads
        p = self.cfg.dropout if self.training else 0.0
        attn = layer.self_attn
        qkv = F.linear(layer.norm1(x), attn.in_proj_weight, attn.in_proj_bias)  # (B, T, 3d)
        q, k, v = qkv.view(b, t, 3, h, d // h).permute(2, 0, 3, 1, 4)  # each (B, h, T, d/h)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=keys, dropout_p=p)  # (B,h,T,d/h)
        y = attn.out_proj(y.transpose(1, 2).reshape(b, t, d))  # (B, T, d)
        x = x + F.dropout(y, p, self.training)
        y = layer.linear2(F.dropout(F.gelu(layer.linear1(layer.norm2(x))), p, self.training))
        return x + F.dropout(y, p, self.training)  # (B, T, d)
