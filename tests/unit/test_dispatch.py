"""Dispatch: tool resolution (registered / opt-in import), argument validation, isolation."""

from __future__ import annotations

import logging
import time

import pytest
from langchain_core.tools import tool

from voice_router.dispatch import (
    ToolRegistry,
    accepts_match,
    import_tool,
    invoke_tool,
    is_import_path,
    validate_args,
)
from voice_router.errors import ToolError


@tool
def set_temp(degrees: int, room: str = "hall") -> str:
    """Set the temperature."""
    return f"{room}={degrees}"


@tool
def with_match(match: dict | None = None) -> str:
    """Echo the matched route."""
    return (match or {}).get("route", "none")


@tool
def explode() -> str:
    """Always fails."""
    raise RuntimeError("boom")


@tool
def sleepy(seconds: float) -> str:
    """Sleeps."""
    time.sleep(seconds)
    return "woke"


def test_is_import_path():
    assert is_import_path("pkg.mod:attr") and is_import_path("m:a.b")
    for bad in ("lights_on", "pkg.mod", "pkg/mod:a", ":a", "m:", "m:a;b"):
        assert not is_import_path(bad)


def test_registered_tools_resolve_by_name_and_by_import_path_attribute():
    reg = ToolRegistry([set_temp])
    assert reg.resolve("set_temp") is set_temp
    # routes/home.yaml names tools by path; a registered tool of that name serves it, no import
    assert reg.resolve("examples.home_tools:set_temp") is set_temp
    assert reg.names == ["set_temp"]


def test_plain_callables_are_wrapped_as_tools():
    def shout(text: str) -> str:
        """Upper-case text."""
        return text.upper()

    reg = ToolRegistry([shout])
    assert reg.resolve("shout").invoke({"text": "hi"}) == "HI"


def test_unknown_tool_error_names_route_tool_and_registered():
    with pytest.raises(ToolError, match=r"route 'r'.*'nope'.*registered: set_temp"):
        ToolRegistry([set_temp]).resolve("nope", "r")


def test_import_paths_need_opt_in(tmp_path, monkeypatch):
    (tmp_path / "mytools.py").write_text(
        "from langchain_core.tools import tool\n\n@tool\ndef hello(name: str) -> str:\n"
        '    """Greets."""\n    return "hi " + name\n\ndef plain(x: int) -> int:\n'
        '    """Doubles."""\n    return 2 * x\n'
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ToolError, match="--allow-import"):
        ToolRegistry().resolve("mytools:hello", "greet")
    reg = ToolRegistry(allow_import=True)
    assert reg.resolve("mytools:hello").invoke({"name": "bo"}) == "hi bo"
    assert reg.resolve("mytools:plain").invoke({"x": 4}) == 8


def test_import_errors_are_tool_errors(tmp_path, monkeypatch):
    (tmp_path / "broken_mod.py").write_text("raise ValueError('bad module')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ToolError, match="cannot import module 'no_such_module_xyz'"):
        import_tool("no_such_module_xyz:f")
    with pytest.raises(ToolError, match="has no attribute 'nothing'"):
        import_tool("json:nothing")
    with pytest.raises(ToolError, match="ValueError: bad module"):
        import_tool("broken_mod:f")
    with pytest.raises(ToolError, match="neither a LangChain tool nor a callable"):
        import_tool("math:pi")


def test_validate_args_names_route_tool_and_field():
    validate_args(set_temp, "r", {"degrees": 21}, with_match=True)
    with pytest.raises(ToolError, match=r"route 'r', tool 'set_temp': argument 'degrees'"):
        validate_args(set_temp, "r", {"degrees": "warm"}, with_match=False)
    with pytest.raises(ToolError, match=r"argument 'degrees'.*[Ff]ield required"):
        validate_args(set_temp, "r", {}, with_match=False)
    with pytest.raises(ToolError, match="unknown argument 'colour'"):
        validate_args(set_temp, "r", {"degrees": 1, "colour": "red"}, with_match=False)


def test_match_is_passed_only_to_tools_that_take_it():
    assert accepts_match(with_match) and not accepts_match(set_temp)
    assert invoke_tool(with_match, "r", {}, match={"route": "r"}).result == "r"
    assert invoke_tool(set_temp, "r", {"degrees": 3}, match={"route": "r"}).result == "hall=3"


def test_raising_tool_is_reported_and_logged(caplog):
    with caplog.at_level(logging.ERROR, logger="voice_router.dispatch"):
        out = invoke_tool(explode, "r", {})
    assert out.result is None and not out.timed_out
    assert out.error == "tool 'explode' (route 'r') raised RuntimeError: boom"
    assert "boom" in caplog.text


def test_hanging_tool_times_out_and_returns_promptly():
    t0 = time.perf_counter()
    out = invoke_tool(sleepy, "r", {"seconds": 5}, timeout_s=0.2)
    assert time.perf_counter() - t0 < 1.5
    assert out.timed_out and "did not finish within 0.2 s" in out.error
    assert invoke_tool(sleepy, "r", {"seconds": 0}, timeout_s=2).result == "woke"


def test_non_string_results_become_json_values():
    @tool
    def data() -> dict:
        """Returns a dict."""
        return {"a": (1, 2), "b": None}

    assert invoke_tool(data, "r", {}).result == {"a": [1, 2], "b": None}


def test_unimported_tool_paths_are_a_note_and_other_problems_a_warning(caplog):
    """Without --allow-import every import-path tool is only decided (the documented default,
    each match says why): logged as INFO, not a WARNING on every call; a tool that does not
    resolve at all stays a warning."""
    from voice_router.dispatch import ToolRunner
    from voice_router.routes import parse_routes

    blocked = parse_routes(
        "routes:\n  - {name: a, description: x, tool: 'examples.home_tools:lights_on'}\n"
    )
    with caplog.at_level(logging.INFO, logger="voice_router.dispatch"):
        runner = ToolRunner(blocked, strict=False)
        runner.check()
    assert "a" in runner.problems
    assert [r.levelno for r in caplog.records] == [logging.INFO]
    caplog.clear()
    missing = parse_routes("routes:\n  - {name: b, description: y, tool: no_such_tool}\n")
    with caplog.at_level(logging.INFO, logger="voice_router.dispatch"):
        ToolRunner(missing, strict=False).check()
    assert [r.levelno for r in caplog.records] == [logging.WARNING]
