"""The prefix-hash contract shared by the engine and the gateway (no torch, no engine imports).

A request's tokens are cut into blocks of ``block_size`` (default 16). Each *full* block gets
``H_i = blake2b-128(H_{i-1} || extra || int64 token ids of block i)`` with ``H_{-1}`` empty;
``extra`` is empty for the base model without a salt, else ``adapter=<version>;salt=<salt>``
where ``<version>`` is the LoRA adapter's content version (a hash of its weights and config, not
its name: reloading other weights under one name changes every hash) and ``<salt>`` the request's
``cache_salt``. Two requests share KV only when their whole prefix, adapter version and salt
agree. ``HASH_VERSION`` names this exact scheme; replicas advertise it with their block size in
``/v1/models`` so a gateway computes the same chain or knows it cannot.
"""

from __future__ import annotations

import hashlib
from array import array

HASH_VERSION = "blake2b128-chain-v1"
DEFAULT_BLOCK_SIZE = 16


def extra_hash_key(adapter_version: str | None, cache_salt: str | None) -> bytes:
    """Bytes that separate caches of different adapter versions/salts; empty for the base model."""
    if adapter_version is None and cache_salt is None:
        return b""
    return f"adapter={adapter_version or ''};salt={cache_salt or ''}".encode()


def hash_block(parent: bytes, token_ids: list[int] | tuple[int, ...], extra: bytes = b"") -> bytes:
    """One link of the prefix hash chain (16 bytes)."""
    h = hashlib.blake2b(parent, digest_size=16)
    h.update(extra)
    h.update(array("q", token_ids).tobytes())
    return h.digest()


def hash_token_blocks(
    token_ids: list[int], block_size: int = DEFAULT_BLOCK_SIZE, extra: bytes = b"", parent: bytes = b""
) -> list[bytes]:
    """Hash chain over every full block of ``token_ids`` (a partial last block gets no hash)."""
    out = []
    for start in range(0, len(token_ids) - block_size + 1, block_size):
        parent = hash_block(parent, token_ids[start : start + block_size], extra)
        out.append(parent)
    return out
