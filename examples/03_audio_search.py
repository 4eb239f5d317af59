"""Index a folder of recordings, then find clips by describing them in words.

    python examples/03_audio_search.py [FOLDER] [--query "turn on the lamp"] [--model default]

Uses `AudioLibrary` (what `voice-router index-audio` and `voice-router search` run). Indexing
is resumable: run it twice and the second run skips every file.
"""

from __future__ import annotations

from _common import ROOT, parser, pick_model

from voice_router import AudioLibrary, VoiceRouterEmbeddings
from voice_router.model.loader import load_model
from voice_router.store import open_backend


def main() -> None:
    p = parser(__doc__.splitlines()[0])
    p.add_argument("folder", nargs="?", default=str(ROOT / "tests" / "data"))
    p.add_argument("--query", default="turn on the lamp")
    p.add_argument("--collection", default="example_library")
    p.add_argument("-k", type=int, default=3)
    args = p.parse_args()
    model = load_model(pick_model(args.model))
    with AudioLibrary(model, args.collection, open_backend(args.index)) as lib:
        first = lib.index_dir(args.folder)
        second = lib.index_dir(args.folder)
        print(
            f"indexed {first.indexed} files ({len(first.failed)} unreadable); "
            f"re-run skipped {second.skipped}"
        )
        for hit in lib.search(args.query, k=args.k):
            print(f"{hit.score:.3f}  {hit.path}")
    # The same text side as a LangChain Embeddings object, for LangChain vector stores.
    emb = VoiceRouterEmbeddings(model)
    print("query embedding dim:", len(emb.embed_query(args.query)))


if __name__ == "__main__":
    main()
