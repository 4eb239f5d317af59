"""Large audio towers and language-model backbones for the module-combination recipe.

Training-only (the training configs m1-m4, pruned7b_*, text_transfer, tiny.yaml use them; no
bundled model does), so they live here and not in the runtime package. Each part is built from
a plain config dict (the `audio_encoder` / `backbone` sections of a model config) by a builder
that importing this module registers under a short name in voice_router.model.registry (the
library never imports training/; training.train and training.retrieval_eval import this module, and
so must any other code that builds or loads a model of these configs):

    audio encoders: "whisper" (WhisperEncoder), "qwen2_5_omni" (Qwen2_5OmniAudioEncoder),
                    "qwen3_omni" (Qwen3OmniMoeAudioEncoder)
    backbones:      "qwen2" (Qwen2Model), "qwen3" (Qwen3Model), "bert" (BertModel),
                    "qwen2_5_omni_thinker" (the Omni thinker's language model)

Config keys understood by every builder:

    pretrained: null | false   -> random weights from `config` (tests; nothing is downloaded)
                "<dir or hub id>" -> pretrained weights. For the Omni towers this is an Omni
                checkpoint; the tower is built as a standalone shell from its config.json
                (`thinker_config.audio_config`) and its tensors under `checkpoint_prefix`
                (default "thinker.audio_tower.") are copied in by name (training/shells.py
                semantics: any missing, unexpected or mis-shaped tensor fails loudly).
    config: {...}               -> keyword overrides of the transformers config (tiny sizes in
                                   tests; real dimensions in training/configs/*.yaml).

Backbones with random weights use `ByteTokenizer` (UTF-8 bytes, no vocabulary file, so a tiny
model needs no download); pretrained backbones use the checkpoint's own tokenizer.

The common contract (what AudioTextEmbedder calls):

    AudioTower.featurize(16 kHz mono clips) -> (features (B, n_mels, T), lengths (B,))
    AudioTower.forward(features, lengths) -> (hidden (B, T', output_dim), mask (B, T') bool)
    Backbone.tokenize(list[str]) -> (input_ids (B, L), attention_mask (B, L))
    Backbone.embed_tokens(input_ids) -> (B, L, hidden_size)
    Backbone.forward(inputs_embeds (B, L, H), attention_mask (B, L)) -> last hidden (B, L, H)

The transformers audio-tower classes are not exported at transformers' top level; they are
imported from `transformers.models.qwen2_5_omni.modeling_qwen2_5_omni` and
`transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe` (checked with transformers 5.24).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from voice_router.errors import ModelError
from voice_router.model.registry import register_audio_encoder, register_backbone

SAMPLE_RATE = 16000
MAX_SECONDS = 30.0
OMNI_AUDIO_PREFIX = "thinker.audio_tower."


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def _is_pretrained(cfg: dict[str, Any]) -> bool:
    return bool(cfg.get("pretrained"))


def resolve_checkpoint_dir(name_or_path: str, prefix: str | None = None) -> Path:
    """A local checkpoint folder, or a hub id downloaded (users only; tests never download).

    Why: configs name real hub ids so that a user with network access can reproduce a run with
    one command, while anyone with a local copy points at the folder. With `prefix` (e.g.
    "thinker.audio_tower."), only the JSON/tokenizer files and the safetensors shards that hold
    tensors under the prefix are downloaded: the audio tower of a 30B Omni checkpoint without
    the rest of it.
    """
    p = Path(os.path.expanduser(name_or_path))
    if p.is_dir():
        return p
    if p.exists():
        raise ModelError(f"{name_or_path} is a file; give the checkpoint folder (config.json).")
    try:
        from huggingface_hub import snapshot_download
    except ImportError as e:  # pragma: no cover
        raise ModelError(
            f"{name_or_path!r} is not a local folder and huggingface_hub is not installed; "
            "download the checkpoint and pass its folder."
        ) from e
    try:
        if prefix is None:
            return Path(snapshot_download(name_or_path))
        meta = ["*.json", "*.txt", "*.model", "tokenizer*", "vocab*", "merges*"]
        local = Path(snapshot_download(name_or_path, allow_patterns=meta))
        indexes = sorted(local.glob("*.safetensors.index.json"))
        if indexes:
            weight_map = _read_json(indexes[0]).get("weight_map", {})
            shards = sorted({f for k, f in weight_map.items() if k.startswith(prefix)})
        else:
            shards = ["*.safetensors"]
        return Path(snapshot_download(name_or_path, allow_patterns=shards or meta))
    except ModelError:
        raise
    except Exception as e:  # network, unknown repo, ...
        raise ModelError(
            f"could not find or download {name_or_path!r} ({e}); pass a local checkpoint folder."
        ) from e


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ModelError(f"cannot read {path}: {e}") from e


def _pad_packed(packed: torch.Tensor, lengths: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Split a packed (sum(lengths), D) tensor into a padded (B, T, D) batch and a (B, T) mask."""
    if packed.shape[0] != sum(lengths):
        raise ModelError(
            f"audio tower produced {packed.shape[0]} frames, expected {sum(lengths)} "
            "(output-length formula out of date for this transformers version?)"
        )
    t = max(lengths)
    out = packed.new_zeros(len(lengths), t, packed.shape[-1])  # (B, T, D)
    mask = torch.zeros(len(lengths), t, dtype=torch.bool, device=packed.device)  # (B, T)
    start = 0
    for i, n in enumerate(lengths):
        out[i, :n] = packed[start : start + n]
        mask[i, :n] = True
        start += n
    return out, mask


