"""The import graph has no upward arrow: the library never imports training or the CLI (outside
the subcommand registration it hosts), audio/ never imports the model, the store never imports
the model or the route index. Read from the source (every `import`, at any depth), so a lazy
import inside a function counts too."""

from __future__ import annotations

import ast
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


@pytest.mark.parametrize("path", _modules(PKG / "audio"), ids=lambda p: p.name)
def test_audio_never_imports_the_model(path: Path) -> None:
    assert not {m for m in _imports(path) if m.startswith("voice_router.model")}


def test_the_store_imports_neither_the_model_nor_the_route_index() -> None:
    bad = ("voice_router.model", "voice_router.index", "voice_router.tts", "voice_router.routes")
    assert not {m for m in _imports(PKG / "store.py") if m.startswith(bad)}


def test_the_route_index_neither_synthesises_nor_embeds() -> None:
    """The index diffs a plan against its collection and writes; voice_router.points builds and
    embeds the points."""
    assert not {m for m in _imports(PKG / "index.py") if m.startswith("voice_router.tts")}
    src = (PKG / "index.py").read_text(encoding="utf-8")
    assert ".embed_text(" not in src and ".embed_audio(" not in src
