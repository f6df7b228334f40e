"""Property-based fuzz of the server against its own /openapi.json (slow: ~300 generated requests).

Bodies are built from the field names the server publishes, with values drawn from every JSON
type (including lone surrogates, huge integers and deep nesting), plus unknown fields and
malformed bytes. The property: never a 5xx, and every 4xx is OpenAI's error JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from test_server_support import TIMEOUT, ServerProcess

pytestmark = pytest.mark.slow
MODEL = "tiny"
_NASTY = st.sampled_from(["\ud800", "a\udfffb", "9" * 5000, "NaN", "[" * 3000, "", "\x00", "😀"])
_TEXT = st.one_of(st.text(max_size=20), _NASTY)
_SCALAR = st.one_of(st.none(), st.booleans(), st.integers(-(10**30), 10**30), st.integers(-3, 300),
                    st.floats(allow_nan=False, allow_infinity=False), _TEXT)
_JSON = st.recursive(_SCALAR, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                      st.dictionaries(_TEXT, inner, max_size=4)), max_leaves=12)


@pytest.fixture(scope="module")
def server(tiny_llama: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = ServerProcess(tiny_llama, tmp_path_factory.mktemp("fuzz") / "server.log", "--served-model-name", MODEL,
                        "--max-model-len", "128", "--default-max-tokens", "4")
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def fields(server: ServerProcess) -> dict[str, list[str]]:
    spec = httpx.get(f"{server.base}/openapi.json", timeout=TIMEOUT).json()
    comps = spec["components"]["schemas"]
    return {"/v1/chat/completions": sorted(comps["ChatCompletionRequest"]["properties"]),
            "/v1/completions": sorted(comps["CompletionRequest"]["properties"])}


def _check(r: httpx.Response) -> None:
    assert r.status_code < 500, r.text[:300]
    if r.status_code >= 400 and r.status_code != 404:
        err = r.json()["error"]
        assert set(err) >= {"message", "type", "param", "code"}


@pytest.mark.parametrize("path", ["/v1/chat/completions", "/v1/completions"])
def test_no_generated_request_gets_a_5xx(server: ServerProcess, fields: dict, path: str) -> None:
    names = fields[path]
    base = ({"messages": [{"role": "user", "content": "hi"}]} if "chat" in path else {"prompt": "hi"})

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(picked=st.dictionaries(st.sampled_from(names) | _TEXT, _JSON, max_size=4), keep_base=st.booleans(),
           raw=st.one_of(st.none(), st.binary(max_size=40)))
    def run(picked: dict, keep_base: bool, raw: bytes | None) -> None:
        if raw is not None:
            content = raw
        else:
            body = {"model": MODEL, "max_tokens": 4, **(base if keep_base else {}), **picked}
            body.pop("stream", None) if body.get("stream") is not True else None
            content = json.dumps(body).encode()  # ensure_ascii: surrogates travel as \\ud800 escapes
        r = httpx.post(f"{server.base}{path}", content=content, headers={"content-type": "application/json"},
                       timeout=TIMEOUT)
        _check(r)

    run()
