"""Optional wake-word gate: openWakeWord classifiers over the speech_embedding front-end.

The openWakeWord models shipped in the PyPI package `pyopen-wakeword` (hey_jarvis, alexa,
hey_mycroft, hey_rhasspy, okay_nabu; Apache-2.0) are small dense networks over a window of 16
frames of the 96-dim speech_embedding features (80 ms per frame, ~1.3 s): flatten -> dense
layers with layer norm and ReLU -> sigmoid; hey_jarvis adds a second-stage verifier behind an
IF. Rather than ship a TFLite runtime, this module reads each model's graph and weights with the
`tflite` flatbuffer package and evaluates the handful of operators these graphs use with numpy
(batched over windows). Unknown operators fail loudly (ModelError), so a changed model never
silently computes something else. The front-end itself is voice_router.model.speech_embedding.

Use: `WakeWordDetector("hey_jarvis").detect(utterance_audio)` -> `WakeHit(score, end_sample)`
or None. The listen pipeline runs it on each VAD utterance (not on every 80 ms of the stream),
which keeps idle listening cheap; see voice_router/listen.py for the gating policy.
"""

from __future__ import annotations

import functools
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_router.errors import ModelError

SAMPLE_RATE = 16000
HOP = 160  # mel hop (samples)
FRAME_STEP = 8  # mel frames per embedding frame
WINDOW_MEL = 76  # mel frames per embedding window
N_FFT = 512
#: Silence put before an utterance so the classifier's 16-frame window can slide over its start
#: (in a stream openWakeWord has the preceding audio); and after it, to slide past its end.
LEAD_S = 1.6
TAIL_S = 0.3
#: After the classifier fires, the wake word's end is looked for within this many seconds.
SEARCH_S = 0.6


def available_wake_words() -> list[str]:
    """Names of the wake-word models shipped in pyopen-wakeword (e.g. "hey_jarvis")."""
    d = _models_dir()
    skip = {"melspectrogram", "embedding_model"}
    return sorted(p.stem for p in d.glob("*.tflite") if p.stem not in skip)


def _models_dir() -> Path:
    try:
        return Path(str(importlib.resources.files("pyopen_wakeword") / "models"))
    except ModuleNotFoundError as e:
        raise ModelError(
            "wake words need PyTorch and the `pyopen-wakeword` package: "
            "`pip install 'voice-router[torch]'`"
        ) from e


# -- a minimal TFLite graph evaluator (numpy) -------------------------------------------------


def _act(x: np.ndarray, code: int) -> np.ndarray:
    if code == 0:  # NONE
        return x
    if code == 1:  # RELU
        return np.maximum(x, 0.0)
    raise ModelError(f"unsupported fused activation {code} in a wake-word model")


