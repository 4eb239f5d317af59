"""Whisper's text decoder in numpy, with a key/value cache: the reader of the slot stage.

Why numpy: the runtime is torch-free, and the constrained search (voice_router.slot_reader)
asks the decoder for one token's log-probabilities per hypothesis per step. The numpy step is
the exact reference; by default the same step runs as one int8 ONNX Runtime graph
(voice_router.model.decoder_graph, `next_log_probs`). The whole step is a few small matrix
products; the cross-attention keys and values are computed once per utterance
(`cross`), the self-attention ones grow by one row per step (`SelfCache`), and a beam re-orders
them by index. The output layer is the tied token embedding (51,864 x 384 for tiny.en): the
full-vocabulary log-softmax is what the search scores with (renormalising over the allowed
tokens only lets forced continuations cost nothing, and wrong branches then win).

Parameter names follow transformers' WhisperDecoder (`embed_tokens`, `layers.N.encoder_attn...`),
so the bundled tiny.en decoder (scripts/convert_whisper_ct2.py) and a hub checkpoint's
`model.decoder.*` tensors load by the same code.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_router.errors import ModelError

BUNDLED = Path(__file__).resolve().parent.parent / "weights" / "whisper_tiny_en"
DECODER_FILE = "decoder.safetensors"
STEP_GRAPH = "decoder_step_int8.onnx"
TOKENIZER_FILE = "tokenizer.json"


@dataclass(frozen=True)
class DecoderConfig:
    """A Whisper decoder's shape (transformers' WhisperConfig field names in `from_dict`)."""

    vocab_size: int
    dim: int
    layers: int
    heads: int
    ffn: int
    max_positions: int

    @classmethod
    def from_dict(cls, conf: Mapping[str, Any]) -> DecoderConfig:
        """From a decoder.json or a transformers WhisperConfig dict."""
        return cls(
            vocab_size=int(conf["vocab_size"]),
            dim=int(conf["d_model"]),
            layers=int(conf["decoder_layers"]),
            heads=int(conf["decoder_attention_heads"]),
            ffn=int(conf["decoder_ffn_dim"]),
            max_positions=int(conf.get("max_target_positions", 448)),
        )


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / np.sqrt(var + 1e-5) * w + b


def _erf(x: np.ndarray) -> np.ndarray:
    """erf to ~1.5e-7 (Abramowitz & Stegun 7.1.26); numpy has none and scipy is not a
    runtime dependency."""
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    poly = t * (
        0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429)))
    )
    return s * (1.0 - poly * np.exp(-a * a))


def _gelu(x: np.ndarray) -> np.ndarray:
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)))


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    np.exp(x, out=x)
    return x / x.sum(-1, keepdims=True)


@dataclass
class SelfCache:
    """Self-attention keys and values so far: per layer (B, H, t, dh) each."""

    keys: list[np.ndarray]
    values: list[np.ndarray]

    @property
    def length(self) -> int:
        """Tokens cached (t)."""
        return int(self.keys[0].shape[2]) if self.keys else 0

    def select(self, rows: np.ndarray | list[int]) -> SelfCache:
        """The cache of the hypotheses `rows` (a beam's re-ordering), as new arrays."""
        idx = np.asarray(rows, dtype=np.int64)
        return SelfCache([k[idx] for k in self.keys], [v[idx] for v in self.values])


@dataclass
class CrossCache:
    """Cross-attention keys and values of one utterance's encoder frames: per layer
    (H, dh, T') keys (transposed for q @ k) and (H, T', dh) values."""

    keys: list[np.ndarray]
    values: list[np.ndarray]


class WhisperDecoder:
    """Whisper's decoder: tokens + encoder frames -> next-token logits (numpy, float32).

    `cross(frames)` once per utterance; then `forward(tokens (B, n), cross, cache)` returns
    logits (B, n, V) and the cache with those n tokens appended. Positions continue from the
    cache's length, so a prompt and later single steps compose."""

    def __init__(
        self,
        weights: Mapping[str, np.ndarray],
        config: DecoderConfig,
        output: str = "float32",
        threads: int | None = None,
        source: Path | None = None,
    ) -> None:
        """`weights`: transformers' decoder names -> arrays (a `LazyTensors` reads each on first
        use). `source`: the weights file, when there is one: it keys the int8 step's weights
        cached on disk (`step_cache_dir`)."""
        if output not in ("float32", "int8"):
            raise ModelError(f"output must be 'float32' or 'int8', not {output!r}")
        self.config = config
        self.output = output
        self.threads = threads
        self.source = source
        self._weights = weights
        self._step: Any = None
        self._dense: tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], list[Any]] | None
        self._dense = None
        self._cross_w: list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        c = config
        if c.dim % c.heads:
            raise ModelError(f"whisper decoder: dim {c.dim} is not divisible by heads {c.heads}")
        need = ["embed_tokens.weight", "embed_positions.weight", "layer_norm.weight",
                "layer_norm.bias"]  # fmt: skip
        need += [f"layers.{i}.{k}" for i in range(c.layers) for k in _LAYER_KEYS]
        missing = [k for k in need if k not in weights]
        if missing:
            raise ModelError(f"whisper decoder weights lack {missing[:3]}")
        shape = _shape(weights, "embed_tokens.weight")
        if shape != (c.vocab_size, c.dim):
            raise ModelError(
                f"whisper decoder: token embedding {shape} != ({c.vocab_size}, {c.dim}) of its "
                "config"
            )
        self.head_dim = c.dim // c.heads

    # ---- float32 weights (built on first use: the int8 step with its weights cached on disk
    # needs only the cross-attention projections, `_cross_weights`) -----------------------------

    @property
    def embed(self) -> np.ndarray:
        """Token embedding (V, D), also the output projection."""
        return self._dense_parts()[0]

    @property
    def positions(self) -> np.ndarray:
        """Position embedding (P, D)."""
        return self._dense_parts()[1]

    @property
    def ln(self) -> tuple[np.ndarray, np.ndarray]:
        """The final layer norm (weight, bias)."""
        return self._dense_parts()[2]

    @property
    def layers(self) -> list[dict[str, np.ndarray]]:
        """Each layer's float32 weights, with the fused and transposed forms the numpy step
        multiplies by."""
        return self._dense_parts()[3]

    def _get(self, name: str) -> np.ndarray:
        return np.ascontiguousarray(np.asarray(self._weights[name], dtype=np.float32))

    def _cross_weights(self) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
        """Per layer (k_proj W, v_proj W, v_proj b) of the cross-attention: what `cross` needs."""
        if self._cross_w is None:
            self._cross_w = [
                tuple(
                    self._get(f"layers.{i}.encoder_attn.{k}")
                    for k in ("k_proj.weight", "v_proj.weight", "v_proj.bias")
                )  # fmt: skip
                for i in range(self.config.layers)
            ]  # type: ignore[misc]
        return self._cross_w  # type: ignore[return-value]

    def _dense_parts(
        self,
    ) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray], list[dict[str, np.ndarray]]]:
        if self._dense is not None:
            return self._dense
        c = self.config
        get = self._get
        embed = get("embed_tokens.weight")  # (V, D)
        positions = get("embed_positions.weight")  # (P, D)
        ln = (get("layer_norm.weight"), get("layer_norm.bias"))
        layers: list[dict[str, np.ndarray]] = []
        for i in range(c.layers):
            p = f"layers.{i}."
            layer = {k: get(p + k) for k in _LAYER_KEYS}
            d = c.dim
            # fused self-attention input projection: x @ W_qkv (D, 3D); the key has no bias
            layer["qkv_w"] = np.ascontiguousarray(
                np.concatenate(
                    [
                        layer["self_attn.q_proj.weight"],
                        layer["self_attn.k_proj.weight"],
                        layer["self_attn.v_proj.weight"],
                    ]  # fmt: skip
                ).T
            )  # (D, 3D)
            layer["qkv_b"] = np.concatenate(
                [
                    layer["self_attn.q_proj.bias"],
                    np.zeros(d, np.float32),
                    layer["self_attn.v_proj.bias"],
                ]  # fmt: skip
            )  # (3D,)
            for k in ("self_attn.out_proj", "encoder_attn.q_proj", "encoder_attn.out_proj",
                      "fc1", "fc2"):  # fmt: skip
                layer[k + ".wt"] = np.ascontiguousarray(layer[k + ".weight"].T)  # (in, out)
            layers.append(layer)
        self._dense = (embed, positions, ln, layers)
        return self._dense

    # ---- loading ----------------------------------------------------------------------------

    @classmethod
    def load(
        cls, folder: str | Path = "bundled", output: str = "int8", threads: int | None = None
    ) -> WhisperDecoder:
        """The decoder of "bundled" (tiny.en, shipped), a folder written by
        scripts/convert_whisper_ct2.py (decoder.json + decoder.safetensors), or a transformers
        Whisper checkpoint folder (config.json + safetensors with `model.decoder.*`).

        output: "int8" (default): `next_log_probs` runs the whole step as the int8 ONNX Runtime
        graph (4x faster than float32 numpy for a beam of 5 here: benchmarks/decoder_step.py;
        the same best token, likely tokens within 0.5 nats: tested); "float32": the exact
        numpy path."""
        from safetensors.numpy import load_file

        path = BUNDLED if str(folder) == "bundled" else Path(folder).expanduser()
        if (path / DECODER_FILE).is_file() and (path / "decoder.json").is_file():
            conf = json.loads((path / "decoder.json").read_text(encoding="utf-8"))
            return cls(
                LazyTensors(path / DECODER_FILE),
                DecoderConfig.from_dict(conf),
                output,
                threads,
                source=path / DECODER_FILE,
            )
        if not (path / "config.json").is_file():
            raise ModelError(
                f"no Whisper decoder at {path}: expected decoder.json + {DECODER_FILE}, or a "
                "transformers Whisper checkpoint (config.json + *.safetensors)"
            )
        conf = json.loads((path / "config.json").read_text(encoding="utf-8"))
        state: dict[str, np.ndarray] = {}
        for f in sorted(path.glob("*.safetensors")):
            for k, v in load_file(str(f)).items():
                for prefix in ("model.decoder.", "decoder."):
                    if k.startswith(prefix):
                        state[k[len(prefix) :]] = v
        if not state:
            raise ModelError(f"{path}: no `model.decoder.*` tensors in its safetensors files")
        return cls(state, DecoderConfig.from_dict(conf), output, threads)

    # ---- running ----------------------------------------------------------------------------

    def cross(self, frames: np.ndarray) -> CrossCache:
        """Encoder frames (T', D) of one utterance -> every layer's cross-attention K and V."""
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.config.dim:
            raise ModelError(f"encoder frames must be (T, {self.config.dim}), got {tuple(x.shape)}")
        h, dh = self.config.heads, self.head_dim
        keys, values = [], []
        for wk, wv, bv in self._cross_weights():
            k = x @ wk.T  # (T', D), no bias
            v = x @ wv.T + bv
            k = k.reshape(-1, h, dh).transpose(1, 2, 0)  # (H, dh, T')
            v = v.reshape(-1, h, dh).transpose(1, 0, 2)  # (H, T', dh)
            keys.append(np.ascontiguousarray(k))
            values.append(np.ascontiguousarray(v))
        return CrossCache(keys, values)

    def empty_cache(self, batch: int) -> SelfCache:
        """A cache with no tokens for `batch` hypotheses."""
        h, dh = self.config.heads, self.head_dim
        z = np.zeros((batch, h, 0, dh), np.float32)
        return SelfCache([z] * self.config.layers, [z] * self.config.layers)

    def hidden(
        self, tokens: np.ndarray, cross: CrossCache, cache: SelfCache | None = None
    ) -> tuple[np.ndarray, SelfCache]:
        """tokens (B, n) -> final hidden states (B, n, D) and the cache with them appended."""
        tok = np.asarray(tokens, dtype=np.int64)
        if tok.ndim != 2:
            raise ModelError(f"tokens must be (batch, n), got shape {tok.shape}")
        b, n = tok.shape
        cache = cache or self.empty_cache(b)
        t0 = cache.length
        if t0 + n > self.config.max_positions:
            raise ModelError(
                f"decoder input of {t0 + n} tokens exceeds its {self.config.max_positions} "
                "positions"
            )
        h, dh, d = self.config.heads, self.head_dim, self.config.dim
        scale = 1.0 / math.sqrt(dh)
        x = self.embed[tok] + self.positions[t0 : t0 + n]  # (B, n, D)
        causal = None
        if n > 1:  # query i sees the cache and new tokens 0..i
            allowed = np.arange(t0 + n)[None, :] <= (t0 + np.arange(n))[:, None]  # (n, t0+n)
            causal = np.where(allowed, 0.0, -np.inf).astype(np.float32)
        new_k, new_v = [], []
        for i, layer in enumerate(self.layers):
            y = _layer_norm(x, layer["self_attn_layer_norm.weight"],
                            layer["self_attn_layer_norm.bias"])  # fmt: skip
            qkv = y @ layer["qkv_w"] + layer["qkv_b"]  # (B, n, 3D)
            q, k, v = (qkv[..., j * d : (j + 1) * d].reshape(b, n, h, dh).transpose(0, 2, 1, 3)
                       for j in range(3))  # fmt: skip  # each (B, H, n, dh)
            k = np.concatenate([cache.keys[i], k], axis=2)  # (B, H, t0+n, dh)
            v = np.concatenate([cache.values[i], v], axis=2)  # (B, H, t0+n, dh)
            new_k.append(k)
            new_v.append(v)
            att = (q * scale) @ k.transpose(0, 1, 3, 2)  # (B, H, n, t0+n)
            if causal is not None:
                att = att + causal
            y = _softmax(att) @ v  # (B, H, n, dh)
            y = y.transpose(0, 2, 1, 3).reshape(b, n, d)  # (B, n, D)
            x = x + y @ layer["self_attn.out_proj.wt"] + layer["self_attn.out_proj.bias"]

            y = _layer_norm(x, layer["encoder_attn_layer_norm.weight"],
                            layer["encoder_attn_layer_norm.bias"])  # fmt: skip
            q = y @ layer["encoder_attn.q_proj.wt"] + layer["encoder_attn.q_proj.bias"]
            q = q.reshape(b, n, h, dh).transpose(0, 2, 1, 3) * scale  # (B, H, n, dh)
            att = q @ cross.keys[i]  # (B, H, n, dh) @ (H, dh, T') -> (B, H, n, T')
            y = _softmax(att) @ cross.values[i]  # (B, H, n, dh)
            y = y.transpose(0, 2, 1, 3).reshape(b, n, d)  # (B, n, D)
            x = x + y @ layer["encoder_attn.out_proj.wt"] + layer["encoder_attn.out_proj.bias"]

            y = _layer_norm(x, layer["final_layer_norm.weight"], layer["final_layer_norm.bias"])
            y = _gelu(y @ layer["fc1.wt"] + layer["fc1.bias"])  # (B, n, F)
            x = x + y @ layer["fc2.wt"] + layer["fc2.bias"]  # (B, n, D)
        return _layer_norm(x, *self.ln), SelfCache(new_k, new_v)

    def logits(self, hidden: np.ndarray) -> np.ndarray:
        """Final hidden states (..., D) -> float32 logits over the whole vocabulary (..., V)."""
        return hidden @ self.embed.T  # (..., D) @ (D, V)

    def log_probs(self, hidden: np.ndarray) -> np.ndarray:
        """Final hidden states (B, D) -> float32 log-probabilities over the whole vocabulary
        (B, V) (the exact path; the int8 step graph has its own output layer)."""
        return log_softmax(self.logits(np.asarray(hidden, dtype=np.float32)))

    def next_log_probs(
        self, tokens: np.ndarray, cross: CrossCache, cache: SelfCache | None = None
    ) -> tuple[np.ndarray, SelfCache]:
        """One token per hypothesis, tokens (B, 1) -> the next token's log-probabilities over
        the whole vocabulary (B, V) and the cache with that token appended: the search's step.
        `output="int8"`: the whole step on ONNX Runtime in int8 (`decoder_graph`); "float32":
        the exact numpy path."""
        tok = np.asarray(tokens, dtype=np.int64)
        if self.output == "float32":
            hid, cache = self.hidden(tok, cross, cache)
            return self.log_probs(hid[:, -1]), cache
        if tok.ndim != 2 or tok.shape[1] != 1:
            raise ModelError(f"next_log_probs takes one token per row, (B, 1); got {tok.shape}")
        session, weights = self._step_parts()
        cache = cache or self.empty_cache(tok.shape[0])
        t0 = cache.length
        if t0 + 1 > self.config.max_positions:
            raise ModelError(f"decoder input exceeds its {self.config.max_positions} positions")
        feeds: dict[str, Any] = {"tokens": tok, "position": np.array([t0], np.int64), **weights}
        for i in range(self.config.layers):
            feeds[f"past_k{i}"] = np.ascontiguousarray(cache.keys[i])
            feeds[f"past_v{i}"] = np.ascontiguousarray(cache.values[i])
            feeds[f"cross_k{i}"] = cross.keys[i]
            feeds[f"cross_v{i}"] = cross.values[i]
        out = session.run(None, feeds)
        n = self.config.layers
        return out[0], SelfCache(out[1 : 1 + 2 * n : 2], out[2 : 2 + 2 * n : 2])

    def _step_parts(self) -> tuple[Any, dict[str, Any]]:
        """The int8 step graph's session and weight inputs: quantised on first use (each linear
        layer per output column, symmetric), and kept on disk (`step_cache_dir`) so a later
        process maps them instead (quantising took 0.6-2 s of a start here, the float32 load
        0.27 s; mapping the cached files 15 ms). With them cached, the float32 weights are
        never built; after quantising on the int8 path they are dropped (rebuilt if the float32
        step is asked for)."""
        if self._step is None:
            import onnxruntime as ort

            from voice_router.model.onnx_model import _options

            graph = BUNDLED / STEP_GRAPH
            if not graph.is_file():
                raise ModelError(f"{graph} is missing; reinstall voice-router")
            cache = step_cache_dir(self.source, graph) if self.source is not None else None
            feeds = _read_step_cache(cache, self._step_names()) if cache is not None else None
            if feeds is None:
                feeds = self._quantised_feeds()
                if cache is not None:
                    _write_step_cache(cache, feeds)
                if self.output == "int8":
                    self._dense = None  # the float32 copies: ~120 MB the int8 step never reads
            session = ort.InferenceSession(
                graph.read_bytes(), _options(self.threads), providers=["CPUExecutionProvider"]
            )
            values = {k: ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v))
                      for k, v in feeds.items()}  # fmt: skip
            self._step = (session, values, feeds)  # the arrays must outlive the session
        return self._step[0], self._step[1]

    def _step_names(self) -> list[str]:
        """The int8 step graph's weight inputs, by name."""
        from voice_router.model.decoder_graph import LINEARS

        names = ["embed", "positions", "lm.wq", "lm.scale", "lm.b"]
        for i in range(self.config.layers):
            names += [f"l{i}.{ln}.{wb}" for ln in ("ln1", "ln2", "ln3") for wb in ("w", "b")]
            names += [f"l{i}.{lin}.{part}" for lin in LINEARS for part in ("wq", "scale", "b")]
        return names

    def _quantised_feeds(self) -> dict[str, np.ndarray]:
        """The int8 step graph's weight inputs from the float32 weights."""
        from voice_router.model.decoder_graph import LINEARS

        def quantised(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            """(out, in) float -> (in, out) int8 and (out,) scales."""
            scale = np.maximum(np.abs(w).max(axis=1) / 127.0, 1e-12).astype(np.float32)
            q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
            return np.ascontiguousarray(q.T), scale

        feeds: dict[str, np.ndarray] = {
            "embed": self.embed.astype(np.float16),
            "positions": self.positions,
        }
        for i, layer in enumerate(self.layers):
            p = f"l{i}"
            for ln, key in (("ln1", "self_attn_layer_norm"), ("ln2", "encoder_attn_layer_norm"),
                            ("ln3", "final_layer_norm")):  # fmt: skip
                feeds[f"{p}.{ln}.w"] = layer[key + ".weight"]
                feeds[f"{p}.{ln}.b"] = layer[key + ".bias"]
            weights = {
                "qkv": (layer["qkv_w"].T, layer["qkv_b"]),
                "out": (layer["self_attn.out_proj.weight"], layer["self_attn.out_proj.bias"]),
                "xq": (layer["encoder_attn.q_proj.weight"], layer["encoder_attn.q_proj.bias"]),
                "xo": (
                    layer["encoder_attn.out_proj.weight"],
                    layer["encoder_attn.out_proj.bias"],
                ),  # fmt: skip
                "fc1": (layer["fc1.weight"], layer["fc1.bias"]),
                "fc2": (layer["fc2.weight"], layer["fc2.bias"]),
            }
            for lin in LINEARS:
                w, b = weights[lin]
                feeds[f"{p}.{lin}.wq"], feeds[f"{p}.{lin}.scale"] = quantised(w)
                feeds[f"{p}.{lin}.b"] = np.ascontiguousarray(b, dtype=np.float32)
        gain, bias = self.ln
        feeds["lm.wq"], feeds["lm.scale"] = quantised(self.embed * gain)  # (D, V), (V,)
        feeds["lm.b"] = (self.embed @ bias).astype(np.float32)  # (V,)
        return feeds

    def forward(
        self, tokens: np.ndarray, cross: CrossCache, cache: SelfCache | None = None
    ) -> tuple[np.ndarray, SelfCache]:
        """tokens (B, n) -> logits (B, n, V) and the cache with those tokens appended."""
        hid, cache = self.hidden(tokens, cross, cache)
        return self.logits(hid), cache


class LazyTensors(Mapping[str, np.ndarray]):
    """A safetensors file's tensors by name, each read on first access (the int8 step with its
    weights cached on disk reads only the cross-attention projections: 6 of 70 tensors)."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self.path = Path(path)
        with safe_open(str(self.path), framework="np") as f:
            self._shapes = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}  # noqa: SIM118

    def shape(self, name: str) -> tuple[int, ...]:
        """A tensor's shape, from the file's header (nothing read)."""
        return self._shapes[name]

    def __getitem__(self, name: str) -> np.ndarray:
        from safetensors import safe_open

        if name not in self._shapes:
            raise KeyError(name)
        with safe_open(str(self.path), framework="np") as f:
            return f.get_tensor(name)

    def __contains__(self, name: object) -> bool:
        return name in self._shapes  # (Mapping's would read the tensor)

    def __iter__(self) -> Iterator[str]:
        return iter(self._shapes)

    def __len__(self) -> int:
        return len(self._shapes)


def _shape(weights: Mapping[str, Any], name: str) -> tuple[int, ...]:
    if isinstance(weights, LazyTensors):
        return weights.shape(name)
    return tuple(np.shape(weights[name]))


#: Bump when the quantisation or the step graph's inputs change: old cache folders are ignored.
STEP_CACHE_VERSION = "1"


def step_cache_dir(source: Path, graph: Path) -> Path | None:
    """Where the int8 step's weights of the decoder in `source` are kept between processes
    (None: VOICE_ROUTER_DECODER_CACHE=0). Keyed, as the ONNX Runtime graph cache is, by the
    files as they are now (path, size, mtime) rather than their sha256: hashing the 59 MB
    weights took 0.15 s, a quarter of what the cache saves at every start."""
    if os.environ.get("VOICE_ROUTER_DECODER_CACHE", "1") == "0":
        return None
    from platformdirs import user_cache_dir

    parts = [STEP_CACHE_VERSION]
    for f in (source, graph):
        try:
            st = f.stat()
        except OSError:
            return None
        parts.append(f"{f.resolve()}:{st.st_size}:{st.st_mtime_ns}")
    key = hashlib.sha256("|".join(parts).encode()).hexdigest()[:20]
    return Path(user_cache_dir("voice-router")) / "decoder" / key


def _read_step_cache(folder: Path, names: Sequence[str]) -> dict[str, np.ndarray] | None:
    """The cached step weights, memory-mapped (read-only; pages come from the file as the
    graph reads them), or None when missing or damaged (then quantised and written again)."""
    index = folder / "index.json"
    if not index.is_file():
        return None
    try:
        listed = json.loads(index.read_text(encoding="utf-8"))
        if sorted(listed) != sorted(names):
            raise ValueError("other tensors")
        out = {}
        for n in names:
            a = np.load(folder / f"{n}.npy", mmap_mode="r", allow_pickle=False)
            if list(a.shape) != listed[n][0] or str(a.dtype) != listed[n][1]:
                raise ValueError(f"{n}: shape or dtype differs from the index")
            out[n] = a
        return out
    except (OSError, ValueError, TypeError, KeyError, IndexError):
        shutil.rmtree(folder, ignore_errors=True)  # rebuilt by the caller
        return None


def _write_step_cache(folder: Path, feeds: Mapping[str, np.ndarray]) -> None:
    """Write the step weights into `folder` atomically: a temporary folder renamed into place
    (a reader sees all of it or none); an unwritable cache only costs the quantisation again."""
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        for n, a in feeds.items():
            np.save(tmp / f"{n}.npy", np.ascontiguousarray(a), allow_pickle=False)
        index = {n: [list(a.shape), str(a.dtype)] for n, a in feeds.items()}
        (tmp / "index.json").write_text(json.dumps(index), encoding="utf-8")  # written last
        os.replace(tmp, folder)
    except OSError:  # another process put it there first, or the disk is read-only / full
        pass
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """Log-probabilities over the last axis (float32)."""
    m = logits.max(-1, keepdims=True)
    z = logits - m
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


_LAYER_KEYS = [
    f"{part}.{kind}"
    for part in (
        "self_attn.q_proj",
        "self_attn.v_proj",
        "self_attn.out_proj",
        "encoder_attn.q_proj",
        "encoder_attn.v_proj",
        "encoder_attn.out_proj",
        "self_attn_layer_norm",
        "encoder_attn_layer_norm",
        "final_layer_norm",
        "fc1",
        "fc2",
    )  # fmt: skip
    for kind in ("weight", "bias")
] + ["self_attn.k_proj.weight", "encoder_attn.k_proj.weight"]


class WhisperTokenizer:
    """Whisper's byte-level BPE (the `tokenizers` package) and its special token ids.

    What the slot stage needs (special ids, each text token's text, decoding its tokens) is
    kept in the user cache folder as a small JSON table (`token_table_file`), so a warm start
    never loads the 2 MB tokenizer.json into `tokenizers` (0.1-0.2 s here) nor decodes the
    vocabulary's 50,000 pieces (0.1-0.3 s); `encode` and `vocab` load it on first use."""

    def __init__(self, path: str | Path | None = None) -> None:
        p = Path(path) if path is not None else BUNDLED / TOKENIZER_FILE
        if not p.is_file():
            raise ModelError(f"no Whisper tokenizer at {p}")
        self.path = p
        self._tok: Any = None
        self._by_id: dict[int, str] | None = None
        table = self._table()
        self.vocab_size = int(table["vocab_size"])
        self.eot = int(table["eot"])
        self.sot = int(table["sot"])
        self.no_timestamps = int(table["no_timestamps"])
        # Whisper's "no speech" token (<|nocaptions|> in the English-only vocabularies,
        # <|nospeech|> in later ones): its probability right after <|startoftranscript|> is
        # Whisper's own no-speech probability. None when the vocabulary has neither.
        ns = table.get("no_speech")
        self.no_speech: int | None = None if ns is None else int(ns)
        # The first id that is not text: specials and timestamps are never part of a phrasing.
        self.first_special = self.eot
        self._ids: list[int] = table["ids"]
        self._texts: list[str] = table["texts"]

    @property
    def tokenizer(self) -> Any:
        """The `tokenizers` Tokenizer (loaded on first use)."""
        if self._tok is None:
            from tokenizers import Tokenizer

            self._tok = Tokenizer.from_file(str(self.path))
        return self._tok

    def _table(self) -> dict[str, Any]:
        """Special ids, vocabulary size and text tokens: from the cache, else computed from
        the tokenizer and cached (an unreadable or unwritable cache only costs time)."""
        cache = token_table_file(self.path)
        if cache is not None and cache.is_file():
            try:
                table = json.loads(cache.read_text(encoding="utf-8"))
                if table.get("version") == TOKEN_TABLE_VERSION and len(table["ids"]) == len(
                    table["texts"]
                ):
                    return table
            except (OSError, ValueError, KeyError, TypeError):
                pass
        tok = self.tokenizer

        def special(name: str) -> int:
            i = tok.token_to_id(name)
            if i is None:
                raise ModelError(f"{self.path}: the tokenizer has no {name}")
            return int(i)

        eot = special("<|endoftext|>")
        table = {
            "version": TOKEN_TABLE_VERSION,
            "vocab_size": tok.get_vocab_size(with_added_tokens=True),
            "eot": eot,
            "sot": special("<|startoftranscript|>"),
            "no_timestamps": special("<|notimestamps|>"),
            "no_speech": next(
                (
                    int(i)
                    for n in ("<|nocaptions|>", "<|nospeech|>")
                    if (i := tok.token_to_id(n)) is not None
                ),
                None,
            ),
            **_text_tokens(tok.get_vocab(with_added_tokens=False), eot),
        }
        if cache is not None:
            try:
                cache.parent.mkdir(parents=True, exist_ok=True)
                tmp = cache.with_name(f"{cache.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(table, ensure_ascii=False), encoding="utf-8")
                os.replace(tmp, cache)
            except OSError:
                pass
        return table

    @property
    def prompt(self) -> list[int]:
        """What the decoder is started with: <|startoftranscript|> <|notimestamps|> (English-only
        models have no language or task token)."""
        return [self.sot, self.no_timestamps]

    def text_tokens(self) -> list[tuple[int, str]]:
        """(id, text) of every text token (below <|endoftext|>) that is whole UTF-8 (pieces of
        a multi-byte character never spell an English phrasing), ordered by (lower-cased text,
        id): the order the vocabulary trie keeps them in (voice_router.grammar)."""
        return list(zip(self._ids, self._texts, strict=True))

    def text_token_lists(self) -> tuple[list[int], list[str]]:
        """`text_tokens` as (ids, texts), the table's own lists (not copies: do not change
        them); what the vocabulary trie is built from."""
        return self._ids, self._texts

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` exactly as written (no special tokens added)."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def vocab(self) -> dict[str, int]:
        """The BPE vocabulary (byte-level piece -> id), without added tokens."""
        return dict(self.tokenizer.get_vocab(with_added_tokens=False))

    def decode(self, ids: list[int]) -> str:
        """Text of token ids; special tokens are dropped. Text tokens (what the slot stage
        reads) are joined from the table; any other id goes through the tokenizer."""
        ids = [i for i in ids if i < self.first_special]
        if self._by_id is None:
            self._by_id = dict(zip(self._ids, self._texts, strict=True))
        by_id = self._by_id
        if all(i in by_id for i in ids):
            return "".join(by_id[i] for i in ids)
        return self.tokenizer.decode(ids)


#: Bump when the table's contents change: old cache files are recomputed.
TOKEN_TABLE_VERSION = 3  # 3: the no-speech token id


def token_table_file(tokenizer: Path) -> Path | None:
    """Where a tokenizer's table is cached (None: VOICE_ROUTER_DECODER_CACHE=0); keyed by the
    file as it is now (path, size, mtime), as the decoder's step weights are."""
    if os.environ.get("VOICE_ROUTER_DECODER_CACHE", "1") == "0":
        return None
    from platformdirs import user_cache_dir

    try:
        st = tokenizer.stat()
    except OSError:
        return None
    text = f"{TOKEN_TABLE_VERSION}|{tokenizer.resolve()}:{st.st_size}:{st.st_mtime_ns}"
    key = hashlib.sha256(text.encode()).hexdigest()[:20]
    return Path(user_cache_dir("voice-router")) / "tokens" / f"{key}.json"


def _byte_alphabet() -> dict[str, int]:
    """GPT-2's byte-level BPE alphabet: the printable character standing for each byte."""
    bs = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
          *range(ord("®"), ord("ÿ") + 1)]  # fmt: skip
    cs = bs[:]
    extra = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def _text_tokens(vocab: Mapping[str, int], first_special: int) -> dict[str, list[Any]]:
    """{"ids": [...], "texts": [...]} of every whole-UTF-8 text token of a byte-level BPE
    vocabulary, ordered by (lower-cased text, id) (two flat lists: they load from JSON in a
    third of the time pairs take)."""
    # piece -> the bytes it stands for, by one str.translate per piece (a character outside
    # the alphabet maps past latin-1, so encoding fails and the piece is skipped)
    table = dict.fromkeys(range(0x100), 0x100)
    table.update({ord(c): b for c, b in _byte_alphabet().items()})
    out = []
    for piece, tid in vocab.items():
        if tid >= first_special:
            continue
        try:
            out.append((piece.translate(table).encode("latin-1").decode("utf-8"), tid))
        except UnicodeError:
            continue
    out.sort(key=lambda x: (x[0].lower(), x[1]))
    return {"ids": [tid for _, tid in out], "texts": [text for text, _ in out]}
