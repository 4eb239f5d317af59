"""Routes YAML: the schema, a safe and strict loader, and a writer.

A routes file is DATA. Loading it only parses and validates: no code runs, no module is imported
(a route's `tool` is just a string here; dispatch imports it later, and only when the user opts in).
The loader is a `yaml.SafeLoader` subclass (libyaml's `CSafeLoader` when PyYAML has it) that also:

- records the line of every mapping key and sequence item, so each schema error reads
  `FILE:LINE: route 'name': field: message`;
- rejects duplicate mapping keys (plain PyYAML silently keeps the last one);
- refuses the YAML 1.1 boolean trap: an unquoted `on`/`off`/`yes`/`no` (any case) would silently
  become True/False (`examples: [on]`), so it is an error that says to quote it; `true`/`false`
  stay booleans. (`y`/`n` are strings in PyYAML, so they need no quotes.) The same goes for
  YAML 1.1 base-60 and octal numbers (`7:30` -> 450, `0755` -> 493);
- bounds the document: at most `MAX_FILE_BYTES` bytes, valid UTF-8, and at most `MAX_NODES`
  nodes after alias expansion (an "alias bomb" of nested anchors would otherwise explode when
  validated), no recursive aliases.

File format::

    threshold: 0.5          # optional: default minimum cosine score for a match
    margin: 0.05            # optional: minimum lead of the best route over the runner-up
    lists:                  # optional: slot values for `sentences` templates
      area: [kitchen, {in: living room, out: living_room}]
      minutes: {range: {from: 1, to: 60}}
    routes:
      - name: lights_on     # required, letters/digits/_ - .
        description: Turn the lights on.   # required, non-empty
        examples: ["turn on the lights", "lights on please"]
        examples_audio: [clips/lights_on_1.wav]   # relative to this file's folder
        sentences: ["(turn|switch) on [the] {area} lights"]   # hassil templates
        tool: examples.home_tools:lights_on       # import path or a registered tool name
        args: {room: living room}
        threshold: 0.6      # optional per-route override
"""

from __future__ import annotations

import copy
import math
import os
import re
import stat
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from voice_router.errors import RoutesError

__all__ = [
    "DEFAULT_MARGIN",
    "DEFAULT_THRESHOLD",
    "MAX_FILE_BYTES",
    "MAX_DEPTH",
    "MAX_NODES",
    "Route",
    "RouteSet",
    "dump_routes",
    "load_routes",
    "parse_routes",
    "validate_routes",
]

DEFAULT_THRESHOLD = 0.7
"""Default minimum fused score for a match. `voice-router calibrate` fitted 0.68-0.84 per route
for the bundled model on Speech Commands; 0.7 sits at the permissive end. Calibrate your own."""
DEFAULT_MARGIN = 0.01
"""Default minimum lead of the best route's score over the runner-up's (calibration chose ~0
for the bundled model, whose fused scores of neighbouring routes are close)."""
MAX_FILE_BYTES = 1_000_000
"""Largest routes file accepted (a hand-written file with thousands of routes is ~100 KB)."""
MAX_NODES = 100_000
"""Most YAML nodes a document may have after alias expansion (bounds alias bombs)."""
MAX_RANGE_VALUES = 200
"""Most values a numeric range in `lists:` may give (each value becomes phrasings)."""
MAX_DEPTH = 50
"""Deepest nesting of mappings/sequences accepted (a routes file needs 4)."""

_NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]{0,127}$")
_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_TOOL_RE = re.compile(rf"^(?:{_IDENT}(?:\.{_IDENT})*:{_IDENT}(?:\.{_IDENT})*|[A-Za-z0-9_\-]+)$")
_SET_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_YAML11_BOOLS = {"yes", "no", "on", "off"}
_SEXAGESIMAL_RE = re.compile(r"^[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+(?:\.[0-9_]*)?$")
_OCTAL_RE = re.compile(r"^[-+]?0[0-7_]+$")


# --------------------------------------------------------------------------- schema
#
# Hand-written rather than pydantic: the schema is ten fields, and importing pydantic and
# building its models cost ~0.25 s of every CLI call (a third of `voice-router route`'s start).
# Each check returns the cleaned value or raises _Invalid; problems are collected, not stopped at,
# so one run reports every mistake in a file.


