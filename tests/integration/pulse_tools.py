"""LangChain tools for the PulseAudio listen test: each returns a distinct, checkable string."""

from __future__ import annotations

from langchain_core.tools import tool


@tool
def affirm() -> str:
    """Say yes."""
    return "affirmed"


@tool
def halt() -> str:
    """Stop."""
    return "halted"


@tool
def go_left() -> str:
    """Go left."""
    return "went left"
