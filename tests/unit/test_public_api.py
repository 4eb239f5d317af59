"""The package's public surface: every name in __all__ imports; nothing public is missing;
`import voice_router` stays light (no torch, Qdrant or LangChain until needed)."""

from __future__ import annotations

import inspect
import subprocess
import sys

import pytest

import voice_router

# Modules whose public classes/functions users need from the top level.
_TOP_LEVEL_MODULES = {
    "voice_router.errors": None,  # every public name
    "voice_router.runnable": {"VoiceRouter"},
    "voice_router.routing": {"Router", "RouteMatch"},
    "voice_router.decision": {"Fusion"},
    "voice_router.index": {"RouteIndex"},
    "voice_router.store": {"EdgeBackend", "ClientBackend", "VectorBackend"},
    "voice_router.library": {"AudioLibrary"},
    "voice_router.embeddings": {"VoiceRouterEmbeddings"},
    "voice_router.routes": {"Route", "RouteSet", "load_routes", "parse_routes", "dump_routes"},
    "voice_router.audio.io": {"load_audio", "chunk_audio", "AudioInput"},
    "voice_router.model.loader": {"load_model", "list_models"},
    "voice_router.audio.capture": {"MicrophoneSource", "FileSource", "ArraySource"},
}


@pytest.mark.parametrize("name", voice_router.__all__)
def test_every_name_in_all_is_importable(name):
    obj = getattr(voice_router, name)
    assert obj is not None
    ns: dict = {}
    exec(f"from voice_router import {name}", ns)
    assert ns[name] is obj


def test_all_is_sorted_unique_and_covers_the_interfaces():
    assert len(set(voice_router.__all__)) == len(voice_router.__all__)
    assert voice_router.__all__ == sorted(voice_router.__all__)
    import importlib

    for module, names in _TOP_LEVEL_MODULES.items():
        mod = importlib.import_module(module)
        if names is None:  # all public classes defined in the module
            names = {
                n
                for n, o in vars(mod).items()
                if not n.startswith("_") and inspect.isclass(o) and o.__module__ == module
            }
        missing = names - set(voice_router.__all__)
        assert not missing, f"{module}: {sorted(missing)} not exported from voice_router"
        for n in names:
            assert getattr(voice_router, n) is getattr(mod, n)


@pytest.mark.parametrize("name", sorted(voice_router._EXPORTS))
def test_every_top_level_name_comes_from_the_module_that_defines_it(name):
    """No re-exports: `voice_router.X` is looked up in X's own module, so a name moved between
    modules cannot be served by a stale alias."""
    obj = getattr(voice_router, name)
    defined_in = getattr(obj, "__module__", None)
    if isinstance(obj, type) or callable(obj):
        assert defined_in == voice_router._EXPORTS[name]


def test_unknown_attribute_raises_attribute_error():
    with pytest.raises(AttributeError, match="no_such_thing"):
        voice_router.no_such_thing  # noqa: B018


def test_import_is_light():
    code = (
        "import sys, voice_router; heavy = [m for m in ('torch', 'qdrant_client', 'qdrant_edge', "
        "'langchain_core', 'transformers') if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_error_types_share_a_base_with_distinct_exit_codes():
    errs = [getattr(voice_router, n) for n in voice_router.__all__ if n.endswith("Error")]
    assert all(issubclass(e, voice_router.VoiceRouterError) for e in errs)
    codes = [e.exit_code for e in errs if e is not voice_router.VoiceRouterError]
    assert len(codes) == len(set(codes)) and 0 not in codes


def test_console_script_points_at_cli_main():
    import tomllib
    from pathlib import Path

    meta = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())
    assert meta["project"]["scripts"]["voice-router"] == "voice_router.cli:main"
    from voice_router.cli import main

    assert callable(main)


def test_the_store_imports_no_model_tts_or_routes():
    """voice_router.store stores and searches vectors: it never embeds, so it never imports a
    model, the TTS, the route index or the routes schema."""
    code = (
        "import sys, voice_router.store\n"
        "bad = [m for m in ('voice_router.model', 'voice_router.tts', 'voice_router.index',\n"
        "       'voice_router.routes', 'torch', 'onnxruntime') if m in sys.modules]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
