"""Check a routes file's tools without running code: `voice-router routes check`.

A route's `tool` is `package.module:attr` (imported only with --allow-import) or the name of a
tool registered in Python. A misspelt path used to pass `routes check` and surface only when
that route matched. Here each import path is looked up *statically*: the module's source file
is found the way `import` would find it (only the top-level package's spec is asked for, which
runs no code of it), parsed with `ast`, and the attribute must be a name the module binds at
top level. Nothing is imported, so checking stays safe on an untrusted file; where a module
cannot be read statically (a compiled extension, `from x import *`, a module `__getattr__`)
the path is left to the import that `--allow-import` does.
"""

from __future__ import annotations

import ast
import difflib
import importlib.machinery
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

from voice_router.dispatch import is_import_path


@dataclass(frozen=True)
class ToolProblem:
    """What is wrong with one route's tool, and what to do."""

    route: str
    tool: str
    message: str


def _package_dirs(top: str) -> tuple[list[Path], Path | None]:
    """(search folders of package `top`, its own source file) from its spec (no code runs:
    the spec of a top-level name needs no parent import). ([], None) when it cannot be found."""
    spec = None
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        spec = None
    if spec is None:  # `import_tool` also looks in the working directory, as `python -m` does
        spec = importlib.machinery.PathFinder.find_spec(top, [os.getcwd()])
    if spec is None:
        return [], None
    dirs = [Path(p) for p in (spec.submodule_search_locations or [])]
    if spec.origin and spec.has_location:
        return dirs, Path(spec.origin)
    # frozen or built in (os, sys): no file to read; a stand-in that is not .py
    return dirs, None if dirs else Path(f"<{spec.origin or 'built-in'} {top}>")


def find_module_file(module: str) -> tuple[Path | None, list[str]]:
    """(the source file of `module`, or None if it does not exist; sibling module names where
    the last part was not found, for a 'did you mean'). A compiled module gives its file too,
    and a name under a plain module (`os.path`) that module's file: neither is `module`'s own
    source, and the caller leaves those to the import."""
    parts = module.split(".")
    dirs, parent = _package_dirs(parts[0])
    if not dirs and parent is None:
        return None, []
    if len(parts) == 1:
        # a namespace package has no file: its folder stands in (not readable as a module)
        return parent or dirs[0], []
    for part in parts[1:]:
        if not dirs:  # the parent is a plain module (os.path): set up when it runs
            return parent, []
        found: Path | None = None
        next_dirs: list[Path] = []
        for d in dirs:
            pkg = d / part
            if (pkg / "__init__.py").is_file():
                found, next_dirs = pkg / "__init__.py", [pkg]
                break
            if (d / f"{part}.py").is_file():
                found = d / f"{part}.py"
                break
            compiled = [f for f in d.glob(f"{part}.*") if f.suffix in (".so", ".pyd")]
            if compiled:
                found = compiled[0]
                break
            if pkg.is_dir():  # a namespace package
                next_dirs.append(pkg)
        if found is None and not next_dirs:
            siblings = sorted(
                {q.stem for d in dirs for q in d.iterdir() if q.suffix == ".py" or q.is_dir()}
                - {"__init__", "__pycache__"}
            )
            return None, siblings
        dirs, parent = next_dirs, found
    return parent or dirs[0], []


def _top_level_names(tree: ast.Module) -> set[str] | None:
    """Names a module binds at top level (inside top-level if/try/with too); None where that
    cannot be known statically (`from x import *`, a module-level `__getattr__`)."""
    names: set[str] = set()

    def target(t: ast.AST) -> None:
        if isinstance(t, ast.Name):
            names.add(t.id)
        elif isinstance(t, ast.Tuple | ast.List):
            for e in t.elts:
                target(e)
        elif isinstance(t, ast.Starred):
            target(t.value)

    def block(body: list[ast.stmt]) -> bool:
        for node in body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names.add(node.name)
                if node.name == "__getattr__":
                    return False
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    target(t)
            elif isinstance(node, ast.AnnAssign | ast.AugAssign):
                target(node.target)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                for a in node.names:
                    if a.name == "*":
                        return False
                    names.add(a.asname or a.name.split(".")[0])
            elif isinstance(node, ast.If | ast.For | ast.While | ast.With):
                if not block(node.body) or not block(getattr(node, "orelse", [])):
                    return False
            elif isinstance(node, ast.Try):
                bodies = [node.body, node.orelse, node.finalbody, *(h.body for h in node.handlers)]
                if not all(block(b) for b in bodies):
                    return False
        return True

    return names if block(tree.body) else None


def check_import_path(path: str) -> str | None:
    """Why `package.module:attr` cannot name a tool, found without importing anything; None
    when it looks right or cannot be told statically (the import then decides)."""
    module, attr = path.split(":", 1)
    source, siblings = find_module_file(module)
    if source is None:
        last = module.rsplit(".", 1)[-1]
        near = difflib.get_close_matches(last, siblings, n=1)
        hint = (
            f" (did you mean {module.rsplit('.', 1)[0]}.{near[0]}?)"
            if near and "." in module
            else ""
        )
        return (
            f"no module {module!r} is found from here{hint}; correct the module path, or "
            "install the package that provides it"
        )
    if source.suffix != ".py" or source.stem not in (module.rsplit(".", 1)[-1], "__init__"):
        return None  # compiled, or set up at run time: the import decides
    try:
        tree = ast.parse(source.read_bytes(), filename=str(source))
    except (OSError, SyntaxError, ValueError):
        return None  # the import will say what is wrong with the module itself
    names = _top_level_names(tree)
    first = attr.split(".", 1)[0]
    if names is None or first in names:
        return None
    public = sorted(n for n in names if not n.startswith("_"))
    near = difflib.get_close_matches(first, public, n=1)
    hint = f"did you mean {near[0]!r}? " if near else ""
    return f"{source} defines no {first!r}; {hint}correct the tool's name in the routes file"


def check_tools(routes: object) -> tuple[list[ToolProblem], list[ToolProblem]]:
    """(problems, notes) of a `RouteSet`'s tools, statically. Problems: import paths whose
    module or attribute does not exist. Notes: tools named without a path, which only Python
    code can register (`VoiceRouter(routes, tools=[...])`) and so nothing here can check."""
    problems: list[ToolProblem] = []
    notes: list[ToolProblem] = []
    for r in routes.routes:  # type: ignore[attr-defined]
        if not r.tool:
            continue
        if is_import_path(r.tool):
            why = check_import_path(r.tool)
            if why is not None:
                problems.append(ToolProblem(r.name, r.tool, why))
        else:
            notes.append(
                ToolProblem(
                    r.name,
                    r.tool,
                    "not an import path: register it from Python (VoiceRouter(routes, "
                    "tools=[...])); the command line has no tool of that name (`route` and "
                    "`listen` exit 7 unless --dry-run) and cannot check it",
                )
            )
    return problems, notes
