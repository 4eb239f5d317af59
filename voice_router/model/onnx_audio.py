"""The audio side of a saved model as one ONNX graph, run by ONNX Runtime: the per-utterance
hot path of routing (log-mel in, embedding out).

Why: routing an utterance embeds only audio (route texts are embedded once, at indexing). The
Whisper tower is ~2.3 GFLOP for 3 s of speech; ONNX Runtime runs the same graph faster than
eager PyTorch on a CPU, and its dynamic int8 quantisation faster again. The graph takes one
clip at a time (batch 1, any length up to the model's `max_seconds`), so no padding masks are
needed; the log-mel front-end stays outside it.

Files in a model folder: `audio.onnx` (float32) and/or `audio.int8.onnx` (weights int8,
activations quantised dynamically). `TorchEmbeddingModel` uses one when it is present and
onnxruntime is installed (`VOICE_ROUTER_ONNX=0` switches it off).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voice_router.errors import ModelError

if TYPE_CHECKING:
    from voice_router.model.embedder import AudioTextEmbedder

ONNX_FP32 = "audio.onnx"
ONNX_INT8 = "audio.int8.onnx"


def _graph(embedder: AudioTextEmbedder):  # noqa: ANN202 - a torch module, built lazily
    import torch

    class AudioGraph(torch.nn.Module):
        """mel (1, n_mels, T) -> embedding (1, D): frozen encoder, head, pooling, L2."""

        def __init__(self) -> None:
            super().__init__()
            self.m = embedder

        def forward(self, mel: torch.Tensor) -> torch.Tensor:
            frames = torch.full((mel.shape[0],), mel.shape[-1], dtype=torch.long)  # (1,)
            h, mask = self.m.audio_encoder.encoder(mel, frames)  # (1, T', Da)
            return self.m.encode_frames(h, mask.sum(-1))  # (1, D)

    return AudioGraph().eval()


def export_audio_onnx(
    embedder: AudioTextEmbedder, folder: str | Path, int8: bool = True
) -> list[Path]:
    """Write audio.onnx (and audio.int8.onnx) for a model whose audio encoder is the unpadded
    Whisper tower; returns the files written."""
    import torch

    if embedder.config.audio_encoder.name != "whisper_unpadded":
        raise ModelError("ONNX export covers the whisper_unpadded audio encoder only")
    folder = Path(folder)
    n_mels = int(embedder.audio_encoder.encoder.n_mels)
    mel = torch.randn(1, n_mels, 300)
    out = folder / ONNX_FP32
    # Traced WITH autograd on: nn.TransformerEncoderLayer then skips its fused inference op
    # (aten::_transformer_encoder_layer_fwd), which has no ONNX export.
    with torch.enable_grad():
        torch.onnx.export(
            _graph(embedder),
            (mel,),
            str(out),
            input_names=["mel"],
            output_names=["embedding"],
            dynamic_axes={"mel": {2: "frames"}},
            opset_version=17,
            dynamo=False,
        )
    files = [out]
    if int8:
        from onnxruntime.quantization import QuantType, quantize_dynamic

        q = folder / ONNX_INT8
        quantize_dynamic(str(out), str(q), weight_type=QuantType.QInt8)
        files.append(q)
    return files


class OnnxAudio:
    """Runs a model folder's audio ONNX graph: normalised clips -> (N, D) float32 embeddings."""

    def __init__(self, path: str | Path, n_mels: int, threads: int | None = None) -> None:
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        self.path = Path(path)
        self.n_mels = n_mels
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def __call__(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        from voice_router.model.whisper import log_mel

        out = []
        for a in audios:
            mel, frames = log_mel([a], self.n_mels)  # (1, n_mels, T)
            mel = mel[..., : int(frames[0])].numpy()
            out.append(self.session.run(None, {"mel": mel})[0][0])
        return np.stack(out).astype(np.float32)  # (N, D)