class _TFLiteGraph:
    """Evaluates one TFLite model made of dense-net operators, batched on the leading axis."""

    OPS = {
        "RESHAPE", "FULLY_CONNECTED", "MEAN", "SUB", "MUL", "ADD", "RSQRT", "LOGISTIC",
        "GREATER_EQUAL", "IF", "RELU",
    }  # fmt: skip

    def __init__(self, path: Path) -> None:
        try:
            import tflite
        except ImportError as e:
            raise ModelError("reading wake-word models needs the `tflite` package") from e
        try:
            self.model = tflite.Model.GetRootAsModel(path.read_bytes(), 0)
        except OSError as e:
            raise ModelError(f"cannot read wake-word model {path}: {e}") from e
        self.tfl = tflite
        self.path = path
        self.names = {v: k for k, v in vars(tflite.BuiltinOperator).items() if k.isupper()}
        g = self.model.Subgraphs(0)
        shape = g.Tensors(g.Inputs(0)).ShapeAsNumpy()
        self.input_shape = tuple(int(s) for s in shape)  # (1, frames, 96)
        self._consts: dict[tuple[int, int], np.ndarray] = {}
        for si in range(self.model.SubgraphsLength()):  # check every operator up front
            sg = self.model.Subgraphs(si)
            for i in range(sg.OperatorsLength()):
                name = self._opname(sg.Operators(i))
                if name not in self.OPS:
                    raise ModelError(f"{path.name}: unsupported TFLite operator {name}")

    def _opname(self, op: Any) -> str:
        code = self.model.OperatorCodes(op.OpcodeIndex())
        return self.names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "?")

    def _const(self, si: int, t: int) -> np.ndarray | None:
        key = (si, t)
        if key not in self._consts:
            tensor = self.model.Subgraphs(si).Tensors(t)
            buf = self.model.Buffers(tensor.Buffer())
            dtype = {0: np.float32, 2: np.int32, 6: np.bool_}.get(tensor.Type())
            shape = tuple(int(s) for s in tensor.ShapeAsNumpy()) if tensor.ShapeLength() else ()
            if buf.DataLength() == 0:
                if 0 in shape:  # an empty constant (e.g. the shape [] of a squeeze)
                    return np.zeros(shape, np.int32)
                return None
            if dtype is None:
                raise ModelError(f"{self.path.name}: unsupported tensor type {tensor.Type()}")
            self._consts[key] = np.frombuffer(buf.DataAsNumpy().tobytes(), dtype).reshape(shape)
        return self._consts[key]

    def _options(self, op: Any, cls: Any) -> Any:
        o = op.BuiltinOptions()
        if o is None:
            return None
        opts = cls()
        opts.Init(o.Bytes, o.Pos)
        return opts

    def run(self, x: np.ndarray) -> np.ndarray:
        """x: (B, frames, 96) float32 -> (B,) scores."""
        return self._run(0, [x.astype(np.float32)]).reshape(-1)

    def _run(self, si: int, inputs: list[np.ndarray]) -> np.ndarray:
        tfl = self.tfl
        sg = self.model.Subgraphs(si)
        vals: dict[int, np.ndarray] = {}
        for i, arr in enumerate(inputs):
            vals[sg.Inputs(i)] = arr
        batch = inputs[0].shape[0]

        def get(t: int) -> np.ndarray:
            if t in vals:
                return vals[t]
            c = self._const(si, t)
            if c is None:
                raise ModelError(f"{self.path.name}: tensor {t} used before it is computed")
            return c

        for i in range(sg.OperatorsLength()):
            op = sg.Operators(i)
            name = self._opname(op)
            ins = [op.Inputs(j) for j in range(op.InputsLength())]
            out = op.Outputs(0)
            if name == "RESHAPE":
                x = get(ins[0])
                shape = [int(s) for s in get(ins[1]).reshape(-1)] if len(ins) > 1 else []
                if not shape:  # squeeze to a scalar (the IF condition): one per batch row
                    y = x.reshape(batch)
                else:
                    if shape[0] == 1 and batch != 1:  # a graph written for batch 1
                        shape[0] = -1
                    y = x.reshape(shape)
            elif name == "FULLY_CONNECTED":
                opts = self._options(op, tfl.FullyConnectedOptions)
                w = get(ins[1])  # (out, in)
                x = get(ins[0]).reshape(-1, w.shape[1])  # (B, in)
                # einsum, not BLAS: tiny matrices, and a multi-threaded BLAS on a busy machine
                # was measured 300x slower here (thread spin-waits) than one plain loop.
                y = np.einsum("bi,oi->bo", x, w)  # (B, in) x (out, in) -> (B, out)
                if len(ins) > 2 and ins[2] >= 0:
                    y = y + get(ins[2])
                y = _act(y, opts.FusedActivationFunction() if opts else 0)
            elif name == "MEAN":
                opts = self._options(op, tfl.ReducerOptions)
                axes = tuple(int(a) for a in np.atleast_1d(get(ins[1])))
                y = get(ins[0]).mean(axis=axes, keepdims=bool(opts and opts.KeepDims()))
            elif name in ("ADD", "SUB", "MUL"):
                cls = {"ADD": tfl.AddOptions, "SUB": tfl.SubOptions, "MUL": tfl.MulOptions}[name]
                opts = self._options(op, cls)
                a, b = get(ins[0]), get(ins[1])
                y = a + b if name == "ADD" else a - b if name == "SUB" else a * b
                y = _act(y, opts.FusedActivationFunction() if opts else 0)
            elif name == "RSQRT":
                y = 1.0 / np.sqrt(get(ins[0]))
            elif name == "RELU":
                y = np.maximum(get(ins[0]), 0.0)
            elif name == "LOGISTIC":
                y = 1.0 / (1.0 + np.exp(-get(ins[0])))
            elif name == "GREATER_EQUAL":
                y = get(ins[0]) >= get(ins[1])
            else:  # IF: evaluate both branches on the whole batch, pick per row
                opts = self._options(op, tfl.IfOptions)
                cond = get(ins[0]).reshape(-1).astype(bool)  # (B,)
                args = [get(t) for t in ins[1:]]
                then = self._run(opts.ThenSubgraphIndex(), args).reshape(batch, -1)
                other = self._run(opts.ElseSubgraphIndex(), args).reshape(batch, -1)
                y = np.where(cond[:, None], then, other)
            vals[out] = np.asarray(y, dtype=y.dtype if y.dtype == np.bool_ else np.float32)
        return vals[sg.Outputs(0)]


