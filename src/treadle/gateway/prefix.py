"""From an OpenAI request body to the engine's prefix block hashes (for prefix-aware routing).

The prompt is tokenized exactly as ``LLMEngine.tokenize_prompt`` does (chat template, then encode
without special tokens; text prompts with them; token-id prompts as they are), and hashed with the
engine's own ``hash_token_blocks`` and ``extra_hash_key``, so a hash here equals the hash of the
block the replica caches. The key is the model name plus the adapter/salt bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from treadle.engine.kv_cache_manager import extra_hash_key, hash_token_blocks
from treadle.gateway.policies.base import RouteRequest
from treadle.models.tokenizer import Tokenizer

BLOCK_SIZE = 16  # the engine's default block size


def model_folder(model: str) -> Path:
    """The folder holding the tokenizer: ``default`` resolves to the converted cache (no weights load)."""
    from treadle.models.registry import resolve_model

    folder, _ = resolve_model(model)
    return folder


class PrefixHasher:
    """Tokenizes request bodies of one base model and hashes their full blocks."""

    def __init__(self, tokenizer: Tokenizer, base_model: str, block_size: int = BLOCK_SIZE,
                 max_blocks: int = 1024) -> None:
        self.tokenizer, self.base_model = tokenizer, base_model
        self.block_size, self.max_blocks = block_size, max_blocks

    def token_ids(self, body: dict[str, Any], chat: bool) -> list[int]:
        """Token ids of the (first) prompt; [] when the body cannot be tokenized (the replica will say why)."""
        try:
            if chat:
                messages = []
                for m in body.get("messages") or []:
                    content = m.get("content")
                    if isinstance(content, list):
                        content = "\n".join(p.get("text") or "" for p in content if isinstance(p, dict))
                    role = m.get("role")
                    messages.append({"role": "system" if role == "developer" else role, "content": content or ""})
                return self.tokenizer.encode_chat(messages)
            prompt = body.get("prompt")
            if isinstance(prompt, list) and prompt and isinstance(prompt[0], (str, list)):
                prompt = prompt[0]  # several prompts: route by the first
            if isinstance(prompt, str):
                return self.tokenizer.encode(prompt)
            if isinstance(prompt, list) and all(isinstance(t, int) for t in prompt):
                return list(prompt)
        except (ValueError, TypeError, AttributeError):
            pass
        return []

    def route_request(self, body: dict[str, Any], chat: bool) -> RouteRequest:
        model = body.get("model") or self.base_model
        adapter = None if model == self.base_model else str(model)
        salt = body.get("cache_salt")
        key = model.encode() + b"|" + extra_hash_key(adapter, salt if isinstance(salt, str) else None)
        ids = self.token_ids(body, chat)[: self.block_size * self.max_blocks]
        extra = extra_hash_key(adapter, salt if isinstance(salt, str) else None)
        return RouteRequest(key, tuple(hash_token_blocks(ids, self.block_size, extra)))


def load_hasher(model: str, served_name: str, block_size: int = BLOCK_SIZE) -> PrefixHasher:
    return PrefixHasher(Tokenizer(model_folder(model)), served_name, block_size)
