"""Hidden-state features of the bundled LLM (SmolLM2-135M-Instruct) for a linear safety probe.

A text's feature at layer L is the mean over its real tokens (attention mask) of the hidden state
after decoder block L; layer ``n_layers`` is the model's last hidden state, after the final
RMSNorm (what the LM head reads). Raw text, no chat template, no BOS (the tokenizer adds none),
right-padded batches sorted by length: with causal attention a real token never sees a pad, so a
text's feature does not depend on its batch mates. Vectors are returned raw (float32): the probe
standardises them per training fold (``safety_loso``), since a few residual-stream dimensions are
orders of magnitude larger than the rest and would swamp an L2 norm.

The model is the converted GGUF of ``models.registry.default_model_path`` (the folder the tuning
code trains from); nothing is downloaded. Every layer comes from one forward pass, so
``LMFeatureCache`` stores several layers at once, one ``embed_cache.EmbeddingCache`` file per
layer under ``$TREADLE_CACHE/evals/``, keyed by model tag + layer + text SHA-1.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from treadle.evals.embed_cache import EmbeddingCache, text_key

VERSION = 1  # bump when the pooling or tokenisation changes
MAX_TOKENS = 1024  # texts are cut to safety_sources.MAX_CHARS (400) first (longest: ~640 tokens); a guard
MID_LAYER = 15  # of SmolLM2-135M's 30 blocks
LAST_LAYER = 30


class LMFeatureExtractor:
    """Mean-pooled hidden states of a local causal LM at chosen layers (CPU, float32, deterministic)."""

    def __init__(self, model_dir: Path, layers: Sequence[int], batch_size: int = 16, threads: int | None = 2,
                 max_tokens: int = MAX_TOKENS) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        if threads:
            torch.set_num_threads(threads)
        self.tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        self.tok.padding_side = "right"
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        # AutoModel: the bare decoder stack, so no LM-head matmul over the 49k vocabulary is spent
        self.model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32).eval()
        self.n_layers = int(self.model.config.num_hidden_layers)
        bad = [k for k in layers if not 0 <= k <= self.n_layers]
        if bad:
            raise ValueError(f"layers {bad} are outside 0..{self.n_layers}")
        self.layers = tuple(layers)
        self.batch_size = batch_size
        self.max_tokens = max_tokens

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    def encode(self, texts: list[str]) -> dict[int, np.ndarray]:
        """``{layer: float32 [len(texts), hidden]}``, rows in input order."""
        import torch

        out = {k: np.zeros((len(texts), self.dim), dtype=np.float32) for k in self.layers}
        ids = self.tok([t or " " for t in texts], add_special_tokens=False, truncation=True,
                       max_length=self.max_tokens)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(ids[i]))
        with torch.inference_mode():
            for start in range(0, len(order), self.batch_size):
                rows = order[start:start + self.batch_size]
                batch = self.tok.pad({"input_ids": [ids[i] for i in rows]}, return_tensors="pt")
                res = self.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 output_hidden_states=True)
                m = batch["attention_mask"].unsqueeze(-1).float()
                denom = m.sum(1).clamp(min=1.0)
                for k in self.layers:
                    h = res.last_hidden_state if k == self.n_layers else res.hidden_states[k]
                    out[k][rows] = ((h * m).sum(1) / denom).numpy()
        return out


def model_tag(model_dir: Path) -> str:
    """Folder name + a short hash of its config and weight-file size (a different model never collides)."""
    h = hashlib.sha1((model_dir / "config.json").read_bytes())
    for f in sorted(model_dir.glob("*.safetensors")):
        h.update(f"{f.name}:{f.stat().st_size}".encode())
    return f"{model_dir.resolve().name}-{h.hexdigest()[:10]}"


class LMFeatureCache:
    """Disk cache of ``LMFeatureExtractor`` features for several layers, filled by one pass per text."""

    def __init__(self, model_dir: Path | None = None, layers: Sequence[int] = (MID_LAYER, LAST_LAYER),
                 root: Path | None = None,
                 extractor: Callable[[], LMFeatureExtractor] | None = None) -> None:
        if model_dir is None:
            from treadle.models.registry import default_model_path

            model_dir = default_model_path()
        if root is None:
            from treadle.models.registry import cache_root

            root = cache_root() / "evals"
        self.model_dir = Path(model_dir)
        self.layers = tuple(layers)
        tag = model_tag(self.model_dir)
        self.caches = {k: EmbeddingCache(root / f"lm-features-v{VERSION}-{tag}-L{k}.npz") for k in self.layers}
        self._extractor = extractor or (lambda: LMFeatureExtractor(self.model_dir, self.layers))
        self.extract_s = 0.0  # wall seconds spent in the model during the last encode()

    def encode(self, texts: list[str], flush_every: int = 1000, progress: bool = False) -> dict[int, np.ndarray]:
        """``{layer: features of texts}`` (rows in input order); runs the model only on texts missing a layer."""
        keys = [text_key(t) for t in texts]
        missing = {k: t for k, t in zip(keys, texts, strict=True)
                   if any(k not in c.vecs for c in self.caches.values())}
        todo = sorted(missing.items(), key=lambda kv: len(kv[1]))
        self.extract_s = 0.0
        if todo:
            ext = self._extractor()
            t0 = time.monotonic()
            for start in range(0, len(todo), flush_every):
                chunk = todo[start:start + flush_every]
                feats = ext.encode([t for _, t in chunk])
                for layer, cache in self.caches.items():
                    cache.vecs.update({k: v for (k, _), v in zip(chunk, feats[layer], strict=True)})
                    cache.save()
                if progress:
                    done = min(start + flush_every, len(todo))
                    rate = done / (time.monotonic() - t0)
                    print(f"lm features: {done}/{len(todo)} new texts, {rate:.1f} texts/s, "
                          f"eta {(len(todo) - done) / rate / 60:.1f} min", flush=True)
            self.extract_s = time.monotonic() - t0
        return {layer: np.stack([c.vecs[k] for k in keys]) if keys else np.zeros((0, 0), dtype=np.float32)
                for layer, c in self.caches.items()}