class _Invalid(Exception):
    """One schema problem: `msg` about the value at `loc` (relative to the field checked)."""

    def __init__(self, msg: str, loc: tuple[Any, ...] = ()) -> None:
        super().__init__(msg)
        self.msg = msg
        self.loc = loc


Problem = tuple[tuple[Any, ...], str]
"""(location as keys/indices from the document root, message)."""


def _type_name(v: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", type(None): "null"}.get(
        type(v), type(v).__name__
    )


def _string(v: Any) -> str:
    if not isinstance(v, str):
        raise _Invalid(f"must be a string, not {_type_name(v)}")
    return v


def _strings(v: Any) -> list[str]:
    if not isinstance(v, (list, tuple)):
        raise _Invalid(f"must be a list of strings, not {_type_name(v)}")
    out = []
    for i, item in enumerate(v):
        if not isinstance(item, str):
            raise _Invalid(f"must be a string, not {_type_name(item)}", (i,))
        if not item.strip():
            raise _Invalid(f"item {i} is empty")
        out.append(item.strip())
    return out


def _number(v: Any, lo: float, hi: float) -> float:
    if isinstance(v, bool):
        raise _Invalid("must be a number, not a boolean")
    if not isinstance(v, (int, float)):
        raise _Invalid(f"must be a number, not {_type_name(v)}")
    v = float(v)
    if not math.isfinite(v):
        raise _Invalid("must be a finite number")
    if not lo <= v <= hi:
        raise _Invalid(f"must be between {lo:g} and {hi:g} (got {v:g})")
    return v


def _route_name(v: Any) -> str:
    if not _NAME_RE.match(_string(v)):
        raise _Invalid(
            f"{v!r} is not a valid route name: use 1-128 letters, digits, '_', '-' or '.', "
            "not starting with '-' or '.'"
        )
    return v


def _description(v: Any) -> str:
    v = _string(v).strip()
    if not v:
        raise _Invalid("is empty: say in plain words what this route does")
    return v


def _tool(v: Any) -> str | None:
    if v is not None and not _TOOL_RE.match(_string(v)):
        raise _Invalid(
            f"{v!r} is neither an import path `package.module:attr` nor a tool name "
            "(letters, digits, _ -)"
        )
    return v


def _args(v: Any) -> dict[str, Any]:
    if not isinstance(v, dict):
        raise _Invalid(f"must be a mapping of argument names to values, not {_type_name(v)}")
    for k in v:
        if not isinstance(k, str):
            raise _Invalid(f"argument names must be strings, not {_type_name(k)} ({k!r})")
    return dict(v)


def _set_name(v: Any) -> str | None:
    if v is not None and not _SET_NAME_RE.match(_string(v)):
        raise _Invalid(
            f"{v!r} is not a valid route set name: use 1-64 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit"
        )
    return v


_LIST_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def _list_value(v: Any) -> dict[str, Any]:
    if isinstance(v, str) and v.strip():
        return {"in": v.strip(), "out": v.strip()}
    if isinstance(v, dict) and set(v) <= {"in", "out"} and isinstance(v.get("in"), str):
        said = v["in"].strip()
        if said:
            return {"in": said, "out": v.get("out", said)}
    raise _Invalid(f"a value must be a phrase or {{in: phrase, out: value}}, not {v!r}")


def _lists(v: Any) -> dict[str, dict[str, Any]]:
    """`lists:` of slot values: name -> [values] | {values: [...]} | {range: {from, to, step}}."""
    if not isinstance(v, dict):
        raise _Invalid(f"must be a mapping of list names to values, not {_type_name(v)}")
    out: dict[str, dict[str, Any]] = {}
    for name, spec in v.items():
        if not isinstance(name, str) or not _LIST_NAME_RE.match(name):
            raise _Invalid(f"{name!r} is not a valid list name (letters, digits, _)")
        if isinstance(spec, list):
            spec = {"values": spec}
        if not isinstance(spec, dict) or len(spec) != 1 or not set(spec) <= {"values", "range"}:
            raise _Invalid(
                "must be a list of values, {values: [...]} or {range: {from, to}}", (name,)
            )
        if "values" in spec:
            if not isinstance(spec["values"], list) or not spec["values"]:
                raise _Invalid("values: must be a non-empty list", (name,))
            values = []
            for i, item in enumerate(spec["values"]):
                try:
                    values.append(_list_value(item))
                except _Invalid as e:
                    raise _Invalid(e.msg, (name, "values", i)) from None
            out[name] = {"values": values}
            continue
        r = spec["range"]
        if not isinstance(r, dict) or not {"from", "to"} <= set(r) <= {"from", "to", "step"}:
            raise _Invalid("range: needs from and to (integers), and optionally step", (name,))
        nums = {k: r[k] for k in r}
        if not all(isinstance(x, int) and not isinstance(x, bool) for x in nums.values()):
            raise _Invalid("range: from, to and step must be integers", (name,))
        step = nums.get("step", 1)
        count = (nums["to"] - nums["from"]) // step + 1 if step > 0 else 0
        if not 1 <= count <= MAX_RANGE_VALUES:
            raise _Invalid(
                f"range: must give 1 to {MAX_RANGE_VALUES} values (from <= to, step > 0)", (name,)
            )
        out[name] = {"range": {"from": nums["from"], "to": nums["to"], "step": step}}
    return out


