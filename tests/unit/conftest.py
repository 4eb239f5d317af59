"""Unit-test fixtures: the plumbing tests feed synthetic signals (tones, noise keyed by text) to
fake models, which the speech gate would rightly call non-speech; it is off here unless a test
turns it on (`speech_gate=True`). tests/integration runs it on real recordings."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_speech_gate(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOICE_ROUTER_SPEECH_GATE", "0")
