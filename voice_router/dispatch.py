"""Route -> LangChain tool: resolution, argument validation, and isolated invocation.

A route's `tool` names either a tool registered in Python (`VoiceRouter(routes, tools=[...])`)
or, only when the user opts in (`allow_import=True`, CLI `--allow-import`), an import path
`package.module:attr`. Loading a routes file therefore never imports code by itself.

Invocation runs the tool in a daemon worker thread with a timeout: a tool that raises is
reported (and logged) in the result; a tool that hangs is reported after the timeout and the
router goes on (the stuck thread is abandoned, it cannot block interpreter exit).
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import queue
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from voice_router.errors import ToolError, ToolImportBlocked

if TYPE_CHECKING:
    from voice_router.routes import Route, RouteSet

log = logging.getLogger(__name__)

DEFAULT_TOOL_TIMEOUT_S = 10.0

_IMPORT_PATH_RE = re.compile(
    r"^[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*:[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*$"
)


def is_import_path(name: str) -> bool:
    """True if `name` looks like `package.module:attr`."""
    return bool(_IMPORT_PATH_RE.match(name))


def as_langchain_tool(obj: Any, name: str | None = None) -> Any:
    """Return `obj` as a LangChain `BaseTool` (plain callables are wrapped)."""
    from langchain_core.tools import BaseTool, StructuredTool

    if isinstance(obj, BaseTool):
        return obj
    if callable(obj):
        return StructuredTool.from_function(obj, name=name or getattr(obj, "__name__", None))
    raise ToolError(f"{name or obj!r} is neither a LangChain tool nor a callable")


def import_tool(path: str) -> Any:
    """Import `package.module:attr` and return it as a LangChain tool (raises `ToolError`)."""
    if not is_import_path(path):
        raise ToolError(f"tool {path!r} is not an import path of the form package.module:attr")
    mod_name, attr = path.split(":", 1)
    # Like `python -m` (and uvicorn), resolve user modules from the working directory too;
    # the console script alone would not see ./examples or ./mytools.py.
    cwd = os.getcwd()
    if cwd not in sys.path:
        sys.path.append(cwd)
    try:
        obj: Any = importlib.import_module(mod_name)
    except ImportError as e:
        raise ToolError(
            f"tool {path!r}: cannot import module {mod_name!r} ({e}); check the name and that "
            "it is installed in this Python environment"
        ) from None
    except Exception as e:  # the module itself failed while importing
        raise ToolError(
            f"tool {path!r}: importing {mod_name!r} failed: {type(e).__name__}: {e}"
        ) from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ToolError(
                f"tool {path!r}: module {mod_name!r} has no attribute {attr!r}; correct the "
                "tool's name in the routes file (`voice-router routes check` lists them all)"
            ) from None
    if inspect.isfunction(obj) or inspect.ismethod(obj):
        # a plain function is called as it is: wrapping it as a LangChain tool would import
        # langchain_core and langsmith (0.8 s of a `route --allow-import` start)
        from voice_router.function_tool import FunctionTool

        return FunctionTool(obj, name=path)
    return as_langchain_tool(obj, name=path)


class ToolRegistry:
    """Tools by name; import paths resolved only with `allow_import=True`.

    Args:
        tools: LangChain tools (or plain callables) registered under their `.name`.
        allow_import: let routes name `package.module:attr` tools (imports user code).
    """

    def __init__(self, tools: Iterable[Any] = (), *, allow_import: bool = False) -> None:
        self.allow_import = allow_import
        self._tools: dict[str, Any] = {}
        self._lock = threading.Lock()
        for t in tools:
            tool = as_langchain_tool(t)
            self._tools[tool.name] = tool

    @property
    def names(self) -> list[str]:
        """Registered tool names."""
        return sorted(self._tools)

    def resolve(self, name: str, route: str = "?") -> Any:
        """The tool called `name`, importing it if allowed; `ToolError` otherwise."""
        with self._lock:
            if name in self._tools:
                return self._tools[name]
            if is_import_path(name):
                # A registered tool whose name is the path's attribute serves the route without
                # importing anything (routes/home.yaml works from Python with tools=[...]).
                attr = name.rsplit(":", 1)[1].rsplit(".", 1)[-1]
                if attr in self._tools:
                    return self._tools[attr]
                if not self.allow_import:
                    raise ToolImportBlocked(
                        f"route {route!r} names tool {name!r}, an import path; importing code from "
                        "a routes file is off by default: pass allow_import=True (CLI: "
                        "--allow-import) if you trust it, or register the tool in Python"
                    )
                try:
                    tool = import_tool(name)
                except ToolError as e:  # say which route, as the other errors here do
                    if route == "?":
                        raise
                    raise ToolError(f"route {route!r}: {e}") from None
                self._tools[name] = tool
                return tool
            known = ", ".join(self.names) or "none"
            raise ToolError(
                f"route {route!r} names tool {name!r}, which is not registered (registered: "
                f"{known}); pass it in tools=[...] or name it as package.module:attr with "
                "--allow-import"
            )


def tool_fields(tool: Any) -> set[str] | None:
    """Field names of the tool's argument schema (None if it has no introspectable schema)."""
    schema = getattr(tool, "args_schema", None)
    if schema is None:
        return None
    if isinstance(schema, dict):
        return set((schema.get("properties") or {}).keys())
    fields = getattr(schema, "model_fields", None)
    if fields is not None:
        return set(fields)
    return None


