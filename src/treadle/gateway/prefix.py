"""From an OpenAI request body to the replica's prefix block hashes (for prefix-aware routing).

The prompt is tokenized exactly as ``LLMEngine.tokenize_prompt`` does (chat template, then encode
without special tokens; text prompts with them; token-id prompts as they are), and hashed with
the shared contract in ``treadle.prefix_hash`` (the engine's own chain): the block size and the
adapter's content version come from the replicas' ``/v1/models`` cards, so a hash here equals the
hash of the block the replica caches for the same request, adapter and salt. No engine imports.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from treadle.gateway.policies.base import RouteRequest
from treadle.models.tokenizer import Tokenizer
from treadle.prefix_hash import DEFAULT_BLOCK_SIZE, extra_hash_key, hash_token_blocks

BLOCK_SIZE = DEFAULT_BLOCK_SIZE  # used until a replica advertises its own


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

    def route_request(self, body: dict[str, Any], chat: bool, card: dict[str, Any] | None = None) -> RouteRequest:
        """Cache key and block hashes of ``body``. ``card``: a replica's /v1/models card of its model.

        An adapter card (``parent`` set) contributes its content ``version`` to the hash, as the
        engine does; without a card (or for a server that sends no version) the name stands in.
        """
        model = body.get("model") or self.base_model
        card = card or {}
        adapter = None
        if card.get("parent") is not None or (not card and model != self.base_model):
            adapter = str(card.get("version") or model)
        salt = body.get("cache_salt")
        extra = extra_hash_key(adapter, salt if isinstance(salt, str) and salt else None)
        prefix = card.get("prefix_hash") or {}
        block_size = prefix.get("block_size") if isinstance(prefix.get("block_size"), int) else self.block_size
        key = str(model).encode() + b"|" + extra
        ids = self.token_ids(body, chat)[: block_size * self.max_blocks]
        return RouteRequest(key, tuple(hash_token_blocks(ids, block_size, extra)))


def load_hasher(model: str, served_name: str, block_size: int = BLOCK_SIZE) -> PrefixHasher:
    return PrefixHasher(Tokenizer(model_folder(model)), served_name, block_size)
