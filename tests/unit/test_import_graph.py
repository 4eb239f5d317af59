"""The import graph has no upward arrow: the library never imports training or the CLI (outside
the subcommand registration it hosts), audio/ never imports the model, the store never imports
the model or the route index. Read from the source (every `import`, at any depth), so a lazy
import inside a function counts too."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[2] / "voice_router"


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
    return out


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


@pytest.mark.parametrize("path", _modules(PKG), ids=lambda p: str(p.relative_to(PKG)))
def test_the_library_never_imports_training(path: Path) -> None:
    assert not {m for m in _imports(path) if m == "training" or m.startswith("training.")}


_TRAINING_TARGET = re.compile(r"training(\.[A-Za-z_]\w*)+(:\w+)?")


@pytest.mark.parametrize("path", _modules(PKG), ids=lambda p: str(p.relative_to(PKG)))
def test_the_library_names_no_training_module_to_import_by_string(path: Path) -> None:
    """No string that is a module path into training/ ("training.towers",
    "training.towers:build_x"): the part registry imports its "module:builder" targets by
    name, so an `import` statement is not the only way to reach upward."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    named = [
        n.value
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and _TRAINING_TARGET.fullmatch(n.value)
    ]
    assert not named


def test_the_part_registry_builds_only_from_the_library() -> None:
    pytest.importorskip("torch")  # the registry builds torch modules; the lite venv has none
    from voice_router.model import registry

    targets = {**registry.BUILTIN_AUDIO_ENCODERS, **registry.BUILTIN_BACKBONES}.values()
    assert all(t.startswith("voice_router.") for t in targets)


def test_importing_the_library_loads_no_training_module() -> None:
    mods = ["voice_router", "voice_router.cli", "voice_router.model.loader"]
    if importlib.util.find_spec("torch") is not None:  # not in the torch-free CI venv
        mods += ["voice_router.model.registry", "voice_router.model.torch_runtime"]
    code = (
        f"import sys, {', '.join(mods)}; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'training'))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=PKG.parent
    )
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("path", _modules(PKG / "audio"), ids=lambda p: p.name)
def test_audio_never_imports_the_model(path: Path) -> None:
    assert not {m for m in _imports(path) if m.startswith("voice_router.model")}


def _closure(module: str) -> set[str]:
    """Every package module `module` imports at run time, directly or through others."""
    paths = {_module_name(p): p for p in _modules(PKG)}
    seen: set[str] = set()
    todo = [module]
    while todo:
        m = todo.pop()
        for n in _runtime_imports(paths[m], set(paths)) - seen - {m}:
            seen.add(n)
            todo.append(n)
    return seen


def test_the_store_imports_neither_the_model_nor_the_route_schema() -> None:
    """The store stores and searches vectors; what route points mean is not its business."""
    bad = ("voice_router.model", "voice_router.index", "voice_router.tts", "voice_router.routes",
           "voice_router.points", "voice_router.point_schema")  # fmt: skip
    assert not {m for m in _closure("voice_router.store") if m.startswith(bad)}


def test_the_route_index_takes_vectors_and_never_reaches_a_model() -> None:
    """The index stores and queries vectors; voice_router.points plans, synthesises and embeds
    the points and syncs them into it."""
    bad = ("voice_router.model", "voice_router.tts", "voice_router.points", "voice_router.routes",
           "voice_router.templates")  # fmt: skip
    assert not {m for m in _closure("voice_router.index") if m.startswith(bad)}
    from voice_router.index import RouteIndex

    assert "model" not in inspect.signature(RouteIndex).parameters


def test_scoring_and_decision_never_embed() -> None:
    """Scores come from stored vectors and the decision from scores: neither loads a model."""
    for module in ("voice_router.scoring", "voice_router.decision"):
        assert not {m for m in _closure(module) if m.startswith("voice_router.model")}, module


@pytest.mark.parametrize(
    "path",
    [p for p in _modules(PKG) if "cli" not in p.relative_to(PKG).parts],
    ids=lambda p: str(p.relative_to(PKG)),
)
def test_command_line_code_lives_only_in_the_cli_package(path: Path) -> None:
    """Library modules neither parse arguments nor reach up into the CLI layer."""
    assert not {m for m in _imports(path) if m == "argparse" or m.startswith("voice_router.cli")}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _runtime_imports(path: Path, known: set[str]) -> set[str]:
    """Package modules `path` imports at run time (at any depth; not under TYPE_CHECKING)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and getattr(block.test, "id", None) == "TYPE_CHECKING"
        for n in ast.walk(block)
    }
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out.update(f"{node.module}.{a.name}" for a in node.names)
    return out & known


def test_the_package_import_graph_has_no_circle() -> None:
    paths = {_module_name(p): p for p in _modules(PKG)}
    graph = {m: _runtime_imports(p, set(paths)) - {m} for m, p in paths.items()}
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import circle: " + " -> ".join([*path, m, n]))
            if n not in state:
                visit(n, [*path, m])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [])


@pytest.mark.parametrize(
    "path", sorted((PKG.parent / "training").rglob("*.py")), ids=lambda p: p.name
)
def test_training_uses_only_public_names_of_the_library(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    private = [
        f"{node.module}.{a.name}"
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("voice_router")
        for a in node.names
        if a.name.startswith("_")
    ]
    assert not private
