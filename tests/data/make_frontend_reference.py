"""Make tests/data/frontend_reference.npz: the speech_embedding front-end computed ONCE by the
TFLite runtime (ai-edge-litert, the `dev` extra) on real recordings, so the PyTorch port in
voice_router/model/speech_embedding.py can be tested without that runtime.

Inputs (built from tests/data/frontend_yes.flac, a Speech Commands v0.02 clip, CC BY 4.0):
  "yes":  the 1 s clip as is;
  "long": the clip, then the clip at half gain, then the clip reversed (3 s), so the test
          covers many windows and the per-clip dB floor.
For each input, stores the mel of melspectrogram.tflite (F, 32) in dB ("yes" only, to keep the
file small) and the embeddings (T, 96) of embedding_model.tflite applied window by window to
mel/10 + 2 (windows of 76 frames, step 8), exactly as openWakeWord does. The test rebuilds the
audio from the FLAC the same way (lossless).

Run: .venv/bin/python tests/data/make_frontend_reference.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf
from ai_edge_litert.interpreter import Interpreter

from voice_router.model.speech_embedding import frontend_model_paths

HERE = Path(__file__).parent


def run(interp: Interpreter, x: np.ndarray) -> np.ndarray:
    """Resize the single input to x's shape, run, return the single output."""
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], list(x.shape), strict=False)
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], x.astype(np.float32))
    interp.invoke()
    return interp.get_tensor(interp.get_output_details()[0]["index"]).copy()


def main() -> None:
    mel_path, emb_path = frontend_model_paths()
    mel_interp = Interpreter(model_path=str(mel_path))
    emb_interp = Interpreter(model_path=str(emb_path))

    clip, sr = sf.read(HERE / "frontend_yes.flac", dtype="float32")
    assert sr == 16000 and clip.ndim == 1
    inputs = {"yes": clip, "long": np.concatenate([clip, 0.5 * clip, clip[::-1]])}
    out: dict[str, np.ndarray] = {}
    for name, audio in inputs.items():
        audio = np.ascontiguousarray(audio, dtype=np.float32)
        mel = run(mel_interp, (audio * 32768.0)[None])[0, 0]  # (F, 32) dB
        x = mel / 10.0 + 2.0
        starts = range(0, mel.shape[0] - 76 + 1, 8)
        windows = np.stack([x[s : s + 76] for s in starts])[..., None]  # (N, 76, 32, 1)
        emb = run(emb_interp, windows)[:, 0, 0, :]  # (N, 96)
        if name == "yes":
            out[f"{name}_mel"] = mel.astype(np.float32)
        out[f"{name}_emb"] = emb.astype(np.float32)
        print(name, audio.shape, mel.shape, emb.shape)
    np.savez_compressed(HERE / "frontend_reference.npz", **out)


if __name__ == "__main__":
    main()