_Check = Callable[[Any], Any]
_ROUTE_SPEC: dict[str, tuple[_Check, Callable[[], Any] | None]] = {
    # field: (check, default factory; None = required)
    "name": (_route_name, None),
    "description": (_description, None),
    "examples": (_strings, list),
    "examples_audio": (_strings, list),
    "sentences": (_strings, list),
    "tool": (_tool, lambda: None),
    "args": (_args, dict),
    "threshold": (lambda v: None if v is None else _number(v, -1.0, 1.0), lambda: None),
}
_DECISION_KEYS = ("threshold", "margin")
_SET_SPEC: dict[str, tuple[_Check, Callable[[], Any] | None]] = {
    "name": (_set_name, lambda: None),
    "threshold": (lambda v: _number(v, -1.0, 1.0), lambda: DEFAULT_THRESHOLD),
    "margin": (lambda v: _number(v, 0.0, 2.0), lambda: DEFAULT_MARGIN),
    "lists": (_lists, dict),
    "routes": (None, None),  # checked by _check_set (its items are Routes)
}


def _check_fields(
    raw: dict[Any, Any], spec: dict[str, tuple[Any, Any]], loc: tuple[Any, ...]
) -> tuple[dict[str, Any], list[Problem]]:
    """The fields of `raw` checked against `spec`; unknown keys and missing required keys are
    problems too."""
    out: dict[str, Any] = {}
    problems: list[Problem] = []
    for key in raw:
        if key not in spec:
            allowed = ", ".join(spec)
            problems.append(((*loc, key), f"unknown key {key!r} (allowed: {allowed})"))
    for key, (check, default) in spec.items():
        if key not in raw:
            if default is None:
                problems.append((loc, f"missing required key {key!r}"))
            else:
                out[key] = default()
        elif check is None:
            out[key] = raw[key]
        else:
            try:
                out[key] = check(raw[key])
            except _Invalid as e:
                problems.append(((*loc, key, *e.loc), e.msg))
    return out, problems


def _check_route(raw: Any, loc: tuple[Any, ...]) -> tuple[dict[str, Any], list[Problem]]:
    if isinstance(raw, Route):
        return raw.to_dict(), []
    if not isinstance(raw, dict):
        what = f"must be a mapping with a name and a description, not {_type_name(raw)}"
        return {}, [(loc, what)]
    return _check_fields(raw, _ROUTE_SPEC, loc)


def _check_set(raw: dict[Any, Any]) -> tuple[dict[str, Any], list[Problem]]:
    fields, problems = _check_fields(raw, _SET_SPEC, ())
    items = fields.get("routes")
    if "routes" not in raw:
        return fields, problems
    if not isinstance(items, (list, tuple)):
        problems.append((("routes",), f"must be a list of routes, not {_type_name(items)}"))
        return fields, problems
    if not items:
        problems.append((("routes",), "needs at least one route"))
    routes = []
    for i, item in enumerate(items):
        route, more = _check_route(item, ("routes", i))
        problems += more
        if not more:
            routes.append(Route._trusted(route))
    seen: set[str] = set()
    for route in routes:
        if route.name in seen:
            problems.append(
                ((), f"duplicate route name {route.name!r}: route names must be unique")
            )
        seen.add(route.name)
    fields["routes"] = routes
    lists = fields.get("lists", {})
    for i, route in enumerate(routes):
        if not route.sentences:
            continue
        from voice_router.templates import cached_phrasings, check_template

        if cached_phrasings(route.sentences, lists) is not None:
            continue  # expanded before, so they parse: no need to import hassil again
        for j, template in enumerate(route.sentences):  # hassil parses them
            try:
                check_template(template, lists)
            except RoutesError as e:
                problems.append((("routes", i, "sentences", j), str(e)))
    return fields, problems


