"""Audio sources for live listening: microphone, file and array behind one interface.

Every source yields float32 mono blocks at 16 kHz, so the segmenter and the listen pipeline
never care where audio comes from: tests drive the exact code path a microphone drives.

The microphone source opens a sounddevice (PortAudio) callback stream at the device's native
rate and resamples to 16 kHz with a streaming soxr resampler (asking PortAudio for 16 kHz
directly works on some backends and fails or resamples badly on others). The callback only
copies the block into a bounded queue and never blocks; when the consumer falls behind, the
oldest block is dropped and counted, because a stalled audio callback glitches or kills the
stream. A device that stops delivering audio (unplugged, server restarted) is reopened a
bounded number of times with backoff, then a `DeviceError` says what to check.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from voice_router.errors import AudioError, DeviceError

SAMPLE_RATE = 16000
DEFAULT_BLOCK_MS = 32.0  # 512 samples at 16 kHz: one silero-vad frame

_CHECK_AUDIO = (
    "check that an audio server (PulseAudio or PipeWire) is running (`pactl info`) and that a "
    "microphone is connected; list usable inputs with `voice-router devices`"
)


def _import_sounddevice() -> Any:
    """Import sounddevice, turning a missing PortAudio library into a DeviceError."""
    try:
        import sounddevice as sd
    except OSError as e:  # sounddevice raises OSError when libportaudio is missing
        raise DeviceError(
            f"the PortAudio library could not be loaded ({e}); install it "
            "(Debian/Ubuntu: `apt-get install libportaudio2`)"
        ) from e
    except ImportError as e:
        raise DeviceError(
            "sounddevice is not installed; install the listen extra: "
            "`pip install 'voice-router[listen]'`"
        ) from e
    return sd


@dataclass(frozen=True)
class InputDevice:
    """One audio input device as PortAudio reports it."""

    index: int
    name: str
    hostapi: str
    channels: int
    default_samplerate: float
    is_default: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly form (for `voice-router devices --json`)."""
        return {
            "index": self.index,
            "name": self.name,
            "hostapi": self.hostapi,
            "channels": self.channels,
            "default_samplerate": self.default_samplerate,
            "is_default": self.is_default,
        }


def list_input_devices() -> list[InputDevice]:
    """List the devices that can record (max_input_channels > 0).

    Returns an empty list when PortAudio sees no input at all (e.g. no audio server running);
    raises `DeviceError` only when PortAudio itself cannot be loaded.
    """
    sd = _import_sounddevice()
    try:
        devices = sd.query_devices()
        hostapis = sd.query_hostapis()
    except sd.PortAudioError as e:
        raise DeviceError(f"could not query audio devices ({e}); {_CHECK_AUDIO}") from e
    try:
        default_in = int(sd.default.device[0])
    except (TypeError, ValueError, IndexError):
        default_in = -1
    out = []
    for d in devices:
        if int(d["max_input_channels"]) <= 0:
            continue
        out.append(
            InputDevice(
                index=int(d["index"]),
                name=str(d["name"]),
                hostapi=str(hostapis[int(d["hostapi"])]["name"]),
                channels=int(d["max_input_channels"]),
                default_samplerate=float(d["default_samplerate"]),
                is_default=int(d["index"]) == default_in,
            )
        )
    return out


def _refresh_portaudio() -> None:
    """Re-initialise PortAudio so its device list reflects a restarted server or a re-plugged
    device (PortAudio scans devices only at initialisation). Uses sounddevice's documented-by-
    usage private hooks; skipped when they are absent."""
    sd = _import_sounddevice()
    term, init = getattr(sd, "_terminate", None), getattr(sd, "_initialize", None)
    if term is None or init is None:
        return
    try:
        term()
        init()
    except Exception:  # a failed refresh shows up as a failed reopen, with its message
        pass


