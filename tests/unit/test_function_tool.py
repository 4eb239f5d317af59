"""Plain functions named by import path are called as tools without LangChain, their
arguments checked against their type hints."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path
from typing import Any, Literal

import pytest

from voice_router.dispatch import ToolRegistry, import_tool, validate_args
from voice_router.errors import ToolError
from voice_router.function_tool import FunctionTool

ROOT = Path(__file__).resolve().parents[2]


def thermostat(
    change: Literal["up", "down"], step_c: float = 1.0, match: dict | None = None
) -> str:
    """Turn the thermostat."""
    return f"{change} {step_c!r} {sorted(match or {})}"


def timer(minutes: int, label: str | None = None) -> str:
    """Set a timer."""
    return f"{minutes!r} {label}"


def test_arguments_are_checked_and_converted_as_pydantic_lax_mode_would():
    t = FunctionTool(thermostat, "m:thermostat")
    assert t.name == "m:thermostat" and t.description == "Turn the thermostat."
    assert t.invoke({"change": "up", "step_c": 2}) == "up 2.0 []"  # int widened to float
    assert t.invoke({"change": "down", "match": {"route": "x"}}) == "down 1.0 ['route']"
    assert FunctionTool(timer).invoke({"minutes": 12.0}) == "12 None"  # integral float -> int
    assert FunctionTool(timer).invoke({"minutes": "7", "label": "tea"}) == "7 tea"
    for args, says in (
        ({"change": "sideways"}, "argument 'change': 'sideways' should be one of 'up', 'down'"),
        ({"change": "up", "step_c": "warm"}, "argument 'step_c': 'warm' should be a number"),
        ({"change": "up", "colour": "red"}, "unknown argument 'colour'"),
        ({"change": "up", "match": 3}, "argument 'match': 3 should be dict or None"),
    ):
        with pytest.raises(ToolError, match=says):
            t.invoke(args)
    with pytest.raises(ToolError, match="argument 'minutes': 2.5 should be a whole number"):
        FunctionTool(timer).invoke({"minutes": 2.5})


def remind(when: dt.date, extra: Any = None) -> str:
    """Remind."""
    return when.isoformat()


def test_other_annotations_go_through_pydantic():
    t = FunctionTool(remind)
    assert t.invoke({"when": "2026-12-08", "extra": object()}) == "2026-12-08"
    with pytest.raises(ToolError, match="argument 'when'"):
        t.invoke({"when": "not a date"})


def test_start_up_check_uses_the_signature(tmp_path, monkeypatch):
    """`validate_args` (what the router runs at start) refuses unknown, missing and mistyped
    arguments of a plain function named by import path, without pydantic."""
    t = FunctionTool(timer)
    assert t.args_schema["required"] == ["minutes"]
    validate_args(t, "r", {"minutes": 3}, with_match=True)
    with pytest.raises(ToolError, match="unknown argument 'room'"):
        validate_args(t, "r", {"minutes": 3, "room": "x"}, with_match=False)
    with pytest.raises(ToolError, match="missing argument 'minutes'"):
        validate_args(t, "r", {}, with_match=False)
    with pytest.raises(ToolError, match="route 'r', tool 'timer': argument 'minutes': 'x' "):
        validate_args(t, "r", {"minutes": "x"}, with_match=False)


def test_import_paths_to_plain_functions_give_function_tools(tmp_path, monkeypatch):
    (tmp_path / "vr_ft_mod.py").write_text(
        "def double(x: int) -> int:\n    '''Doubles.'''\n    return 2 * x\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    tool = import_tool("vr_ft_mod:double")
    assert isinstance(tool, FunctionTool) and tool.invoke({"x": 4}) == 8
    reg = ToolRegistry(allow_import=True)
    assert reg.resolve("vr_ft_mod:double", "r").invoke({"x": "5"}) == 10


def test_the_example_tools_by_import_path_need_no_langchain():
    """What `voice-router route --allow-import` does with routes/home.yaml: every tool is
    imported and called without langchain_core (0.8 s of imports) or pydantic."""
    code = (
        "import sys, yaml\n"
        "from voice_router.dispatch import ToolRegistry, validate_args\n"
        "reg = ToolRegistry(allow_import=True)\n"
        "routes = yaml.safe_load(open('routes/home.yaml'))['routes']\n"
        "for r in routes:\n"
        "    t = reg.resolve(r['tool'], r['name'])\n"
        "    validate_args(t, r['name'], r.get('args', {}), with_match=True)\n"
        "print(reg.resolve('examples.home_tools:get_time', 'x').invoke({'match': {}}))\n"
        "print(reg.resolve('examples.home_tools:set_timer', 'x').invoke({'minutes': 12}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('langchain_core', 'langsmith', 'pydantic')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("It is ") and lines[1] == "Timer set for 12 minutes."
    assert lines[2] == "[]"