def _raise(problems: list[Problem], where: str) -> None:
    """Python-built routes: RoutesError listing every problem (no file, no lines)."""
    lines = []
    for loc, msg in problems:
        field = ".".join(str(p) for p in loc)
        lines.append(f"{where}: {field + ': ' if field else ''}{msg}")
    raise RoutesError("\n".join(lines))


class Route:
    """One route: what it means (description + examples), and what to do (tool + args).

    Fields (all checked on construction and on assignment; RoutesError says what is wrong):
    `name` (letters, digits, _ - .), `description` (plain-English meaning, embedded as text),
    `examples` (phrasings), `examples_audio` (clips, relative to the routes file), `sentences`
    (templates in hassil syntax over the set's `lists:`, see voice_router.templates), `tool`
    (`package.module:attr` or a registered tool name), `args` (given to the tool), `threshold`
    (this route's own minimum score, else the set's).
    """

    __slots__ = tuple(_ROUTE_SPEC)
    name: str
    description: str
    examples: list[str]
    examples_audio: list[str]
    tool: str | None
    args: dict[str, Any]
    threshold: float | None

    def __init__(self, **fields: Any) -> None:
        checked, problems = _check_fields(fields, _ROUTE_SPEC, ())
        if problems:
            who = f"route {fields['name']!r}" if isinstance(fields.get("name"), str) else "route"
            _raise(problems, who)
        for key, value in checked.items():
            object.__setattr__(self, key, value)

    @classmethod
    def _trusted(cls, checked: dict[str, Any]) -> Route:
        route = cls.__new__(cls)
        for key, value in checked.items():
            object.__setattr__(route, key, value)
        return route

    def __setattr__(self, key: str, value: Any) -> None:
        if key not in _ROUTE_SPEC:
            raise AttributeError(f"Route has no field {key!r} (fields: {', '.join(_ROUTE_SPEC)})")
        try:
            value = _ROUTE_SPEC[key][0](value)
        except _Invalid as e:
            _raise([((key, *e.loc), e.msg)], f"route {self.name!r}")
        object.__setattr__(self, key, value)

    def to_dict(self) -> dict[str, Any]:
        """The fields as plain data (lists and args copied)."""
        return {k: copy.deepcopy(getattr(self, k)) for k in _ROUTE_SPEC}

    def replace(self, **changes: Any) -> Route:
        """A validated copy with `changes` applied."""
        return Route(**{**self.to_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Route):
            return NotImplemented
        return all(getattr(self, k) == getattr(other, k) for k in _ROUTE_SPEC)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        shown = ", ".join(f"{k}={getattr(self, k)!r}" for k in _ROUTE_SPEC)
        return f"Route({shown})"

    def texts(self) -> list[str]:
        """The route's texts to embed: [description, *examples]."""
        return [self.description, *self.examples]


class RouteSet:
    """A validated set of routes with the set-wide decision thresholds.

    `name` is the set's identity in the index (its collection): it survives moving, renaming or
    re-cloning the file (default: the file's name without its extension). `source` is the file
    it was loaded from (None when built in Python); it is not part of the file format and not
    compared by `==`. `routes` items may be Routes or mappings.
    """

    __slots__ = ("name", "threshold", "margin", "lists", "routes", "source", "given")
    name: str | None
    threshold: float
    margin: float
    lists: dict[str, dict[str, Any]]
    routes: list[Route]
    source: Path | None
    given: frozenset[str]
    """Which of `threshold` and `margin` the file (or caller) set; the others are defaults,
    which a router replaces with its model's own (routing.json) when the model has them."""

    def __init__(self, *, source: str | os.PathLike[str] | None = None, **fields: Any) -> None:
        checked, problems = _check_set(fields)
        if problems:
            _raise(problems, "routes")
        for key, value in checked.items():
            object.__setattr__(self, key, value)
        object.__setattr__(self, "source", None if source is None else Path(source))
        given = frozenset(k for k in _DECISION_KEYS if fields.get(k) is not None)
        object.__setattr__(self, "given", given)

    def __setattr__(self, key: str, value: Any) -> None:
        if key == "source":
            object.__setattr__(self, key, None if value is None else Path(value))
            return
        if key == "given":
            raise AttributeError("RouteSet.given follows the fields set; set threshold/margin")
        if key not in _SET_SPEC:
            raise AttributeError(f"RouteSet has no field {key!r} (fields: {', '.join(_SET_SPEC)})")
        checked, problems = _check_set({"routes": self.routes, key: value})
        if problems:
            _raise(problems, "routes")
        object.__setattr__(self, key, checked[key])
        if key in _DECISION_KEYS:
            object.__setattr__(self, "given", self.given | {key})

    def to_dict(self) -> dict[str, Any]:
        """The set as plain data, as a routes file holds it (without `source`; `threshold` and
        `margin` only when they were set, not defaulted)."""
        out = {"name": self.name}
        out.update({k: getattr(self, k) for k in _DECISION_KEYS if k in self.given})
        out.update(lists=copy.deepcopy(self.lists), routes=[r.to_dict() for r in self.routes])
        return out

    def replace(self, **changes: Any) -> RouteSet:
        """A validated deep copy with `changes` applied (`source` is kept)."""
        return RouteSet(source=self.source, **{**self.to_dict(), **changes})

    def __eq__(self, other: object) -> bool:
        """Equal when the file contents would be equal (`source` is not compared)."""
        if not isinstance(other, RouteSet):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"RouteSet(name={self.name!r}, threshold={self.threshold!r}, margin={self.margin!r}, "
            f"routes={self.names!r}, source={self.source!r})"
        )

    @property
    def names(self) -> list[str]:
        """Route names in file order."""
        return [r.name for r in self.routes]

    def get(self, name: str) -> Route:
        """The route called `name`; RoutesError (listing the known names) if there is none."""
        for route in self.routes:
            if route.name == name:
                return route
        raise RoutesError(f"no route named {name!r}; routes are: {', '.join(self.names)}")

    def route_threshold(self, route: Route | str) -> float:
        """The minimum score for `route` (a Route or its name): its own threshold or the set's."""
        if isinstance(route, str):
            route = self.get(route)
        return self.threshold if route.threshold is None else route.threshold


