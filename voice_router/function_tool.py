"""A plain Python function named by import path, called as a route's tool without LangChain.

Why: `voice-router route --allow-import` imports the tools its routes file names. Wrapping a
plain function as a LangChain `StructuredTool` imports langchain_core's tool, runnable and
tracer modules, langsmith and pydantic: 0.8 s of a 1.5 s start here, to call a function.
`FunctionTool` has what the router uses of a tool (`name`, `description`, `args_schema`,
`invoke`) from the function's signature and type hints alone:

- `args_schema` is a JSON-schema dict (properties, required), and `check_args` is what the
  start-up check (`dispatch.validate_args`) runs: unknown, missing and mistyped arguments are
  refused before any audio, without pydantic;
- `invoke(args)` checks each value against its annotation (str, int, float, bool, None,
  Literal, unions / Optional, dict, list, tuple; an int for a float is widened, an integral
  float or numeric text for an int converted, as pydantic's lax mode does) and any other
  annotation with pydantic's TypeAdapter, imported only then; a refused value raises
  `ToolError` naming the argument, which the router reports as that match's tool_error.

Tools passed in Python (`VoiceRouter(routes, tools=[...])`) are still LangChain tools, and a
LangChain tool named by import path is used as it is.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any

from voice_router.errors import ToolError

_ORIGINS = {dict: dict, list: list, tuple: tuple, set: set}


def _is_union(origin: Any) -> bool:
    return origin is typing.Union or origin is types.UnionType


def _conform(value: Any, ann: Any) -> Any:
    """`value` as annotation `ann` accepts it; ValueError when it does not."""
    if ann is Any or ann is inspect.Parameter.empty:
        return value
    if ann is None or ann is type(None):
        if value is None:
            return None
        raise ValueError("should be None")
    origin = typing.get_origin(ann)
    if _is_union(origin):
        for arm in typing.get_args(ann):
            try:
                return _conform(value, arm)
            except ValueError:
                continue
        raise ValueError(f"should be {' or '.join(_name(a) for a in typing.get_args(ann))}")
    if origin is typing.Literal:
        allowed = typing.get_args(ann)
        if value in allowed:
            return value
        raise ValueError(f"should be one of {', '.join(repr(a) for a in allowed)}")
    if ann is bool:
        if isinstance(value, bool):
            return value
        raise ValueError("should be true or false")
    if ann is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise ValueError("should be a whole number")
    if ann is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ValueError("should be a number")
    if ann is str:
        if isinstance(value, str):
            return value
        raise ValueError("should be text")
    base = _ORIGINS.get(origin or ann)
    if base is not None:
        if isinstance(value, base):
            return value
        raise ValueError(f"should be a {base.__name__}")
    from pydantic import TypeAdapter, ValidationError  # anything else: as LangChain would

    try:
        return TypeAdapter(ann).validate_python(value)
    except ValidationError as e:
        raise ValueError(e.errors()[0].get("msg", "is not valid")) from None


def _name(ann: Any) -> str:
    return "None" if ann is type(None) else getattr(ann, "__name__", None) or str(ann)


class FunctionTool:
    """A plain function as a route's tool: `invoke(args)` calls it with the arguments checked
    against its type hints (see the module docstring)."""

    def __init__(self, func: Callable[..., Any], name: str | None = None) -> None:
        self.func = func
        self.name = name or getattr(func, "__name__", "tool")
        self.description = inspect.getdoc(func) or ""
        try:
            hints = typing.get_type_hints(func)
        except Exception:  # noqa: BLE001 - unresolvable annotations: values are passed as given
            hints = {}
        self._params: dict[str, Any] = {}
        required = []
        for p in inspect.signature(func).parameters.values():
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY):
                self._params[p.name] = hints.get(p.name, Any)
                if p.default is p.empty:
                    required.append(p.name)
        #: JSON-schema form, what `dispatch.validate_args` checks names against
        self.args_schema: dict[str, Any] = {
            "type": "object",
            "properties": {n: {} for n in self._params},
            "required": required,
        }

    def check_args(self, args: Mapping[str, Any], route: str | None = None) -> dict[str, Any]:
        """`args` as the function gets them (each converted as its annotation accepts it);
        `ToolError` naming the route, the tool and the argument otherwise. What the router's
        start-up check (`dispatch.validate_args`) and `invoke` both run."""
        where = f"route {route!r}, tool {self.name!r}" if route else f"tool {self.name!r}"
        call = {}
        for k, v in dict(args).items():
            if k not in self._params:
                takes = ", ".join(self._params) or "no arguments"
                raise ToolError(f"{where}: unknown argument {k!r} (the tool takes {takes})")
            try:
                call[k] = _conform(v, self._params[k])
            except ValueError as e:
                raise ToolError(f"{where}: argument {k!r}: {v!r} {e}") from None
        missing = [k for k in self.args_schema["required"] if k not in call]
        if missing:
            raise ToolError(f"{where}: missing argument {missing[0]!r}")
        return call

    def invoke(self, args: Mapping[str, Any]) -> Any:
        """Call the function with `args`, each checked against its annotation."""
        return self.func(**self.check_args(args))

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r})"
