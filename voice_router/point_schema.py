"""The route points' schema: payload keys, kinds, sources and deterministic ids.

One place, so the points that write them (`voice_router.points`), the index that reads them back
(`voice_router.index`), scoring and the slot stage agree. The store (`voice_router.store`)
knows none of it: it stores vectors with opaque payloads.
"""

from __future__ import annotations

import uuid

#: Namespace of every deterministic route point id.
POINT_NAMESPACE = uuid.UUID("6f1c1f6e-6b9a-5d0e-9a57-7a3e0c6f9d21")

# Payload keys.
P_ROUTE = "route"
P_KIND = "kind"
P_TEXT = "text"
P_VOICE = "voice"
P_SOURCE = "source"
P_SLOTS = "slots"  # slot values a template phrasing carries ({} for other points)
P_VARIES = "varies"  # the slot a template phrasing varies ("" for its carriers)

KIND_TEXT = "text"
KIND_AUDIO = "audio"

SOURCE_ROUTES = "routes"  # description/examples text, or TTS of them
SOURCE_FILE = "examples_audio"  # audio file named in the routes file
SOURCE_ENROLLED = "enrolled"  # clip added with `voice-router enroll`
SOURCE_TEMPLATE = "sentences"  # a phrasing expanded from a route's `sentences:` templates

#: Payload keys a route collection indexes: routing filters by them on every utterance.
INDEXED_KEYS = (P_KIND, P_ROUTE)


def point_id(fingerprint: str, route: str, kind: str, text: str, voice: str = "") -> str:
    """Deterministic id of a route point: the same inputs always give the same UUID string, so
    a restart with the same routes writes nothing."""
    return str(uuid.uuid5(POINT_NAMESPACE, f"{fingerprint}|{route}|{kind}|{text}|{voice}"))
