"""A disk cache of MiniLM sentence embeddings, keyed by the text's SHA-1.

Embedding tens of thousands of texts on two shared cores takes minutes, so every embedding is kept
in ``$TREADLE_CACHE/evals/embeddings-v1.npz`` (``keys``: hex digests, ``vecs``: float32 rows) and
only new texts are encoded. New texts are encoded in order of length (less padding per batch) and
the cache file is rewritten atomically every ``flush_every`` texts, so an interrupted run keeps
what it had computed. Invariant: a key maps to the embedding of exactly that text.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import numpy as np

VERSION = 1


def text_key(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8")).hexdigest()


class EmbeddingCache:
    def __init__(self, path: Path | None = None, encode: Callable[[list[str]], np.ndarray] | None = None) -> None:
        if path is None:
            from treadle.models.registry import cache_root

            path = cache_root() / "evals" / f"embeddings-v{VERSION}.npz"
        self.path = path
        self._encode = encode
        self.vecs: dict[str, np.ndarray] = {}
        if path.is_file():
            with np.load(path) as z:
                self.vecs = dict(zip(z["keys"].tolist(), z["vecs"], strict=True))

    def encode(self, texts: list[str], flush_every: int = 2000, progress: bool = False) -> np.ndarray:
        """Embeddings of ``texts`` (rows in input order); encodes and stores only the missing ones."""
        keys = [text_key(t) for t in texts]
        todo = sorted({k: t for k, t in zip(keys, texts, strict=True) if k not in self.vecs}.items(),
                      key=lambda kv: len(kv[1]))
        if todo:
            encode = self._encode or _default_encoder()
            for start in range(0, len(todo), flush_every):
                chunk = todo[start:start + flush_every]
                vecs = encode([t for _, t in chunk])
                self.vecs.update({k: v.astype(np.float32) for (k, _), v in zip(chunk, vecs, strict=True)})
                self.save()
                if progress:
                    print(f"embedded {min(start + flush_every, len(todo))}/{len(todo)} new texts", flush=True)
        if not keys:
            return np.zeros((0, 384), dtype=np.float32)
        return np.stack([self.vecs[k] for k in keys])

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.stem + ".tmp.npz")
        keys = list(self.vecs)
        np.savez(tmp, keys=np.array(keys), vecs=np.stack([self.vecs[k] for k in keys]))
        tmp.replace(self.path)


def _default_encoder() -> Callable[[list[str]], np.ndarray]:
    from treadle.evals.embedder import get_embedder

    return get_embedder().encode