def accepts_match(tool: Any) -> bool:
    """True if the tool has a `match` argument (it then receives the RouteMatch as a dict)."""
    fields = tool_fields(tool)
    return bool(fields and "match" in fields)


def validate_args(tool: Any, route: str, args: Mapping[str, Any], *, with_match: bool) -> None:
    """Check `args` against the tool's `args_schema`; `ToolError` names route, tool and field."""
    schema = getattr(tool, "args_schema", None)
    data = dict(args)
    if with_match and accepts_match(tool):
        data.setdefault("match", {})
    if schema is None:
        return
    check = getattr(tool, "check_args", None)  # a FunctionTool: names and types, no pydantic
    if check is not None:
        check(data, route)
        return
    if isinstance(schema, dict):
        props = schema.get("properties") or {}
        extra = [k for k in data if props and k not in props]
        missing = [k for k in schema.get("required", []) if k not in data]
        bad = extra or missing
        if bad:
            what = "unknown argument" if extra else "missing argument"
            raise ToolError(f"route {route!r}, tool {tool.name!r}: {what} {bad[0]!r}")
        return
    from pydantic import ValidationError

    fields = getattr(schema, "model_fields", {})
    unknown = [k for k in data if fields and k not in fields]
    if unknown:
        raise ToolError(
            f"route {route!r}, tool {tool.name!r}: unknown argument {unknown[0]!r} (the tool takes "
            f"{', '.join(sorted(fields)) or 'no arguments'})"
        )
    try:
        schema.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        loc = ".".join(str(x) for x in err.get("loc", ())) or "?"
        raise ToolError(
            f"route {route!r}, tool {tool.name!r}: argument {loc!r}: {err.get('msg')}"
        ) from None


@dataclass
class ToolOutcome:
    """What happened when a tool ran: its result, or an error string (raised / timed out)."""

    result: Any = None
    error: str | None = None
    timed_out: bool = False


def _jsonable(value: Any) -> Any:
    """Tool results as JSON-friendly values (LangChain messages/objects become strings)."""
    if value is None or isinstance(value, str | int | float | bool):
        return value
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    content = getattr(value, "content", None)
    if content is not None:
        return _jsonable(content)
    return repr(value)


def invoke_tool(
    tool: Any,
    route: str,
    args: Mapping[str, Any],
    *,
    match: Mapping[str, Any] | None = None,
    timeout_s: float | None = DEFAULT_TOOL_TIMEOUT_S,
) -> ToolOutcome:
    """Run `tool` with the route's `args` (+ `match` if it takes one) in a worker thread.

    Never raises for the tool's own failures: they come back in `ToolOutcome.error` and are
    logged. Argument validation errors do raise `ToolError` (they are configuration bugs).
    """
    validate_args(tool, route, args, with_match=match is not None)
    payload = dict(args)
    if match is not None and accepts_match(tool):
        payload["match"] = dict(match)
    box: queue.Queue[tuple[bool, Any]] = queue.Queue(maxsize=1)

    def work() -> None:
        try:
            box.put((True, tool.invoke(payload)))
        except BaseException as e:  # report everything, including SystemExit, from the tool
            box.put((False, e))

    worker = threading.Thread(target=work, name=f"voice-router-tool-{tool.name}", daemon=True)
    worker.start()
    try:
        ok, value = box.get(timeout=timeout_s)
    except queue.Empty:
        msg = f"tool {tool.name!r} (route {route!r}) did not finish within {timeout_s:g} s"
        log.error("%s; abandoned it and went on", msg)
        return ToolOutcome(error=msg, timed_out=True)
    if ok:
        return ToolOutcome(result=_jsonable(value))
    msg = f"tool {tool.name!r} (route {route!r}) raised {type(value).__name__}: {value}"
    log.error(msg, exc_info=(type(value), value, value.__traceback__))
    return ToolOutcome(error=msg)