def _inputs_list(sd: Any) -> str:
    """'0 "pulse", 1 "default"' (the input devices, for error messages)."""
    try:
        devs = [d for d in sd.query_devices() if int(d["max_input_channels"]) > 0]
    except Exception:
        return "none"
    return ", ".join(f'{int(d["index"])} "{d["name"]}"' for d in devs) or "none"


def _any_input(sd: Any) -> bool:
    try:
        return any(int(d["max_input_channels"]) > 0 for d in sd.query_devices())
    except Exception:  # querying failed: as good as no device
        return False


def resolve_input_device(device: int | str | None) -> dict[str, Any]:
    """Find the input device `device` names (index, name substring or None = default).

    Returns sounddevice's device dict. Raises `DeviceError` saying what to check when there is
    no such device, it has no inputs, or no audio server answers.
    """
    sd = _import_sounddevice()
    if isinstance(device, str):
        device = device.strip() or None  # "" = the default input
        if device is not None and device.lstrip("-").isdigit():
            device = int(device)
    try:
        info = sd.query_devices(device, kind="input") if device is None else None
        if info is None:
            info = sd.query_devices(device)
    except sd.PortAudioError as e:
        if not _any_input(sd):
            raise DeviceError(f"no audio input devices found ({e}); {_CHECK_AUDIO}") from e
        if device is None:
            raise DeviceError(f"no default audio input device ({e}); {_CHECK_AUDIO}") from e
        raise DeviceError(
            f"no audio device with index {device} ({e}); input devices: {_inputs_list(sd)}; "
            "see `voice-router devices`"
        ) from e
    except ValueError as e:  # no match for a name, or several matches
        if not _any_input(sd):
            raise DeviceError(
                f"audio input device {device!r} not found: no audio input devices at all; "
                f"{_CHECK_AUDIO}"
            ) from e
        what = "matches several devices" if "Multiple" in str(e) else "matches no device"
        raise DeviceError(
            f"audio input device {device!r} {what}; input devices: {_inputs_list(sd)}; pass "
            "an index or a longer part of the name (see `voice-router devices`)"
        ) from e
    if int(info["max_input_channels"]) <= 0:
        raise DeviceError(
            f"audio device {device!r} ({info['name']}) has no input channels; pick an input "
            "from `voice-router devices`"
        )
    return dict(info)


class AudioSource(ABC):
    """A stream of float32 mono 16 kHz blocks.

    Iterate `blocks()` (or the source itself); `stop()` may be called from another thread and
    makes the iteration end soon. `live` is True for sources that produce audio in real time
    whether or not anyone reads it (a microphone): the pipeline then must not fall behind.
    """

    sample_rate: int = SAMPLE_RATE
    live: bool = False
    #: time.monotonic() at which the last yielded block was captured, where the source knows
    #: it (a microphone: the audio callback's time); None = "when it was yielded".
    last_block_time: float | None = None

    def __init__(self) -> None:
        self._stop = threading.Event()

    @abstractmethod
    def blocks(self) -> Iterator[np.ndarray]:
        """Yield 1-D float32 blocks at 16 kHz until the source ends or `stop()` is called."""

    def stop(self) -> None:
        """Ask the iteration to end (thread-safe)."""
        self._stop.set()

    @property
    def stopped(self) -> bool:
        """True once `stop()` has been called."""
        return self._stop.is_set()

    def stats(self) -> dict[str, int]:
        """Counters worth reporting (e.g. dropped blocks); empty by default."""
        return {}

    def __iter__(self) -> Iterator[np.ndarray]:
        return self.blocks()

    def __enter__(self) -> AudioSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class ArraySource(AudioSource):
    """Blocks from an in-memory array (any rate, mono or (S, C)), resampled to 16 kHz once.

    `realtime=True` paces the blocks at the audio's own rate (for latency measurements that
    must include the wait for trailing silence, as a microphone would).
    """

    def __init__(
        self,
        array: np.ndarray,
        rate: int = SAMPLE_RATE,
        *,
        block_ms: float = DEFAULT_BLOCK_MS,
        realtime: bool = False,
    ) -> None:
        super().__init__()
        a = np.asarray(array, dtype=np.float32)
        if a.ndim == 2:
            a = a.mean(axis=1)  # (S, C) -> (S,)
        if a.ndim != 1:
            raise AudioError(f"expected a 1-D or (samples, channels) array, got shape {a.shape}")
        if rate != SAMPLE_RATE:
            import soxr

            a = soxr.resample(a, rate, SAMPLE_RATE).astype(np.float32)
        self.audio = np.ascontiguousarray(a)
        self.block = max(1, int(round(SAMPLE_RATE * block_ms / 1000)))
        self.realtime = realtime
        self.live = realtime

    def blocks(self) -> Iterator[np.ndarray]:
        t0 = time.monotonic()
        for i in range(0, len(self.audio), self.block):
            if self.stopped:
                return
            if self.realtime:  # sleep until this block would have been captured
                due = t0 + (i + self.block) / SAMPLE_RATE
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            yield self.audio[i : i + self.block]


