"""Live listening: audio source -> utterances -> route -> tool, continuously.

    from voice_router.audio.capture import MicrophoneSource
    from voice_router.listen import listen
    for result in listen(MicrophoneSource("pulse"), router):
        print(result.route, result.score, result.latency_ms)

Structure (why): the capture thread reads the source and runs the VAD segmenter (cheap, ~1-2 ms
per 32 ms frame), and hands finished utterances to a bounded queue; the consumer (the thread
iterating `listen()`) embeds, routes and dispatches them. Capture therefore never waits for the
model or a tool. On a live source (microphone) a full queue drops its *oldest* utterance and
counts it (the newest command is the one the user is waiting for); on a non-live source (a file
read faster than real time) the capture thread waits instead, so nothing is lost.

Each result carries the `RouteMatch`, when the speech started (ISO 8601, UTC) and
`latency_ms`: from the end of speech (the last voiced sample, as captured) to the router's
return, tool call included. On a live source that includes the endpointing wait (`silence_ms`).

The same pipeline backs `voice-router listen` (microphone or `--file`), the async generator
`alisten()`, the tests and benchmarks/listen_latency.py.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from voice_router.audio.capture import AudioSource
from voice_router.audio.vad import SAMPLE_RATE, Utterance, UtteranceSegmenter
from voice_router.errors import VoiceRouterError

__all__ = [
    "ListenResult",
    "ListenStats",
    "Listener",
    "RouterLike",
    "alisten",
    "listen",
]

#: How long after a wake word (in stream time) the next utterance is still routed.
WAKE_ARM_S = 6.0


class RouterLike(Protocol):
    """What the pipeline needs from a router: `.route(16 kHz float32 array) -> match`, where the
    match has `route`, `score`, `margin` and `to_dict()` (VoiceRouter / RouteMatch do)."""

    def route(self, audio: Any, **kwargs: Any) -> Any: ...


@dataclass
class ListenStats:
    """Counters of one listening session (the Ctrl-C summary)."""

    utterances: int = 0  # routed (matched or not)
    matched: int = 0
    dropped: int = 0  # oldest utterances dropped because the queue was full
    ignored_short: int = 0  # speech shorter than min_ms (clicks)
    cut: int = 0  # pieces produced by the max length
    no_wake_word: int = 0  # utterances skipped because no wake word preceded them
    wake_words: int = 0
    errors: int = 0  # utterances the router refused (e.g. unusable audio)

    def to_dict(self) -> dict[str, int]:
        """JSON-friendly counters."""
        return dict(self.__dict__)

    def summary(self) -> str:
        """One line for stderr."""
        s = (
            f"{self.utterances} utterance(s), {self.matched} matched, {self.dropped} dropped, "
            f"{self.ignored_short} too short"
        )
        if self.cut:
            s += f", {self.cut} cut by the max length"
        if self.wake_words or self.no_wake_word:
            s += f", {self.wake_words} wake word(s), {self.no_wake_word} without wake word"
        if self.errors:
            s += f", {self.errors} error(s)"
        return s


@dataclass
class ListenResult:
    """One routed utterance: the router's match plus when it was said and how fast it ran."""

    match: Any  # RouteMatch (or any object with route/score/margin/to_dict)
    index: int  # 0-based count of routed utterances
    started_at: str  # ISO 8601 UTC wall time of the detected speech start
    ended_at: str  # ... and end
    start_s: float  # speech start, seconds from the start of the stream
    end_s: float
    latency_ms: float  # end of speech (as captured) -> router/tool call returned
    processing_ms: float  # utterance handed over (endpoint detected) -> router returned
    queued_ms: float  # time it waited in the queue before routing
    cut: bool = False
    wake_word: str | None = None
    utterance: Utterance | None = field(default=None, repr=False)
    audio: np.ndarray | None = field(default=None, repr=False)  # what was routed (16 kHz)

    @property
    def route(self) -> str | None:
        """The matched route or None."""
        return self.match.route

    @property
    def score(self) -> float:
        """Best route's score."""
        return float(self.match.score)

    @property
    def margin(self) -> float:
        """Best minus runner-up score."""
        return float(self.match.margin)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object `voice-router listen --json` prints: the match's fields, its per-stage
        timings under `stages_ms`, and `latency_ms` as end of speech -> tool call done."""
        d = dict(self.match.to_dict())
        stages = d.pop("latency_ms", None)
        d.update(
            route=self.route,
            score=round(self.score, 6),
            margin=round(self.margin, 6),
            index=self.index,
            started_at=self.started_at,
            ended_at=self.ended_at,
            start_s=round(self.start_s, 3),
            end_s=round(self.end_s, 3),
            duration_ms=round(1000 * (self.end_s - self.start_s), 1),
            latency_ms=round(self.latency_ms, 1),
            processing_ms=round(self.processing_ms, 1),
            queued_ms=round(self.queued_ms, 1),
            cut=self.cut,
            stages_ms=stages,
        )
        if self.wake_word is not None:
            d["wake_word"] = self.wake_word
        return d


@dataclass
class _Item:
    utt: Utterance
    handed_at: float  # time.monotonic() when the segmenter emitted it


_END = object()


def _iso(t_wall: float) -> str:
    return dt.datetime.fromtimestamp(t_wall, tz=dt.UTC).isoformat(timespec="milliseconds")


class Listener:
    """The listening pipeline; iterate it for `ListenResult`s. Use `listen()` to build one.

    Thread-safe `stop()` ends capture at once; the iteration then routes the utterances
    already queued (at most `max_pending`) and ends. Breaking out of the loop, or `close()`,
    ends it without routing them.
    """

    def __init__(
        self,
        source: AudioSource,
        router: RouterLike,
        *,
        segmenter: UtteranceSegmenter | None = None,
        max_pending: int = 4,
        max_utterances: int | None = None,
        dispatch: bool | None = None,
        wake_word: Any = None,
        on_status: Callable[[str], None] | None = None,
    ) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be >= 1")
        self.source = source
        self.router = router
        self.segmenter = segmenter if segmenter is not None else UtteranceSegmenter()
        self.max_pending = max_pending
        self.max_utterances = max_utterances
        self.dispatch = dispatch
        self.wake = wake_word
        self.on_status = on_status
        self.stats = ListenStats()
        self.ready = threading.Event()  # set when the first audio block arrived
        self._queue: collections.deque[Any] = collections.deque()
        self._cond = threading.Condition()
        self._stopping = threading.Event()
        # (end sample of block, monotonic, wall) per recent block: maps samples to clock times
        self._clock: collections.deque[tuple[int, float, float]] = collections.deque(maxlen=4096)
        self._clock_lock = threading.Lock()
        self._armed_until: int | None = None  # stream sample until which a wake word holds
        self._thread: threading.Thread | None = None
        self._finished = False

    # -- capture side -------------------------------------------------------------------------
    def start(self) -> Listener:
        """Start the capture thread (iteration starts it too)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._capture, name="voice-router-capture", daemon=True
            )
            self._thread.start()
        return self

    def _status(self, msg: str) -> None:
        if self.on_status is not None:
            self.on_status(msg)

    def _capture(self) -> None:
        fed = 0
        try:
            for block in self.source.blocks():
                if self._stopping.is_set():
                    break
                now_mono, now_wall = time.monotonic(), time.time()
                captured = self.source.last_block_time  # the callback's time, if known
                t_mono = captured if captured is not None else now_mono
                t_wall = now_wall - (now_mono - t_mono)
                fed += len(block)
                with self._clock_lock:
                    self._clock.append((fed, t_mono, t_wall))
                if not self.ready.is_set():
                    self.ready.set()
                    self._status("listening")
                for u in self.segmenter.feed(block):
                    self._put(_Item(u, time.monotonic()))
            if not self._stopping.is_set():
                for u in self.segmenter.flush():
                    self._put(_Item(u, time.monotonic()))
        except BaseException as e:  # handed to the consumer, which raises it
            self._put_control(e)
            return
        self._put_control(_END)

    def _put(self, item: _Item) -> None:
        with self._cond:
            if len(self._queue) >= self.max_pending:
                if self.source.live:
                    self._queue.popleft()  # drop the oldest: never make capture wait
                    self.stats.dropped += 1
                    self._status(f"dropped an utterance (queue full, {self.stats.dropped} so far)")
                else:  # a file: wait for the router instead of losing audio
                    while len(self._queue) >= self.max_pending and not self._stopping.is_set():
                        self._cond.wait(0.1)
            self._queue.append(item)
            self._cond.notify_all()

    def _put_control(self, item: Any) -> None:
        with self._cond:
            self._queue.append(item)  # never dropped, never waits
            self._cond.notify_all()

    def _time_of(self, sample: int) -> tuple[float, float]:
        """(monotonic, wall) time at which stream sample `sample` was captured."""
        with self._clock_lock:
            clock = list(self._clock)
        if not clock:
            now = time.monotonic(), time.time()
            return now
        for end, t_mono, t_wall in clock:  # first block that contains the sample
            if end > sample:
                back = (end - sample) / SAMPLE_RATE if self.source.live else 0.0
                return t_mono - back, t_wall - back
        end, t_mono, t_wall = clock[-1]
        return t_mono, t_wall

    # -- consumer side ------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop capturing (thread-safe); the iteration ends once the queue is empty."""
        self._stopping.set()
        self.source.stop()
        with self._cond:
            self._cond.notify_all()

    def close(self, timeout: float = 5.0) -> None:
        """Stop and wait for the capture thread to finish."""
        self.stop()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _get(self) -> Any:
        with self._cond:
            while not self._queue:
                if self._stopping.is_set():
                    return _END
                self._cond.wait(0.1)
            item = self._queue.popleft()
            self._cond.notify_all()
            return item

    def next_result(self) -> ListenResult | None:
        """Block until the next routed utterance; None when the source ended or stop()."""
        if self._finished:
            return None
        self.start()
        while True:
            if self.max_utterances is not None and self.stats.utterances >= self.max_utterances:
                self._finish()
                return None
            item = self._get()
            if item is _END:
                self._finish()
                return None
            if isinstance(item, BaseException):
                self._finish()
                raise item
            result = self._handle(item)
            if result is not None:
                return result

    def _finish(self) -> None:
        self._finished = True
        self.close()

    def _handle(self, item: _Item) -> ListenResult | None:
        u = item.utt
        self.stats.ignored_short = self.segmenter.ignored
        audio, start, wake_name = u.audio, u.start, None
        if self.wake is not None:
            gated = self._gate(u)
            if gated is None:
                return None
            audio, start = gated
            wake_name = self.wake.name
        t_start = time.monotonic()
        kwargs: dict[str, Any] = {} if self.dispatch is None else {"dispatch": self.dispatch}
        from voice_router.routing import Router

        if isinstance(self.router, Router):  # the utterance is VAD speech already: no 2nd gate
            kwargs["gate"] = False
        try:
            match = self.router.route(audio, **kwargs)
        except VoiceRouterError as e:
            self.stats.errors += 1
            self._status(f"could not route an utterance: {e}")
            return None
        t_done = time.monotonic()
        end_mono, end_wall = self._time_of(u.end)
        _, start_wall = self._time_of(start)
        res = ListenResult(
            match=match,
            index=self.stats.utterances,
            started_at=_iso(start_wall),
            ended_at=_iso(end_wall),
            start_s=start / SAMPLE_RATE,
            end_s=u.end / SAMPLE_RATE,
            latency_ms=1000 * (t_done - end_mono),
            processing_ms=1000 * (t_done - item.handed_at),
            queued_ms=1000 * (t_start - item.handed_at),
            cut=u.cut,
            wake_word=wake_name,
            utterance=u,
            audio=audio,
        )
        self.stats.utterances += 1
        self.stats.cut += int(u.cut)
        self.stats.matched += int(getattr(match, "route", None) is not None)
        return res

    def _gate(self, u: Utterance) -> tuple[np.ndarray, int] | None:
        """Wake-word gate: (audio, speech start sample) of the part of `u` after a wake word,
        or all of `u` when a wake word shortly before armed the gate; None (skipped) otherwise.
        """
        hit = self.wake.detect(u.audio)
        min_samples = self.segmenter.min_samples
        if hit is not None:
            self.stats.wake_words += 1
            after = hit.end_sample  # offset in u.audio where the wake word ended
            if (u.audio_start + after) < u.end - min_samples:
                self._armed_until = None
                self._status(f"wake word {self.wake.name!r} (score {hit.score:.2f})")
                return u.audio[after:], u.audio_start + after
            self._armed_until = u.end + int(WAKE_ARM_S * SAMPLE_RATE)
            self._status(f"wake word {self.wake.name!r} (score {hit.score:.2f}): listening")
            return None
        if self._armed_until is not None and u.start <= self._armed_until:
            self._armed_until = None
            return u.audio, u.start
        self.stats.no_wake_word += 1
        return None

    def __iter__(self) -> Iterator[ListenResult]:
        return self._iterate()

    def _iterate(self) -> Iterator[ListenResult]:
        # a generator, so that leaving a `for` loop early (break, exception) closes it and,
        # through `finally`, stops capture and releases the device
        try:
            while (r := self.next_result()) is not None:
                yield r
        finally:
            self.close()

    def __next__(self) -> ListenResult:
        r = self.next_result()
        if r is None:
            raise StopIteration
        return r

    def __enter__(self) -> Listener:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def listen(
    source: AudioSource,
    router: RouterLike,
    *,
    silence_ms: float = 500.0,
    max_seconds: float = 15.0,
    min_ms: float = 200.0,
    pre_roll_ms: float = 400.0,
    vad_threshold: float = 0.5,
    max_pending: int = 4,
    max_utterances: int | None = None,
    dispatch: bool | None = None,
    wake_word: str | Any = None,
    wake_threshold: float = 0.5,
    on_status: Callable[[str], None] | None = None,
    segmenter: UtteranceSegmenter | None = None,
) -> Listener:
    """Listen to `source` and route each utterance: an iterator of `ListenResult`.

    Args:
        source: a MicrophoneSource, FileSource or ArraySource (voice_router.audio.capture).
        router: a VoiceRouter (or anything with `.route(array)`).
        silence_ms / max_seconds / min_ms / pre_roll_ms / vad_threshold: segmentation settings
            (see `UtteranceSegmenter`); ignored when `segmenter` is given.
        max_pending: utterances that may wait for the router; a live source drops the oldest.
        max_utterances: stop after this many routed utterances.
        dispatch: False routes without calling tools (None: the router's own setting).
        wake_word: a wake-word model name (e.g. "hey_jarvis") or detector: only speech after
            the wake word is routed.
        on_status: called with human-readable status lines ("listening", drops, ...).

    The returned `Listener` also exposes `.stats`, `.ready` and `.stop()`.
    """
    if segmenter is None:
        segmenter = UtteranceSegmenter(
            threshold=vad_threshold,
            silence_ms=silence_ms,
            max_ms=1000.0 * max_seconds,
            min_ms=min_ms,
            pre_roll_ms=pre_roll_ms,
        )
    if isinstance(wake_word, str):
        from voice_router.wakeword import WakeWordDetector

        wake_word = WakeWordDetector(wake_word, threshold=wake_threshold)
    return Listener(
        source,
        router,
        segmenter=segmenter,
        max_pending=max_pending,
        max_utterances=max_utterances,
        dispatch=dispatch,
        wake_word=wake_word,
        on_status=on_status,
    )


async def alisten(
    source: AudioSource, router: RouterLike, **kwargs: Any
) -> AsyncIterator[ListenResult]:
    """Async generator form of `listen()` (same arguments): capture and routing run in worker
    threads, so the event loop stays free. Leaving the loop (break, cancellation) stops capture."""
    listener = listen(source, router, **kwargs)
    try:
        while True:
            res = await asyncio.to_thread(listener.next_result)
            if res is None:
                return
            yield res
    finally:
        listener.stop()
        await asyncio.to_thread(listener.close)
