"""Every example script runs (as a user would run it) and does what it says."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from .conftest import ROOT

FAST = ["--model", "hash", "--index", ":memory:", "--exemplar-voices", "0"]


def _run(script: str, *args: str) -> str:
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / script), *args],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr
    assert "Traceback" not in out.stderr
    return out.stdout


def test_01_route_a_file():
    out = _run("01_route_a_file.py", *FAST)
    decision = json.loads(out[: out.index("\n}\n") + 2])
    assert decision["file"].endswith("rhasspy_turn_on_the_living_room_lamp.flac")
    assert {"route", "score", "margin", "latency_ms"} <= set(decision)
    assert "actions taken:" in out


def test_02_langchain_agent_tool():
    out = _run("02_langchain_agent_tool.py", *FAST)
    assert "[AIMessage] [{'name': 'voice_router'" in out
    assert "[ToolMessage] {" in out and "router decided:" in out


def test_03_audio_search(tmp_path):
    out = _run("03_audio_search.py", "--model", "hash", "--index", str(tmp_path / "idx"))
    first = out.splitlines()[0]
    n = int(first.split()[1])
    assert n >= 2 and f"re-run skipped {n}" in first
    assert "query embedding dim: 32" in out


@pytest.mark.slow
@pytest.mark.parametrize(
    "script", ["01_route_a_file.py", "02_langchain_agent_tool.py", "03_audio_search.py"]
)
def test_examples_with_the_tiny_torch_model(script, tmp_path):
    _run(script, "--model", "tiny", "--index", str(tmp_path / "idx"), "--exemplar-voices", "0")


def test_readme_python_snippet_runs_as_a_script_outside_the_repository(tmp_path):
    """The README's first Python block, extracted from README.md (so the test fails when the
    README drifts), saved as a script and run from a folder outside the repository, as a user
    would: the installed `voice_router` is this checkout (a shim folder on PYTHONPATH, so
    nothing else of the repository, `examples/` included, is importable). Default model and
    the default index folder (redirected into tmp_path through XDG_DATA_HOME, so the user's
    own index is never touched)."""
    import os
    import re

    readme = (ROOT / "README.md").read_text()
    code = re.search(r"```python\n(.*?)```", readme, re.S).group(1)
    assert "VoiceRouter(" in code and "listen(" not in code  # the live block is separate
    shim = tmp_path / "site"
    shim.mkdir()
    (shim / "voice_router").symlink_to(ROOT / "voice_router", target_is_directory=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    script = work / "snippet.py"
    script.write_text(code)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp_path), "PYTHONPATH": str(shim)}
    probe = (
        "import voice_router, importlib.util as u; "
        "print(voice_router.__file__, u.find_spec('examples'))"
    )
    seen = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, cwd=work, env=env
    )
    assert seen.stdout.split() == [str(shim / "voice_router" / "__init__.py"), "None"], seen
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=work,
        env=env,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    route, *_ = out.stdout.split()
    assert route == "what_time" and "It is " in out.stdout
    assert (tmp_path / "voice-router" / "index").is_dir()


@pytest.mark.parametrize("minutes", [5, 12, 45])
def test_04_timer_duration_reaches_the_tool(tmp_path, minutes):
    """The bundled model routes a spoken "set a timer for N minutes" (espeak-ng, a voice the
    exemplars do not use; route text only, for speed) to set_timer, and the slot stage reads
    the number said exactly: the tool receives `minutes` = N."""
    from voice_router import tts

    if not tts.tts_available():
        pytest.skip("espeak-ng is not installed")
    out = _run(
        "04_timer_with_a_duration.py",
        "--minutes", str(minutes), "--index", str(tmp_path / "idx"), "--exemplar-voices", "0",
    )  # fmt: skip
    shown = json.loads(out[: out.index("\n}\n") + 2])
    assert shown["route"] == "set_timer", shown
    assert shown["args"]["minutes"] == minutes, shown
    assert set(shown["slots"]) == {"minutes"} and shown["reading"]["understood"]
    assert f"Timer set for {minutes} minutes." in out
