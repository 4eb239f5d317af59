"""Tool faults are contained: a missing import, a tool that raises, a tool that hangs."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from langchain_core.tools import tool

from voice_router import VoiceRouter
from voice_router.errors import ToolError
from voice_router.routes import parse_routes

ROOT = Path(__file__).resolve().parents[2]

ROUTES = """\
threshold: 0.5
margin: 0.0
routes:
  - {name: broken, description: break something, tool: explode}
  - {name: stuck, description: wait forever, tool: hang}
  - {name: fine, description: say hello, tool: hello}
"""

HANG = threading.Event()  # set at teardown so abandoned tool threads end


@tool
def explode() -> str:
    """Always raises."""
    raise ValueError("device offline")


@tool
def hang() -> str:
    """Blocks until the test ends."""
    HANG.wait(30)
    return "late"


@tool
def hello() -> str:
    """Works."""
    return "hello"


@pytest.fixture
def router(hash_model):
    HANG.clear()
    r = VoiceRouter(
        parse_routes(ROUTES),
        model=hash_model,
        tools=[explode, hang, hello],
        index=":memory:",
        exemplar_voices=0,
        tool_timeout_s=0.3,
    )
    yield r
    HANG.set()


def _vec(model, text):
    return model.embed_text([text])[0]


def test_tool_that_raises_is_reported_and_the_router_goes_on(router, hash_model, caplog):
    for _ in range(2):
        m = router.route_vector(_vec(hash_model, "break something"))
        assert m.route == "broken" and m.tool_result is None
        assert m.tool_error == "tool 'explode' (route 'broken') raised ValueError: device offline"
    assert "device offline" in caplog.text
    assert router.route_vector(_vec(hash_model, "say hello")).tool_result == "hello"


def test_tool_that_hangs_times_out_and_the_router_goes_on(router, hash_model):
    t0 = time.perf_counter()
    m = router.route_vector(_vec(hash_model, "wait forever"))
    elapsed = time.perf_counter() - t0
    assert m.route == "stuck" and m.tool_result is None
    assert "did not finish within 0.3 s" in m.tool_error
    assert 0.25 < elapsed < 2.0
    assert m.latency_ms["dispatch"] >= 250
    t0 = time.perf_counter()
    assert router.route_vector(_vec(hash_model, "say hello")).tool_result == "hello"
    assert time.perf_counter() - t0 < 0.5
    stuck = [t for t in threading.enumerate() if t.name == "voice-router-tool-hang"]
    assert stuck and all(t.daemon for t in stuck)  # cannot block interpreter exit


def test_hung_tool_does_not_block_process_exit(tmp_path):
    script = tmp_path / "hang_exit.py"
    script.write_text(
        "import sys, threading\n"
        f"sys.path.insert(0, {str(ROOT)!r})\n"
        "from langchain_core.tools import tool\n"
        "from voice_router import VoiceRouter\n"
        "from voice_router.model.fake import HashEmbeddingModel\n"
        "from voice_router.routes import parse_routes\n"
        "@tool\ndef hang() -> str:\n    '''Never returns.'''\n    threading.Event().wait()\n"
        "m = HashEmbeddingModel()\n"
        "r = VoiceRouter(parse_routes('routes:\\n  - {name: s, description: wait, tool: hang}\\n'),"
        " model=m, tools=[hang], index=':memory:', exemplar_voices=0, tool_timeout_s=0.2)\n"
        "print(r.route_vector(m.embed_text(['wait'])[0]).tool_error)\n"
    )
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "did not finish within 0.2 s" in out.stdout
    assert time.perf_counter() - t0 < 30


def test_missing_import_is_a_clear_error_from_python(hash_model):
    rs = parse_routes("routes:\n  - {name: a, description: x, tool: 'no_such_pkg_zz.tools:f'}\n")
    with pytest.raises(ToolError, match="cannot import module 'no_such_pkg_zz.tools'"):
        VoiceRouter(rs, model=hash_model, index=":memory:", allow_import=True, exemplar_voices=0)


def test_missing_import_from_the_cli_exits_7_before_any_audio(tmp_path, capsys):
    """README's exit-code table: 7 for a tool that cannot be resolved; the message names the
    route and the tool, and nothing is routed with a broken configuration."""
    from voice_router.cli import main

    t = np.arange(8000) / 16000
    sf.write(tmp_path / "c.wav", (0.3 * np.sin(2 * np.pi * 300 * t)).astype(np.float32), 16000)
    (tmp_path / "r.yaml").write_text(
        "threshold: -1\nmargin: 0\nroutes:\n"
        "  - {name: a, description: x, tool: 'no_such_pkg_zz.tools:f'}\n"
    )
    code = main(
        [
            "route",
            str(tmp_path / "c.wav"),
            "--routes",
            str(tmp_path / "r.yaml"),
            "--json",
            "--allow-import",
            "--model",
            "hash",
            "--qdrant-url",
            ":memory:",
            "--exemplar-voices",
            "0",
        ]
    )
    out, err = capsys.readouterr()
    assert code == 7 and out == ""
    assert err.startswith("error: route 'a': tool 'no_such_pkg_zz.tools:f': cannot import module")
    assert "Traceback" not in err


def test_bad_route_args_are_refused_before_any_audio(hash_model):
    @tool
    def dim(level: int) -> str:
        """Dims."""
        return str(level)

    rs = parse_routes("routes:\n  - {name: a, description: x, tool: dim, args: {level: high}}\n")
    with pytest.raises(ToolError, match=r"route 'a', tool 'dim': argument 'level'"):
        VoiceRouter(rs, model=hash_model, tools=[dim], index=":memory:", exemplar_voices=0)
