"""Typed errors. Every user-facing failure is one of these, so the CLI can print one line
(what was wrong, what to do) and exit non-zero instead of showing a traceback."""

from __future__ import annotations


class VoiceRouterError(Exception):
    """Base class of every error voice-router raises on purpose."""

    exit_code: int = 1


class AudioError(VoiceRouterError):
    """Audio could not be read or is unusable (empty, silent, NaN, corrupt...)."""

    exit_code = 3


class RoutesError(VoiceRouterError):
    """A routes file is invalid; the message names the file and, where known, the line."""

    exit_code = 4


class ModelError(VoiceRouterError):
    """A model could not be found, validated or loaded."""

    exit_code = 5


class IndexStoreError(VoiceRouterError):
    """The route or audio index is unusable (locked, foreign, mismatched model...)."""

    exit_code = 6


class ToolError(VoiceRouterError):
    """A tool could not be resolved, validated or invoked."""

    exit_code = 7


class ToolImportBlocked(ToolError):
    """A route names its tool by import path and importing code was not allowed: the router
    still decides that route (from Python as from the CLI) and its matches say why no tool ran."""


class DeviceError(VoiceRouterError):
    """No usable audio input device or audio server."""

    exit_code = 8


class ManifestError(VoiceRouterError):
    """A manifest CSV is missing, unreadable, or lacks the columns a command needs."""

    exit_code = 2
