"""Rebuild the derived audio fixtures in this folder from `on_022cd682.flac` (a real clip).

    .venv/bin/python tests/data/audio/make_audio_fixtures.py

on_id3.mp3: the clip encoded to MP3 (libsndfile's LAME encoder via soundfile), with a real ID3v2.3
tag (TIT2 title, TPE1 artist, TALB album frames, built by hand to the id3.org v2.3 layout) in front
and an ID3v1 tag (128 bytes, "TAG...") at the end, as music players and phones write them.
"""

from __future__ import annotations

import io
import struct
from pathlib import Path

import soundfile as sf

HERE = Path(__file__).parent


def id3v2_frame(frame_id: str, text: str) -> bytes:
    """One ID3v2.3 text frame: id, 32-bit size, flags, then encoding byte 0 (Latin-1) + text."""
    body = b"\x00" + text.encode("latin-1")
    return frame_id.encode("ascii") + struct.pack(">I", len(body)) + b"\x00\x00" + body


def syncsafe(n: int) -> bytes:
    """ID3v2 tag size: 4 bytes of 7 bits each."""
    return bytes([(n >> 21) & 0x7F, (n >> 14) & 0x7F, (n >> 7) & 0x7F, n & 0x7F])


def id3v2_tag(title: str, artist: str, album: str) -> bytes:
    frames = id3v2_frame("TIT2", title) + id3v2_frame("TPE1", artist) + id3v2_frame("TALB", album)
    frames += b"\x00" * 64  # padding, as taggers leave it
    return b"ID3\x03\x00\x00" + syncsafe(len(frames)) + frames


def id3v1_tag(title: str, artist: str, album: str) -> bytes:
    def field(s: str, n: int) -> bytes:
        return s.encode("latin-1")[:n].ljust(n, b"\x00")

    tag = b"TAG" + field(title, 30) + field(artist, 30) + field(album, 30) + b"2018"
    tag += field("", 30) + bytes([255])  # comment, genre "none"
    assert len(tag) == 128
    return tag


def main() -> None:
    audio, rate = sf.read(HERE / "on_022cd682.flac", dtype="float32")
    buf = io.BytesIO()
    sf.write(buf, audio, rate, format="MP3", subtype="MPEG_LAYER_III")
    mp3 = buf.getvalue()
    tagged = id3v2_tag("on", "Speech Commands", "v0.02 test") + mp3
    tagged += id3v1_tag("on", "Speech Commands", "v0.02 test")
    (HERE / "on_id3.mp3").write_bytes(tagged)


if __name__ == "__main__":
    main()
