"""A LangChain `Embeddings` adapter for the text side of a voice-router model.

Audio and text share one space, so text queries find audio: wrap the model with
`VoiceRouterEmbeddings` and hand it to any LangChain vector store (e.g. langchain-qdrant's
`QdrantVectorStore` over a collection built by `voice-router index-audio`) to search recordings
by what they contain.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from langchain_core.embeddings import Embeddings

if TYPE_CHECKING:
    from voice_router.model.base import EmbeddingModel


class VoiceRouterEmbeddings(Embeddings):
    """`embed_documents` / `embed_query` through `model.embed_text` (L2-normalised floats).

    Args:
        model: an `EmbeddingModel`, or a name for `load_model` ("default", "tiny", a folder).
    """

    def __init__(self, model: EmbeddingModel | str = "default") -> None:
        from voice_router.model.loader import load_model

        self.model = load_model(model)

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Embed several texts -> one list of `model.dim` floats each."""
        if not texts:
            return []
        return self.model.embed_text(list(texts)).astype(float).tolist()  # (N, D)

    def embed_query(self, text: str) -> list[float]:
        """Embed one text query."""
        return self.model.embed_text([text])[0].astype(float).tolist()  # (D,)