class LogMelFeaturizer:
    """128-bin (configurable) Whisper log-mel features, built offline.

    `WhisperFeatureExtractor(feature_size=n_mels)` needs no file. Clips longer than 30 s are cut
    to 30 s (the recipe's limit). `pad_to` fixes the frame count (WhisperEncoder needs exactly
    `2 * max_source_positions` frames); otherwise batches pad to the longest clip.
    """

    def __init__(self, n_mels: int = 128, pad_to: int | None = None) -> None:
        from transformers import WhisperFeatureExtractor

        self.n_mels = n_mels
        self.pad_to = pad_to
        self.extractor = WhisperFeatureExtractor(feature_size=n_mels)

    def __call__(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """Clips -> (features (B, n_mels, T) float32, lengths (B,) long frames)."""
        max_n = int(MAX_SECONDS * SAMPLE_RATE)
        clips = [np.asarray(a, dtype=np.float32)[:max_n] for a in audios]
        if self.pad_to is not None:
            n_samples = self.pad_to * self.extractor.hop_length
            clips = [c[:n_samples] for c in clips]
            out = self.extractor(
                clips,
                sampling_rate=SAMPLE_RATE,
                padding="max_length",
                max_length=n_samples,
                truncation=True,
                return_attention_mask=True,
                return_tensors="pt",
            )
        else:
            out = self.extractor(
                clips,
                sampling_rate=SAMPLE_RATE,
                padding="longest",
                return_attention_mask=True,
                return_tensors="pt",
            )
        feats = out["input_features"].float()  # (B, n_mels, T)
        # Valid frames from the sample count (floor), not from the extractor's mask: the mask
        # counts one frame more for a clip that is padded than for the same clip when it is
        # the longest of its batch, which would make embeddings depend on the batch.
        hop = int(self.extractor.hop_length)
        n = torch.tensor([len(c) // hop for c in clips], dtype=torch.long)  # (B,)
        lengths = n.clamp(min=1, max=feats.shape[-1])  # (B,)
        return feats, lengths


# --------------------------------------------------------------------------------------------
# Audio towers
# --------------------------------------------------------------------------------------------


class AudioTower(nn.Module):
    """Base class: a log-mel audio encoder with the contract in the module docstring."""

    output_dim: int
    n_mels: int
    #: parameters the forward pass never uses: kept frozen (DDP needs a gradient for every
    #: trainable parameter), never trained, never saved as trained weights.
    never_trained: tuple[str, ...] = ()

    def __init__(self) -> None:
        super().__init__()
        self.featurizer: LogMelFeaturizer | None = None

    def featurize(self, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
        """16 kHz mono clips -> (features (B, n_mels, T), lengths (B,))."""
        assert self.featurizer is not None
        return self.featurizer(audios)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in the backward pass (trades compute for memory)."""
        enc = self.encoder
        if enabled:
            enc.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            enc.gradient_checkpointing_disable()


class WhisperTower(AudioTower):
    """WhisperEncoder; every clip is padded or cut to the fixed window (30 s at full size)."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        cfg = encoder.config
        self.output_dim = int(cfg.d_model)
        self.n_mels = int(cfg.num_mel_bins)
        self.frames = int(cfg.max_source_positions) * 2
        self.featurizer = LogMelFeaturizer(self.n_mels, pad_to=self.frames)

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_mels, frames), (B,) -> (B, frames/2, d_model), (B, frames/2) valid mask."""
        hidden = self.encoder(input_features=features).last_hidden_state  # (B, T', D)
        out_len = ((lengths - 1) // 2 + 1).clamp(max=hidden.shape[1])  # (B,)
        mask = torch.arange(hidden.shape[1], device=hidden.device)[None, :] < out_len[:, None]
        return hidden, mask  # (B, T', D), (B, T')


@register_audio_encoder("whisper")
def build_whisper(cfg: dict[str, Any]) -> AudioTower:
    """Builder for `audio_encoder.name: whisper` (random from `config`, or a Whisper checkpoint)."""
    from transformers import WhisperConfig
    from transformers.models.whisper.modeling_whisper import WhisperEncoder, WhisperModel

    if _is_pretrained(cfg):
        model = WhisperModel.from_pretrained(str(cfg["pretrained"]))
        return WhisperTower(model.get_encoder())
    conf = WhisperConfig(**dict(cfg.get("config") or {}))
    return WhisperTower(WhisperEncoder(conf))


class _OmniTower(AudioTower):
    """Shared code of the two Qwen Omni towers: packed variable-length input, no 30 s padding."""

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__()
        self.encoder = encoder
        cfg = encoder.config
        self.output_dim = int(cfg.output_dim)
        self.n_mels = int(cfg.num_mel_bins)
        self.featurizer = LogMelFeaturizer(self.n_mels)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def forward(
        self, features: torch.Tensor, lengths: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, n_mels, T), (B,) -> (B, T', output_dim), (B, T') valid mask."""
        lengths = lengths.to(features.device)
        packed_in = torch.cat(
            [features[i, :, : int(n)] for i, n in enumerate(lengths.tolist())], dim=1
        )  # (n_mels, sum T_i)
        hidden = self.encoder(
            input_features=packed_in, feature_lens=lengths
        ).last_hidden_state  # (sum T'_i, D)
        out_len = [int(n) for n in self.output_lengths(lengths).tolist()]
        return _pad_packed(hidden, out_len)


class Qwen25OmniTower(_OmniTower):
    """Qwen2_5OmniAudioEncoder. Its `audio_bos_eos_token` embedding is never used by the forward
    pass; it is frozen here by construction so DDP never waits for its gradient."""

    never_trained = ("encoder.audio_bos_eos_token.weight",)

    def __init__(self, encoder: nn.Module) -> None:
        super().__init__(encoder)
        encoder.audio_bos_eos_token.weight.requires_grad_(False)

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Frames after conv (stride 2) and the stride-2 average pooling."""
        return self.encoder._get_feat_extract_output_lengths(lengths)[1]


class Qwen3OmniTower(_OmniTower):
    """Qwen3OmniMoeAudioEncoder (the audio tower of Qwen3-Omni; 8x time downsampling)."""

    def output_lengths(self, lengths: torch.Tensor) -> torch.Tensor:
        """Output frames per clip (chunks of 2*n_window frames give 13 frames each)."""
        from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
            _get_feat_extract_output_lengths,
        )

        return _get_feat_extract_output_lengths(lengths, self.encoder.config.n_window)


def _omni_audio_config(ckpt: Path) -> dict[str, Any]:
    conf = _read_json(ckpt / "config.json")
    audio = (conf.get("thinker_config") or {}).get("audio_config") or conf.get("audio_config")
    if not isinstance(audio, dict):
        raise ModelError(
            f"{ckpt / 'config.json'} has no thinker_config.audio_config: not an Omni checkpoint."
        )
    return audio


def _build_omni(
    cfg: dict[str, Any], config_cls: type, model_cls: type, tower_cls: type
) -> AudioTower:
    """Random tower from `config`, or a shell of the checkpoint's dimensions filled by name."""
    overrides = dict(cfg.get("config") or {})
    if not _is_pretrained(cfg):
        return tower_cls(model_cls(config_cls(**overrides)))
    prefix = str(cfg.get("checkpoint_prefix") or OMNI_AUDIO_PREFIX)
    ckpt = resolve_checkpoint_dir(str(cfg["pretrained"]), prefix)
    base = {k: v for k, v in _omni_audio_config(ckpt).items() if not k.startswith("_")}
    base.pop("model_type", None)
    base.update(overrides)
    encoder = model_cls(config_cls(**base))
    copy_tensors_strict(encoder, read_prefixed_tensors(ckpt, prefix))
    return tower_cls(encoder)


@register_audio_encoder("qwen2_5_omni")
def build_qwen2_5_omni(cfg: dict[str, Any]) -> AudioTower:
    """Builder for `audio_encoder.name: qwen2_5_omni` (Qwen2.5-Omni 3B/7B audio tower)."""
    from transformers.models.qwen2_5_omni.configuration_qwen2_5_omni import (
        Qwen2_5OmniAudioEncoderConfig,
    )
    from transformers.models.qwen2_5_omni.modeling_qwen2_5_omni import Qwen2_5OmniAudioEncoder

    return _build_omni(cfg, Qwen2_5OmniAudioEncoderConfig, Qwen2_5OmniAudioEncoder, Qwen25OmniTower)


@register_audio_encoder("qwen3_omni")
def build_qwen3_omni(cfg: dict[str, Any]) -> AudioTower:
    """Builder for `audio_encoder.name: qwen3_omni` (Qwen3-Omni audio tower, ~0.6B)."""
    from transformers.models.qwen3_omni_moe.configuration_qwen3_omni_moe import (
        Qwen3OmniMoeAudioEncoderConfig,
    )
    from transformers.models.qwen3_omni_moe.modeling_qwen3_omni_moe import (
        Qwen3OmniMoeAudioEncoder,
    )

    return _build_omni(
        cfg, Qwen3OmniMoeAudioEncoderConfig, Qwen3OmniMoeAudioEncoder, Qwen3OmniTower
    )


# --------------------------------------------------------------------------------------------
# Strict copying of checkpoint tensors into a shell (used by the Omni builders and training/)
# --------------------------------------------------------------------------------------------


def checkpoint_files(ckpt: Path, prefix: str = "") -> list[Path]:
    """The safetensors files of a checkpoint folder that hold tensors under `prefix`
    (via the shard index when the checkpoint is sharded; every file otherwise)."""
    ckpt = Path(ckpt)
    if ckpt.is_file():
        return [ckpt]
    indexes = sorted(ckpt.glob("*.safetensors.index.json"))
    if indexes:
        weight_map = _read_json(indexes[0]).get("weight_map", {})
        return [
            ckpt / f for f in sorted({f for k, f in weight_map.items() if k.startswith(prefix)})
        ]
    files = sorted(ckpt.glob("*.safetensors"))
    if not files:
        raise ModelError(f"no *.safetensors files in {ckpt}; is this a checkpoint folder?")
    return files


def read_prefixed_tensors(ckpt: str | Path, prefix: str) -> dict[str, torch.Tensor]:
    """Tensors whose key starts with `prefix`, keyed WITHOUT the prefix; only those are read."""
    from safetensors import safe_open

    out: dict[str, torch.Tensor] = {}
    for f in checkpoint_files(Path(ckpt), prefix):
        if not f.exists():
            raise ModelError(f"checkpoint shard {f} is missing; re-download the checkpoint.")
        with safe_open(str(f), framework="pt") as sf:
            for key in sf.keys():
                if key.startswith(prefix):
                    out[key[len(prefix) :]] = sf.get_tensor(key)
    if not out:
        raise ModelError(f"no tensors under {prefix!r} in {ckpt}; wrong checkpoint or prefix?")
    return out


def copy_tensors_strict(
    module: nn.Module,
    tensors: dict[str, torch.Tensor],
    *,
    ignore: Sequence[str] = (),
    allow_missing: bool = False,
) -> list[str]:
    """Copy `tensors` into `module`'s parameters and buffers by name, exactly.

    Fails (ModelError) listing every missing, unexpected or mis-shaped name, before copying
    anything, so a shell is never half-filled. Non-persistent buffers (e.g. rotary
    frequencies, sinusoid position tables recomputed from config) are not expected in the file.
    `ignore`: key prefixes of the source that are dropped on purpose (e.g. pruned layers).
    `allow_missing`: copy a subset (e.g. a saved voice-router model, which stores only the
    weights it trained); unexpected and mis-shaped tensors still fail.

    Returns:
        The copied names, sorted.
    """
    state = module.state_dict()
    src = {k: v for k, v in tensors.items() if not any(k.startswith(p) for p in ignore)}
    missing = [] if allow_missing else sorted(set(state) - set(src))
    unexpected = sorted(set(src) - set(state))
    shapes = sorted(
        f"{k}: checkpoint {tuple(src[k].shape)} vs shell {tuple(state[k].shape)}"
        for k in set(src) & set(state)
        if tuple(src[k].shape) != tuple(state[k].shape)
    )
    problems = []
    if missing:
        problems.append(f"missing from checkpoint ({len(missing)}): {missing[:10]}")
    if unexpected:
        problems.append(f"unexpected in checkpoint ({len(unexpected)}): {unexpected[:10]}")
    if shapes:
        problems.append(f"shape mismatch ({len(shapes)}): {shapes[:10]}")
    if problems:
        raise ModelError(
            "checkpoint does not fit the shell built from config: "
            + "; ".join(problems)
            + ". Check the config dimensions and the checkpoint prefix."
        )
    with torch.no_grad():
        for k, t in state.items():
            if k in src:
                t.copy_(src[k].to(dtype=t.dtype))
    return sorted(src)


# --------------------------------------------------------------------------------------------
# Backbones
# --------------------------------------------------------------------------------------------


class ByteTokenizer:
    """UTF-8 bytes as tokens (ids 3..258; 0 pad, 1 bos, 2 eos): needs no vocabulary file.

    Used by backbones with random weights (tiny test models, from-scratch runs) so that nothing
    is ever downloaded. Texts are cut to `max_length` tokens.
    """

    vocab_size = 259
    pad_id, bos_id, eos_id = 0, 1, 2

    def __init__(self, max_length: int = 128) -> None:
        self.max_length = max_length

    def special_ids(self) -> tuple[list[int], list[int]]:
        """(prefix, suffix) ids this tokenizer puts around every text: [bos], [eos]."""
        return [self.bos_id], [self.eos_id]

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (input_ids (B, L) long, attention_mask (B, L) long), right-padded."""
        rows = [
            [self.bos_id, *(b + 3 for b in t.encode("utf-8")[: self.max_length - 2]), self.eos_id]
            for t in texts
        ]
        width = max((len(r) for r in rows), default=1)
        ids = torch.full((len(rows), width), self.pad_id, dtype=torch.long)  # (B, L)
        mask = torch.zeros((len(rows), width), dtype=torch.long)  # (B, L)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        return ids, mask


class HFTokenizer:
    """A pretrained checkpoint's tokenizer with the same call contract as ByteTokenizer."""

    def __init__(self, name_or_path: str, max_length: int = 128) -> None:
        from transformers import AutoTokenizer

        self.tok = AutoTokenizer.from_pretrained(name_or_path)
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        self.max_length = max_length
        self.vocab_size = len(self.tok)

    def special_ids(self) -> tuple[list[int], list[int]]:
        """(prefix, suffix) ids the tokenizer adds to every text ([CLS]/[SEP] for BERT;
        none for Qwen, whose tokenizer adds no specials)."""
        ids = self.tok("a")["input_ids"]
        core = self.tok("a", add_special_tokens=False)["input_ids"]
        n = len(core)
        for start in range(len(ids) - n + 1):
            if ids[start : start + n] == core:
                return list(ids[:start]), list(ids[start + n :])
        return [], []

    def __call__(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (input_ids (B, L), attention_mask (B, L)), right-padded."""
        out = self.tok(
            list(texts),
            padding=True,
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return out["input_ids"], out["attention_mask"]

    def save_pretrained(self, path: str | Path) -> None:
        """Write the tokenizer files next to a saved model."""
        self.tok.save_pretrained(str(path))


class Backbone(nn.Module):
    """A transformers encoder or decoder used as the shared audio/text backbone."""

    def __init__(self, model: nn.Module, tokenizer: ByteTokenizer | HFTokenizer) -> None:
        super().__init__()
        self.model = model
        self.tokenizer = tokenizer
        self.hidden_size = int(model.config.hidden_size)
        vocab = int(model.config.vocab_size)
        if tokenizer.vocab_size > vocab:
            raise ModelError(
                f"tokenizer has {tokenizer.vocab_size} tokens but the backbone's vocab_size is "
                f"{vocab}; raise backbone.config.vocab_size (>= {tokenizer.vocab_size})."
            )

    def tokenize(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (input_ids (B, L), attention_mask (B, L))."""
        return self.tokenizer(texts)

    def audio_special_ids(self) -> tuple[list[int], list[int]]:
        """Tokens wrapped around audio frames, the same ones that frame every text."""
        return self.tokenizer.special_ids()

    def embed_tokens(self, input_ids: torch.Tensor) -> torch.Tensor:
        """(B, L) ids -> (B, L, H) input embeddings (the backbone's own table)."""
        return self.model.get_input_embeddings()(input_ids)

    def forward(self, inputs_embeds: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """(B, L, H) embeddings, (B, L) mask -> (B, L, H) last hidden state."""
        out = self.model(inputs_embeds=inputs_embeds, attention_mask=attention_mask)
        return out.last_hidden_state  # (B, L, H)

    def set_gradient_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in the backward pass (trades compute for memory)."""
        if enabled:
            self.model.gradient_checkpointing_enable(
                gradient_checkpointing_kwargs={"use_reentrant": False}
            )
        else:
            self.model.gradient_checkpointing_disable()


def _tokenizer_for(cfg: dict[str, Any]) -> ByteTokenizer | HFTokenizer:
    max_length = int(cfg.get("max_text_tokens", 128))
    name = cfg.get("tokenizer") or (cfg.get("pretrained") if _is_pretrained(cfg) else None)
    if name and name != "bytes":
        return HFTokenizer(str(name), max_length)
    return ByteTokenizer(max_length)


def _build_backbone(cfg: dict[str, Any], config_cls: type, model_cls: type, **kw: Any) -> Backbone:
    tokenizer = _tokenizer_for(cfg)
    if _is_pretrained(cfg):  # config values are checked against / override the checkpoint's
        overrides = {k: v for k, v in (cfg.get("config") or {}).items()}
        model = model_cls.from_pretrained(str(cfg["pretrained"]), **kw, **overrides)
    else:
        overrides = dict(cfg.get("config") or {})
        overrides.setdefault("vocab_size", tokenizer.vocab_size)
        model = model_cls(config_cls(**overrides), **kw)
    return Backbone(model, tokenizer)


@register_backbone("qwen2")
def build_qwen2(cfg: dict[str, Any]) -> Backbone:
    """Builder for `backbone.name: qwen2` (Qwen2Model: Qwen2.5-0.5B/3B, the Omni thinker LM)."""
    from transformers import Qwen2Config, Qwen2Model

    return _build_backbone(cfg, Qwen2Config, Qwen2Model)


@register_backbone("qwen3")
def build_qwen3(cfg: dict[str, Any]) -> Backbone:
    """Builder for `backbone.name: qwen3` (Qwen3Model)."""
    from transformers import Qwen3Config, Qwen3Model

    return _build_backbone(cfg, Qwen3Config, Qwen3Model)


@register_backbone("bert")
def build_bert(cfg: dict[str, Any]) -> Backbone:
    """Builder for `backbone.name: bert` (BertModel without the pooler)."""
    from transformers import BertConfig, BertModel

    return _build_backbone(cfg, BertConfig, BertModel, add_pooling_layer=False)


OMNI_LM_PREFIX = "thinker.model."
_QWEN2_KEYS = (
    "vocab_size",
    "hidden_size",
    "intermediate_size",
    "num_hidden_layers",
    "num_attention_heads",
    "num_key_value_heads",
    "max_position_embeddings",
    "rms_norm_eps",
    "hidden_act",
    "attention_dropout",
)


def _thinker_text_config(ckpt: Path) -> dict[str, Any]:
    """Qwen2Config kwargs equivalent to an Omni checkpoint's thinker text model.

    The thinker uses multimodal RoPE; with one 1-D position stream (text, or audio frames in
    sequence) all three of its position components are equal and it reduces to Qwen2's RoPE.
    """
    conf = _read_json(ckpt / "config.json")
    text = (conf.get("thinker_config") or {}).get("text_config")
    if not isinstance(text, dict):
        raise ModelError(f"{ckpt / 'config.json'} has no thinker_config.text_config.")
    out = {k: text[k] for k in _QWEN2_KEYS if k in text}
    theta = text.get("rope_theta") or (text.get("rope_parameters") or {}).get("rope_theta")
    if theta:
        out["rope_theta"] = theta
    return out


@register_backbone("qwen2_5_omni_thinker")
def build_qwen2_5_omni_thinker(cfg: dict[str, Any]) -> Backbone:
    """Builder for `backbone.name: qwen2_5_omni_thinker`: the LM of a Qwen2.5-Omni checkpoint
    (M4, and the layer-pruned 7B configurations) as a standalone Qwen2Model shell.

    `pretrained`: the Omni checkpoint; tensors under `thinker.model.` are copied strictly.
    `config.num_hidden_layers: N` keeps the first N layers (pruning); `config.keep_layers:
    [i, ...]` keeps the listed ones instead. Random weights (tests) when not pretrained.
    """
    from transformers import Qwen2Config, Qwen2Model

    overrides = dict(cfg.get("config") or {})
    keep = overrides.pop("keep_layers", None)
    if keep is not None:
        overrides["num_hidden_layers"] = len(keep)
    if not _is_pretrained(cfg):
        tokenizer: ByteTokenizer | HFTokenizer = ByteTokenizer()
        overrides.setdefault("vocab_size", tokenizer.vocab_size)
        return Backbone(Qwen2Model(Qwen2Config(**overrides)), tokenizer)
    ckpt = resolve_checkpoint_dir(str(cfg["pretrained"]), OMNI_LM_PREFIX)
    base = _thinker_text_config(ckpt)
    base.update(overrides)
    model = Qwen2Model(Qwen2Config(**base))
    tensors = read_prefixed_tensors(ckpt, OMNI_LM_PREFIX)
    n_layers = int(base["num_hidden_layers"])
    indices = list(keep) if keep is not None else list(range(n_layers))
    copy_tensors_strict(model, select_layers(tensors, indices))
    return Backbone(model, HFTokenizer(str(ckpt)))


def select_layers(tensors: dict[str, torch.Tensor], indices: list[int]) -> dict[str, torch.Tensor]:
    """Keep `layers.{i}.*` for i in indices, renumbered 0..N-1 (other layers dropped)."""
    import re

    pat = re.compile(r"^layers\.(\d+)\.")
    present = {int(m.group(1)) for k in tensors if (m := pat.match(k))}
    absent = [i for i in indices if i not in present]
    if absent:
        raise ModelError(
            f"cannot keep layers {absent}: the checkpoint has layers 0..{max(present, default=-1)}."
        )
    new = {old: i for i, old in enumerate(indices)}
    out: dict[str, torch.Tensor] = {}
    for k, v in tensors.items():
        m = pat.match(k)
        if m is None:
            out[k] = v
        elif int(m.group(1)) in new:
            out[f"layers.{new[int(m.group(1))]}." + k[m.end() :]] = v
    return out