class FileSource(ArraySource):
    """Blocks from an audio file (any format/rate `load_audio` reads), optionally paced."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        block_ms: float = DEFAULT_BLOCK_MS,
        realtime: bool = False,
    ) -> None:
        from voice_router.audio.io import load_audio

        self.path = Path(path)
        super().__init__(load_audio(self.path), SAMPLE_RATE, block_ms=block_ms, realtime=realtime)


class MicrophoneSource(AudioSource):
    """Live capture from a sounddevice input (index, name substring, or None = default).

    Args:
        device: PortAudio device index, a (sub)string of its name (e.g. "pulse"), or None.
        block_ms: callback block length at the native rate.
        max_queue_blocks: bound of the callback -> consumer queue; when full the oldest block is
            dropped and counted in `stats()["dropped_blocks"]` (the callback never blocks).
        stall_timeout_s: no callback for this long means the device is lost.
        start_timeout_s: the same for the first block after (re)opening; PulseAudio's ALSA
            plugin takes ~2 s to deliver the first block from a null sink's monitor here.
        retries: how many times a lost device is reopened before `DeviceError`.
        backoff_s: first wait before reopening; doubles per try.
    """

    live = True

    def __init__(
        self,
        device: int | str | None = None,
        *,
        block_ms: float = DEFAULT_BLOCK_MS,
        max_queue_blocks: int = 256,
        stall_timeout_s: float = 2.0,
        start_timeout_s: float = 6.0,
        retries: int = 3,
        backoff_s: float = 0.5,
    ) -> None:
        super().__init__()
        self.device = device
        self.block_ms = block_ms
        self.stall_timeout_s = stall_timeout_s
        self.start_timeout_s = start_timeout_s
        self.first_block_at: float | None = None  # time.monotonic() of the first audio block
        self.retries = retries
        self.backoff_s = backoff_s
        # (time.monotonic() at the callback, block at the stream rate)
        self._queue: queue.Queue[tuple[float, np.ndarray]] = queue.Queue(maxsize=max_queue_blocks)
        self._dropped = 0
        self._overflows = 0
        self._reopens = 0
        self._stream: Any = None
        self.info = resolve_input_device(device)  # fail early, with the clear message
        self.native_rate = int(round(float(self.info["default_samplerate"]))) or SAMPLE_RATE
        self.stream_rate = self.native_rate  # the rate the open stream really runs at
        self.channels = 1

    # -- the PortAudio callback: copy, enqueue, never block -------------------------------
    def _callback(self, indata: np.ndarray, frames: int, time_info: Any, status: Any) -> None:
        now = time.monotonic()
        if status and status.input_overflow:
            self._overflows += 1
        if indata.ndim == 2:  # (frames, channels) -> (frames,)
            block = indata[:, 0].copy() if indata.shape[1] == 1 else indata.mean(axis=1)
        else:
            block = indata.copy()
        try:
            self._queue.put_nowait((now, block))
        except queue.Full:
            try:
                self._queue.get_nowait()  # drop the oldest block
            except queue.Empty:
                pass
            self._dropped += 1
            try:
                self._queue.put_nowait((now, block))
            except queue.Full:
                self._dropped += 1

    def _open(self) -> None:
        """Open and start the stream: native rate and mono first, then other common rates and
        the device's channel count (some hardware devices refuse mono or their listed rate);
        the callback down-mixes and `blocks()` resamples whatever was accepted."""
        sd = _import_sounddevice()
        max_ch = max(1, int(self.info["max_input_channels"]))
        rates = list(dict.fromkeys([self.native_rate, 48000, 44100, SAMPLE_RATE]))
        first: Exception | None = None
        for channels in dict.fromkeys([1, min(max_ch, 2)]):
            for rate in rates:
                try:
                    stream = sd.InputStream(
                        device=int(self.info["index"]),
                        samplerate=rate,
                        channels=channels,
                        dtype="float32",
                        blocksize=max(1, int(round(rate * self.block_ms / 1000))),
                        callback=self._callback,
                    )
                    stream.start()
                except (sd.PortAudioError, ValueError) as e:
                    first = first or e
                    continue
                self.stream_rate, self.channels = rate, channels
                self._stream = stream
                return
        raise DeviceError(
            f"could not open audio input {self.info['name']!r} at {self.native_rate} Hz "
            f"({first}); {_CHECK_AUDIO}"
        ) from first

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is not None:
            try:
                stream.abort()
                stream.close()
            except Exception:  # closing a dead stream must not mask the cause
                pass

    def _reopen(self, why: str) -> None:
        """Close the dead stream and reopen it, up to `retries` times with backoff."""
        self._close()
        last: Exception | None = None
        for attempt in range(self.retries):
            if self.stopped:
                return
            time.sleep(self.backoff_s * (2**attempt))
            try:
                _refresh_portaudio()
                self.info = resolve_input_device(self.device)
                self._open()
                self._reopens += 1
                return
            except DeviceError as e:
                last = e
        raise DeviceError(
            f"lost audio input {self.device if self.device is not None else 'default'!r} "
            f"({why}) and {self.retries} attempts to reopen it failed"
            + (f" (last: {last})" if last else "")
            + f"; {_CHECK_AUDIO}"
        )

    def blocks(self) -> Iterator[np.ndarray]:
        import soxr

        self._open()
        resampler, resampler_rate = None, None
        last_data = time.monotonic()
        timeout = self.start_timeout_s  # the first block after (re)opening may take a while
        try:
            while not self.stopped:
                try:
                    captured_at, block = self._queue.get(timeout=0.1)
                except queue.Empty:
                    stream = self._stream
                    dead = stream is None or not stream.active
                    if dead or time.monotonic() - last_data > timeout:
                        self._reopen("stream stopped" if dead else f"no audio for {timeout:g} s")
                        last_data = time.monotonic()
                        timeout = self.start_timeout_s
                    continue
                last_data = time.monotonic()
                timeout = self.stall_timeout_s
                if self.first_block_at is None:
                    self.first_block_at = last_data
                if resampler_rate != self.stream_rate:  # first block, or reopened at a new rate
                    resampler_rate = self.stream_rate
                    resampler = (
                        soxr.ResampleStream(resampler_rate, SAMPLE_RATE, 1, dtype="float32")
                        if resampler_rate != SAMPLE_RATE
                        else None
                    )
                out = block if resampler is None else resampler.resample_chunk(block)
                if len(out):
                    self.last_block_time = captured_at
                    yield np.asarray(out, dtype=np.float32)
        finally:
            self._close()

    def stats(self) -> dict[str, int]:
        return {
            "dropped_blocks": self._dropped,
            "input_overflows": self._overflows,
            "reopens": self._reopens,
        }