# -- the detector ---------------------------------------------------------------------------


@dataclass(frozen=True)
class WakeHit:
    """A detected wake word: its score and where it ended (sample offset in the clip)."""

    score: float
    end_sample: int


@functools.lru_cache(maxsize=8)
def _load_graph(name: str) -> _TFLiteGraph:
    path = _models_dir() / f"{name}.tflite"
    if not path.is_file():
        names = ", ".join(available_wake_words())
        raise ModelError(f"unknown wake word {name!r}: choose one of {names}")
    return _TFLiteGraph(path)


class WakeWordDetector:
    """Scores a clip for one wake word (openWakeWord model `name`, e.g. "hey_jarvis").

    `detect(audio)` slides the classifier over the clip's embedding frames and returns the
    first window scoring >= `threshold` (the moment a streaming detector would have fired), or
    None. `scores(audio)` returns every window's score.
    """

    def __init__(self, name: str, *, threshold: float = 0.5) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"wake-word threshold must be in (0, 1), got {threshold}")
        self.name = name
        self.threshold = threshold
        self.graph = _load_graph(name)
        self.window = self.graph.input_shape[1]  # embedding frames per classifier window
        from voice_router.model.speech_embedding import load_speech_embedding_frontend

        self.frontend = load_speech_embedding_frontend()

    def scores(self, audio: np.ndarray) -> tuple[np.ndarray, int]:
        """(scores of each window (W,), lead samples prepended) for a 16 kHz float32 clip."""
        import torch

        lead, tail = int(LEAD_S * SAMPLE_RATE), int(TAIL_S * SAMPLE_RATE)
        a = np.concatenate(
            [np.zeros(lead, np.float32), np.asarray(audio, np.float32), np.zeros(tail, np.float32)]
        )  # (S,)
        with torch.no_grad():
            emb = self.frontend(torch.from_numpy(a)[None]).numpy()[0]  # (T, 96)
        n = emb.shape[0] - self.window + 1
        if n <= 0:
            return np.zeros(0, np.float32), lead
        idx = np.arange(n)[:, None] + np.arange(self.window)[None, :]  # (W, window)
        return self.graph.run(emb[idx]), lead  # (W, window, 96) -> (W,)

    def window_end_sample(self, w: int) -> int:
        """Last sample (exclusive, in the padded clip) seen by classifier window `w`."""
        last_frame = w + self.window - 1
        return HOP * (FRAME_STEP * last_frame + WINDOW_MEL - 1) + N_FFT

    def detect(self, audio: np.ndarray) -> WakeHit | None:
        """The first window at or above the threshold, or None."""
        s, lead = self.scores(audio)
        hits = np.flatnonzero(s >= self.threshold)
        if hits.size == 0:
            return None
        w = int(hits[0])
        fired = min(max(self.window_end_sample(w) - lead, 0), len(audio))
        return WakeHit(score=float(s[hits].max()), end_sample=self._word_end(audio, fired))

    @staticmethod
    def _word_end(audio: np.ndarray, fired: int) -> int:
        """Where the wake word ends: the quietest 20 ms frame in the `SEARCH_S` after the
        classifier fired. It fires before the word is complete (~0.3 s early on real "alexa"
        recordings), and a cut at the firing point would leave the word's tail in the command;
        the quietest frame after it is the pause (or the weakest joint) before the command."""
        frame = SAMPLE_RATE // 50
        region = np.asarray(audio[fired : fired + int(SEARCH_S * SAMPLE_RATE)], np.float32)
        n = len(region) // frame
        if n == 0:
            return fired
        energy = (region[: n * frame].reshape(n, frame) ** 2).mean(axis=1)  # (n,)
        return fired + int(np.argmin(energy)) * frame + frame // 2
