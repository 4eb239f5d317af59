"""Audio sources: array/file blocks and resampling, and the microphone source's device
resolution, non-blocking callback queue, resampling and lost-device retry, driven through a
fake sounddevice module (the real audio stack is exercised in tests/integration)."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from voice_router.audio import capture
from voice_router.audio.capture import (
    ArraySource,
    FileSource,
    MicrophoneSource,
    list_input_devices,
    resolve_input_device,
)
from voice_router.errors import DeviceError

DATA = Path(__file__).resolve().parents[1] / "data"


def test_array_source_yields_all_samples_in_fixed_blocks() -> None:
    a = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 + 100).astype(np.float32)
    blocks = list(ArraySource(a, 16000, block_ms=32))
    assert all(len(b) == 512 for b in blocks[:-1]) and len(blocks[-1]) == (16100 % 512)
    np.testing.assert_array_equal(np.concatenate(blocks), a)
    assert all(b.dtype == np.float32 for b in blocks)


def test_array_source_resamples_and_downmixes() -> None:
    t = np.arange(48000) / 48000
    tone = np.sin(2 * np.pi * 440 * t).astype(np.float32)
    stereo = np.stack([tone, tone], axis=1)  # (S, 2)
    out = np.concatenate(list(ArraySource(stereo, 48000)))
    assert abs(len(out) - 16000) <= 1
    spec = np.abs(np.fft.rfft(out[1000:15000]))
    peak_hz = np.argmax(spec) * 16000 / len(out[1000:15000])
    assert abs(peak_hz - 440) < 5


def test_realtime_array_source_is_paced_and_stoppable() -> None:
    src = ArraySource(np.zeros(16000, np.float32), realtime=True)
    t0 = time.monotonic()
    n = 0
    for _ in src:
        n += 1
        if n == 10:
            src.stop()
    elapsed = time.monotonic() - t0
    assert n == 10
    assert 0.25 <= elapsed < 1.5  # 10 blocks of 32 ms arrive in about real time (not at once)


def test_file_source_matches_file_contents() -> None:
    path = DATA / "speech_sequence.flac"
    ref, _ = sf.read(path, dtype="float32")
    out = np.concatenate(list(FileSource(path)))
    np.testing.assert_allclose(out, ref, atol=1e-6)


# -- microphone source through a fake sounddevice ------------------------------------------


class FakePortAudioError(Exception):
    pass


class FakeFlags:
    input_overflow = False

    def __bool__(self) -> bool:
        return False


class FakeStream:
    """Calls the callback from a thread with a 440 Hz tone at the requested rate."""

    def __init__(
        self, sd: FakeSD, device: int, samplerate: int, blocksize: int, callback: Any, **_: Any
    ) -> None:
        self.sd, self.rate, self.blocksize, self.callback = sd, samplerate, blocksize, callback
        self.channels = _.get("channels", 1)
        self.active = False
        self._t = 0
        sd.opened += 1

    def start(self) -> None:
        if self.sd.fail_open:
            raise FakePortAudioError("Device unavailable")
        if (self.channels, self.rate) in self.sd.refuse:
            raise FakePortAudioError("Invalid number of channels / sample rate")
        self.sd.started += 1
        self.active = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        sent = 0
        while self.active:
            if self.sd.die_after is not None and sent >= self.sd.die_after:
                self.active = False  # the device vanished: stream stops, callbacks end
                # gone for good, or back for the next open until it has started `lives` times
                self.sd.fail_open = self.sd.stay_dead or self.sd.started >= self.sd.lives
                return
            t = (self._t + np.arange(self.blocksize)) / self.rate
            self._t += self.blocksize
            tone = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
            block = np.stack([tone] * self.channels, axis=1)  # (frames, channels)
            self.callback(block, self.blocksize, None, FakeFlags())
            sent += 1
            time.sleep(self.sd.block_sleep)

    def abort(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


class FakeSD:
    PortAudioError = FakePortAudioError

    def __init__(self, devices: list[dict[str, Any]], default_in: int = 0) -> None:
        self.devices = devices
        self.default = type("D", (), {"device": [default_in, default_in]})()
        self.opened = 0
        self.started = 0
        self.fail_open = False
        self.die_after: int | None = None
        self.stay_dead = True
        self.lives = 1_000_000  # starts after which a device that dies stays dead
        self.block_sleep = 0.001
        self.refuse: set[tuple[int, int]] = set()  # (channels, rate) the "hardware" refuses

    def query_devices(self, device: Any = None, kind: str | None = None) -> Any:
        if not self.devices:
            if device is None and kind is None:
                return []
            raise FakePortAudioError("Error querying device -1")
        if device is None and kind is None:
            return self.devices
        if device is None:
            return self.devices[self.default.device[0]]
        if isinstance(device, int):
            if not 0 <= device < len(self.devices):
                raise FakePortAudioError(f"Error querying device {device}")
            return self.devices[device]
        hits = [d for d in self.devices if device.lower() in d["name"].lower()]
        if not hits:
            raise ValueError(f"No input/output device matching {device!r}")
        return hits[0]

    def query_hostapis(self) -> Any:
        return [{"name": "ALSA"}]

    def InputStream(self, **kw: Any) -> FakeStream:  # noqa: N802 - sounddevice's name
        return FakeStream(self, **kw)


def dev(index: int, name: str, inputs: int = 2, rate: float = 48000.0) -> dict[str, Any]:
    return {
        "index": index,
        "name": name,
        "hostapi": 0,
        "max_input_channels": inputs,
        "default_samplerate": rate,
    }


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSD:
    sd = FakeSD([dev(0, "pulse"), dev(1, "HDMI out", inputs=0), dev(2, "USB Mic", rate=44100)])
    monkeypatch.setattr(capture, "_import_sounddevice", lambda: sd)
    return sd


def test_list_input_devices_lists_only_inputs(fake_sd: FakeSD) -> None:
    devs = list_input_devices()
    assert [d.name for d in devs] == ["pulse", "USB Mic"]
    assert devs[0].is_default and not devs[1].is_default
    assert devs[1].to_dict()["default_samplerate"] == 44100.0


def test_no_audio_server_gives_clear_device_error(fake_sd: FakeSD) -> None:
    fake_sd.devices = []
    assert list_input_devices() == []
    with pytest.raises(DeviceError, match="PulseAudio or PipeWire.*voice-router devices"):
        MicrophoneSource()
    with pytest.raises(DeviceError, match="voice-router devices"):
        MicrophoneSource("pulse")


def test_resolve_by_index_name_and_rejects_outputs(fake_sd: FakeSD) -> None:
    assert resolve_input_device("2")["name"] == "USB Mic"
    assert resolve_input_device("usb")["index"] == 2
    with pytest.raises(DeviceError, match="no input channels"):
        resolve_input_device(1)
    with pytest.raises(DeviceError, match="'nonesuch' matches no device.*0 \"pulse\""):
        resolve_input_device("nonesuch")
    with pytest.raises(DeviceError, match='no audio device with index 7.*2 "USB Mic"'):
        resolve_input_device(7)
    assert resolve_input_device("")["name"] == "pulse"  # empty = the default input


def test_microphone_resamples_native_rate_to_16k(fake_sd: FakeSD) -> None:
    src = MicrophoneSource("USB Mic", block_ms=20)
    assert src.native_rate == 44100
    got: list[np.ndarray] = []
    for b in src:
        got.append(b)
        if sum(map(len, got)) >= 16000:
            src.stop()
    out = np.concatenate(got)
    spec = np.abs(np.fft.rfft(out[2000:16000]))
    assert abs(np.argmax(spec) * 16000 / 14000 - 440) < 5  # the tone survives resampling
    assert src.first_block_at is not None
    # blocks carry the callback's capture time (for end-of-speech latency)
    assert src.last_block_time is not None and src.last_block_time <= time.monotonic()


def test_callback_never_blocks_and_drops_oldest_when_full(fake_sd: FakeSD) -> None:
    src = MicrophoneSource("pulse", max_queue_blocks=4)
    blocks = [np.full((10, 1), i, np.float32) for i in range(10)]
    t0 = time.monotonic()
    for b in blocks:  # nobody consumes: the queue overflows
        src._callback(b, 10, None, FakeFlags())
    assert time.monotonic() - t0 < 0.1
    assert src.stats()["dropped_blocks"] == 6
    kept = [src._queue.get_nowait()[1][0] for _ in range(4)]
    assert kept == [6.0, 7.0, 8.0, 9.0]  # the newest survive


def test_lost_device_is_reopened_then_gives_up_with_device_error(fake_sd: FakeSD) -> None:
    # The device dies, comes back once (reopen succeeds), dies again and stays gone: decided
    # by the fake's start count, not by when the consumer gets to look (it lags under load).
    fake_sd.die_after = 5
    fake_sd.stay_dead = False
    fake_sd.lives = 2
    src = MicrophoneSource("pulse", retries=2, backoff_s=0.01, stall_timeout_s=0.2)
    n = 0
    with pytest.raises(DeviceError, match="lost audio input.*2 attempts.*voice-router devices"):
        for _ in src:
            n += 1
    assert src.stats()["reopens"] == 1
    assert n >= 5
    assert fake_sd.started == 2  # first open and one successful reopen
    assert fake_sd.opened > 2  # ... then each of the two failed tries attempted to open


def test_device_refusing_mono_and_its_listed_rate_falls_back(fake_sd: FakeSD) -> None:
    fake_sd.refuse = {(1, 44100), (1, 48000), (1, 16000), (2, 44100)}
    src = MicrophoneSource("USB Mic")
    got: list[np.ndarray] = []
    for b in src:
        got.append(b)
        if sum(map(len, got)) >= 16000:
            src.stop()
    assert (src.channels, src.stream_rate) == (2, 48000)
    out = np.concatenate(got)
    spec = np.abs(np.fft.rfft(out[2000:16000]))
    assert abs(np.argmax(spec) * 16000 / 14000 - 440) < 5
    assert 0.25 < np.abs(out[2000:]).max() < 0.35  # stereo down-mixed, not summed


def test_device_refusing_everything_gives_device_error(fake_sd: FakeSD) -> None:
    fake_sd.refuse = {(c, r) for c in (1, 2) for r in (44100, 48000, 16000)}
    with pytest.raises(DeviceError, match="could not open audio input 'USB Mic'.*Invalid"):
        next(iter(MicrophoneSource("USB Mic")))