# --------------------------------------------------------------------------- YAML loader


class _YAMLTrap(yaml.MarkedYAMLError):
    """A scalar YAML 1.1 would silently misread (on/off/yes/no, 7:30, 0755)."""


_BaseLoader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml when PyYAML has it


class _RoutesLoader(_BaseLoader):
    """SafeLoader that refuses duplicate keys and YAML 1.1 traps (see the module docstring)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                first = seen.get(key)
            except TypeError:
                continue  # unhashable key: SafeConstructor reports it below
            if first is not None:
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} (first on line {first}): remove one of them",
                    key_node.start_mark,
                )
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_bool(self, node: yaml.ScalarNode) -> bool:
        value = self.construct_scalar(node)
        if value.lower() in _YAML11_BOOLS:
            raise _YAMLTrap(
                None,
                None,
                f'unquoted `{value}` is read by YAML as a boolean; write "{value}" in quotes '
                "(or true/false if you mean a boolean)",
                node.start_mark,
            )
        return super().construct_yaml_bool(node)

    @staticmethod
    def _number_trap(value: str, number: float, node: yaml.ScalarNode) -> _YAMLTrap:
        """The error for a scalar that YAML 1.1 silently reads as a number (12:30, 0755)."""
        return _YAMLTrap(
            None,
            None,
            f'unquoted `{value}` is read by YAML as the number {number}; write "{value}" in quotes',
            node.start_mark,
        )

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        value = self.construct_scalar(node)
        number = super().construct_yaml_int(node)
        if _SEXAGESIMAL_RE.match(value) or _OCTAL_RE.match(value):
            raise self._number_trap(value, number, node)
        return number

    def construct_yaml_float(self, node: yaml.ScalarNode) -> float:
        value = self.construct_scalar(node)
        number = super().construct_yaml_float(node)
        if _SEXAGESIMAL_RE.match(value):
            raise self._number_trap(value, number, node)
        return number


_RoutesLoader.add_constructor("tag:yaml.org,2002:bool", _RoutesLoader.construct_yaml_bool)
_RoutesLoader.add_constructor("tag:yaml.org,2002:int", _RoutesLoader.construct_yaml_int)
_RoutesLoader.add_constructor("tag:yaml.org,2002:float", _RoutesLoader.construct_yaml_float)


def _check_depth(text: str, where: str) -> None:
    """Refuse nesting deeper than MAX_DEPTH before composing (PyYAML's composer recurses)."""
    depth = 0
    for event in yaml.parse(text, Loader=_BaseLoader):  # an iterative state machine
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise RoutesError(
                    f"{where}:{event.start_mark.line + 1}: the YAML is nested more than "
                    f"{MAX_DEPTH} levels deep: simplify it"
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _count_nodes(root: yaml.Node, where: str) -> None:
    """Bound the expanded size of the node graph (aliases share nodes; count them per use)."""
    sizes: dict[int, int] = {}
    active: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in active:
            raise RoutesError(
                f"{where}:{node.start_mark.line + 1}: recursive alias (an anchor used inside "
                "itself): remove the alias"
            )
        if isinstance(node, yaml.ScalarNode):
            return 1
        active.add(key)
        total = 1
        children = (
            [n for pair in node.value for n in pair]
            if isinstance(node, yaml.MappingNode)
            else node.value
        )
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise RoutesError(
                    f"{where}:{node.start_mark.line + 1}: the document expands to more than "
                    f"{MAX_NODES} nodes (nested aliases, an 'alias bomb'?): simplify it"
                )
        active.discard(key)
        sizes[key] = total
        return total

    size(root)


def _line_map(root: yaml.Node) -> dict[tuple[Any, ...], int]:
    """Map data paths, e.g. ('routes', 2, 'name'), to 1-based lines of their keys/items."""
    lines: dict[tuple[Any, ...], int] = {(): root.start_mark.line + 1}
    stack: list[tuple[tuple[Any, ...], yaml.Node, int]] = [((), root, 0)]
    while stack:
        path, node, depth = stack.pop()
        if depth > 64:  # deeper than any routes file: nothing useful to map
            continue
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode):
                    child = (*path, key_node.value)
                    lines.setdefault(child, key_node.start_mark.line + 1)
                    stack.append((child, value_node, depth + 1))
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                child = (*path, i)
                lines.setdefault(child, item.start_mark.line + 1)
                stack.append((child, item, depth + 1))
    return lines


def _yaml_error(e: yaml.YAMLError, where: str) -> RoutesError:
    """A PyYAML error -> RoutesError 'FILE:LINE: problem'."""
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    line = f":{mark.line + 1}" if mark is not None else ""
    problem = getattr(e, "problem", None) or str(e)
    context = getattr(e, "context", None)
    text = f"{context}: {problem}" if context and not isinstance(e, _YAMLTrap) else problem
    if "could not determine a constructor" in str(problem) or "constructor for the tag" in text:
        tag = getattr(e, "problem", "").rsplit(" ", 1)[-1]
        text = (
            f"the tag {tag} is not allowed: routes files are plain data (no !!python/... or "
            "other custom tags)"
        )
    elif not isinstance(e, (_YAMLTrap, yaml.constructor.ConstructorError)):
        text = f"invalid YAML: {text}"
    return RoutesError(f"{where}{line}: {text}")


# --------------------------------------------------------------------------- load / dump


def load_routes(path: str | os.PathLike[str]) -> RouteSet:
    """Read and validate a routes YAML file (parses only; never runs or imports anything).

    `examples_audio` paths are resolved relative to the file's folder and must exist.

    Raises:
        RoutesError: "FILE:LINE: message" for a missing/unreadable file, a file over
            MAX_FILE_BYTES, non-UTF-8 bytes, bad YAML, duplicate keys, YAML 1.1 traps, alias
            bombs, and every schema problem.
    """
    p = Path(path)
    try:
        st = p.stat()
        size = st.st_size
        if stat.S_ISDIR(st.st_mode):
            raise RoutesError(f"{p}: is a directory: pass a routes YAML file")
        if not stat.S_ISREG(st.st_mode):  # a FIFO or device would block or never end
            raise RoutesError(f"{p}: not a regular file (a pipe or device): pass a YAML file")
        if size > MAX_FILE_BYTES:
            raise RoutesError(
                f"{p}: the file is {size} bytes; routes files are limited to {MAX_FILE_BYTES} "
                "bytes: is this the right file?"
            )
        data = p.read_bytes()[: MAX_FILE_BYTES + 1]
    except (FileNotFoundError, NotADirectoryError):
        raise RoutesError(f"{p}: routes file not found: check the path") from None
    except PermissionError:
        raise RoutesError(f"{p}: permission denied: make the file readable") from None
    except OSError as e:
        raise RoutesError(f"{p}: cannot read the routes file ({e.strerror})") from None
    return _parse(data, str(p), p.resolve().parent)


def parse_routes(text: str | bytes, source: str = "<string>") -> RouteSet:
    """Validate routes YAML given as text (or UTF-8 bytes); `source` names it in errors.

    When `source` is a real file path, `examples_audio` resolve against its folder (as in
    `load_routes`); otherwise they are kept as written.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    base = None
    if not (source.startswith("<") and source.endswith(">")):
        base = Path(source).resolve().parent
    return _parse(data, source, base)


def _parse(data: bytes, where: str, base: Path | None) -> RouteSet:
    if len(data) > MAX_FILE_BYTES:
        raise RoutesError(
            f"{where}: the text is over {MAX_FILE_BYTES} bytes; routes files are limited to "
            f"{MAX_FILE_BYTES} bytes: is this the right file?"
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise RoutesError(
            f"{where}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at offset {e.start}): "
            "save the file as UTF-8"
        ) from None
    loader = _RoutesLoader(text)
    try:
        _check_depth(text, where)
        root = loader.get_single_node()
        if root is None:
            raise RoutesError(f"{where}: the file is empty: it needs a `routes:` list")
        _count_nodes(root, where)
        lines = _line_map(root)
        raw = loader.construct_document(root)
    except yaml.reader.ReaderError as e:  # a character YAML forbids anywhere in the text
        line = text[: e.position].count("\n") + 1
        code = e.character if isinstance(e.character, int) else ord(e.character)
        raise RoutesError(
            f"{where}:{line}: invalid YAML: character U+{code:04X} is not allowed: "
            "remove it (control characters cannot appear in YAML)"
        ) from None
    except yaml.YAMLError as e:
        if "exceeded maximum nesting depth" in str(e):  # libyaml's own bound, met first
            mark = getattr(e, "problem_mark", None)
            line = f":{mark.line + 1}" if mark is not None else ""
            raise RoutesError(
                f"{where}{line}: the YAML is nested more than {MAX_DEPTH} levels deep: simplify it"
            ) from None
        raise _yaml_error(e, where) from None
    except RecursionError:
        raise RoutesError(f"{where}: the YAML is nested too deeply: simplify it") from None
    finally:
        loader.dispose()
    return _validate(raw, lines, where, base)


def validate_lists(data: Any, source: str = "<dict>") -> dict[str, dict[str, Any]]:
    """A `lists:` mapping checked and normalised as a routes file's (values as {in, out},
    ranges with their step), without a route set around it; RoutesError says what is wrong."""
    try:
        return _lists(data)
    except _Invalid as e:
        field = ".".join(str(p) for p in ("lists", *e.loc))
        raise RoutesError(f"{source}: {field}: {e.msg}") from None


def validate_routes(data: Any, source: str = "<dict>") -> RouteSet:
    """Validate routes already parsed into Python (e.g. a dict built in code or read from
    JSON): the same checks and RoutesError messages as `parse_routes`, without line numbers."""
    return _validate(data, {}, source, None)


def _validate(
    raw: Any, lines: dict[tuple[Any, ...], int], where: str, base: Path | None
) -> RouteSet:
    if not isinstance(raw, dict):
        raise RoutesError(
            f"{where}:1: the top level must be a mapping with a `routes:` list, "
            f"not a {type(raw).__name__}"
        )
    if "source" in raw:
        raise RoutesError(f"{where}:{lines.get(('source',), 1)}: unknown key 'source'")
    _check_duplicate_names(raw, lines, where)
    fields, problems = _check_set(raw)
    if problems:
        raise _schema_error(problems, raw, lines, where)
    # a threshold or margin the schema filled in is not the file's: RouteSet records as given
    # only what the file set (the router may use its model's for the others)
    routes = RouteSet(**{k: v for k, v in fields.items() if k in raw or k not in _DECISION_KEYS})
    if base is not None:
        _resolve_audio(routes, base, lines, where)
        routes.source = None if where.startswith("<") else Path(where)
    return routes


def _check_duplicate_names(
    raw: dict[str, Any], lines: dict[tuple[Any, ...], int], where: str
) -> None:
    routes = raw.get("routes")
    if not isinstance(routes, list):
        return
    first: dict[str, int] = {}
    for i, r in enumerate(routes):
        if isinstance(r, dict) and isinstance(r.get("name"), str):
            name = r["name"]
            line = lines.get(("routes", i, "name"), 0)
            if name in first:
                raise RoutesError(
                    f"{where}:{line}: route {name!r}: name: duplicate route name (first on line "
                    f"{first[name]}): route names must be unique"
                )
            first[name] = line


def _schema_error(
    problems: list[Problem], raw: dict[str, Any], lines: dict[tuple[Any, ...], int], where: str
) -> RoutesError:
    """Problems -> one RoutesError, each line 'FILE:LINE: route 'x': field: message'."""
    messages = []
    for loc, msg in problems:
        line = next((lines[loc[:n]] for n in range(len(loc), -1, -1) if loc[:n] in lines), None)
        prefix = f"{where}:{line}" if line is not None else where
        field = loc
        who = ""
        if len(loc) >= 2 and loc[0] == "routes" and isinstance(loc[1], int):
            route = raw["routes"][loc[1]]
            name = route.get("name") if isinstance(route, dict) else None
            who = f"route {name!r}: " if isinstance(name, str) else f"route #{loc[1] + 1}: "
            field = loc[2:]
        field_text = ".".join(str(f) for f in field)
        messages.append(f"{prefix}: {who}{field_text + ': ' if field_text else ''}{msg}")
    return RoutesError("\n".join(messages))


def _resolve_audio(
    routes: RouteSet, base: Path, lines: dict[tuple[Any, ...], int], where: str
) -> None:
    """Make examples_audio absolute against the routes file's folder; each must exist."""
    for i, route in enumerate(routes.routes):
        resolved = []
        for j, item in enumerate(route.examples_audio):
            p = Path(item).expanduser()
            p = p if p.is_absolute() else base / p
            if not p.is_file():
                line = lines.get(("routes", i, "examples_audio", j), "?")
                raise RoutesError(
                    f"{where}:{line}: route {route.name!r}: examples_audio: file not found: {p} "
                    "(paths are relative to the routes file's folder)"
                )
            resolved.append(str(p))
        if resolved:
            route.examples_audio = resolved