class ToolRunner:
    """The tools of a route set: checked once at start-up, run for each match.

    Args:
        routes: the route set (each route's `tool`, static `args` and `sentences:`).
        tools: LangChain tools (or callables) that routes may name by `.name`.
        allow_import: let routes name tools as `package.module:attr` (imports that code).
        strict: True raises `ToolError` at `check()` when a route's tool cannot be resolved or
            its args do not validate; False records the problem in `problems` and every match
            of that route reports it in `tool_error`. A tool named by import path without
            `allow_import` is never an error at start-up: its matches say how to allow it.
        timeout_s: give up waiting for a tool after this many seconds.
    """

    def __init__(
        self,
        routes: RouteSet,
        tools: Iterable[Any] = (),
        *,
        allow_import: bool = False,
        strict: bool = True,
        timeout_s: float | None = DEFAULT_TOOL_TIMEOUT_S,
    ) -> None:
        self.routes = routes
        self.registry = ToolRegistry(tools, allow_import=allow_import)
        self.strict = strict
        self.timeout_s = timeout_s
        self.problems: dict[str, str] = {}  # route -> why its tool is not called

    def check(self) -> None:
        """Resolve every route's tool and validate its args now, not at the first utterance."""
        blocked: set[str] = set()
        for r in self.routes.routes:
            if r.tool:
                try:
                    tool = self.registry.resolve(r.tool, r.name)
                    validate_args(tool, r.name, {**self._sample_slots(r), **r.args},
                                  with_match=True)  # fmt: skip
                except ToolImportBlocked as e:
                    self.problems[r.name] = f"tool not called: {e}"
                    blocked.add(r.name)
                except ToolError as e:
                    if self.strict:
                        raise
                    self.problems[r.name] = f"tool not called: {e}"
        if self.problems:
            names = list(self.problems)
            shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
            only_blocked = blocked == set(names)
            # Import paths left unimported are the documented default (decide only, each match
            # says why): a note, not a warning on every call; anything else is a warning.
            log.log(
                logging.INFO if only_blocked else logging.WARNING,
                "%d route(s) will not call their tool (%s)%s; each match says why in tool_error",
                len(names),
                shown,
                ": their tools are import paths; pass --allow-import (Python: allow_import=True)"
                " if you trust the routes file"
                if only_blocked
                else "",
            )

    def _sample_slots(self, r: Route) -> dict[str, Any]:
        """A value for every slot `r`'s templates can fill (each list's first), so the tool's
        arguments are checked at start-up as they will be called."""
        if not r.sentences:
            return {}
        from voice_router.templates import phrasings

        out: dict[str, Any] = {}
        for ph in phrasings(r.sentences, self.routes.lists):
            for name, value in ph.slots.items():
                out.setdefault(name, value)
        return out

    def run(self, route: Route, args: Mapping[str, Any], match: Mapping[str, Any]) -> ToolOutcome:
        """Call `route`'s tool with `args` (+ the match, when it takes one). Never raises: a
        known problem, slot values the tool's schema refuses, or the tool's own failure come
        back in `ToolOutcome.error`."""
        if route.name in self.problems:
            return ToolOutcome(error=self.problems[route.name])
        tool = self.registry.resolve(str(route.tool), route.name)
        try:
            return invoke_tool(tool, route.name, args, match=match, timeout_s=self.timeout_s)
        except ToolError as e:  # slot values the tool's args_schema refuses
            return ToolOutcome(error=f"tool not called: {e}")