def dump_routes(routes: RouteSet, path: str | os.PathLike[str]) -> None:
    """Write `routes` as YAML that `load_routes` reads back to an equal RouteSet.

    Strings YAML would misread (on, yes, 7:30, ...) are quoted; defaults are left out;
    `examples_audio` paths inside the destination folder are written relative to it. The write
    is atomic (temporary file + rename), so a crash never leaves half a routes file.
    """
    dest = Path(path)
    folder = dest.resolve().parent
    doc: dict[str, Any] = {k: getattr(routes, k) for k in _DECISION_KEYS if k in routes.given}
    if routes.name is not None:  # the set's identity in the index
        doc = {"name": routes.name, **doc}
    if routes.lists:
        doc["lists"] = routes.lists
    doc["routes"] = []
    for r in routes.routes:
        item: dict[str, Any] = {"name": r.name, "description": r.description}
        if r.examples:
            item["examples"] = list(r.examples)
        if r.examples_audio:
            item["examples_audio"] = [_relative_to(a, folder) for a in r.examples_audio]
        if r.sentences:
            item["sentences"] = list(r.sentences)
        if r.tool is not None:
            item["tool"] = r.tool
        if r.args:
            item["args"] = r.args
        if r.threshold is not None:
            item["threshold"] = r.threshold
        doc["routes"].append(item)
    try:
        text = yaml.dump(doc, Dumper=_RoutesDumper, sort_keys=False, allow_unicode=True, width=100)
    except yaml.YAMLError as e:
        raise RoutesError(f"{dest}: cannot write these routes as YAML ({e})") from None
    header = "# voice-router routes (schema: see voice_router/routes.py)\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(header + text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


class _RoutesDumper(yaml.SafeDumper):
    """SafeDumper: quotes every string its YAML 1.1 resolver would read as another type
    (on, yes, 7:30, 0755, 1e3, null, ...), so the file loads back as written."""


def _relative_to(item: str, folder: Path) -> str:
    p = Path(item)
    if p.is_absolute():
        try:
            return p.relative_to(folder).as_posix()
        except ValueError:
            return item
    return item
