"""Summary statistics of a load run, SLO goodput, and the prefix-cache hit rate from ``/metrics``.

Definitions (over successful requests, status 200 with no stream error):
- ``ttft_ms``: send -> first text chunk; ``itl_ms``: every gap between text chunks (pooled over requests);
  ``tpot_ms``: per request (e2e - ttft) / (output_tokens - 1), requests with >= 2 output tokens;
  ``e2e_ms``: send -> last byte (open loop: TTFT and e2e from the scheduled arrival, see ``loadgen``);
  ``input_tokens``/``output_tokens``: per-request token counts. Each as {mean, p50, p90, p99} (numpy
  linear percentiles), None if empty.
- ``requests_per_s`` = completed / duration_s; ``output_tok_s``/``input_tok_s`` = tokens of completed
  requests / duration_s.
- ``goodput_req_s`` = completed requests meeting *every* SLO bound / duration_s. SLO keys: ``ttft_ms``,
  ``tpot_ms``, ``e2e_ms`` (a request with one output token meets any tpot bound). None without an SLO.
- ``error_rate`` = failed / (completed + failed); requests cut off at ``max_seconds`` count in neither.
- ``cached_tokens_share`` = sum of usage cached_tokens / sum of prompt tokens of completed requests.
- ``prefix_cache_hit_rate`` = delta hits / delta queries of the server's prefix-cache counters between a
  scrape before and after the run, in tokens: Treadle ``treadle_prefix_cache_{queries,hits}_total``;
  vLLM V1 ``vllm:prefix_cache_{queries,hits}_total`` (tokens; the exposition may also drop ``_total``)
  and the older ``vllm:gpu_prefix_cache_{queries,hits}_total``. None when no pair is exported.
- ``prefix_reuse_ideal`` (set by the commands, see ``workloads.prefix_reuse``): the share of prompt
  content an unbounded one-node prefix cache could reuse for the requests sent; compare it with the
  measured hit rate.
"""

from __future__ import annotations

import re

import httpx
import numpy as np

from treadle.bench.loadgen import CUT_OFF, RequestRecord

SLO_KEYS = ("ttft_ms", "tpot_ms", "e2e_ms")
PREFIX_METRICS = (  # (queries, hits), the first pair present wins
    ("treadle_prefix_cache_queries_total", "treadle_prefix_cache_hits_total"),
    ("vllm:prefix_cache_queries_total", "vllm:prefix_cache_hits_total"),
    ("vllm:prefix_cache_queries", "vllm:prefix_cache_hits"),
    ("vllm:gpu_prefix_cache_queries_total", "vllm:gpu_prefix_cache_hits_total"),
)
_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)")


def parse_slo(text: str | None) -> dict[str, float] | None:
    """``"ttft_ms=500,tpot_ms=100"`` -> {"ttft_ms": 500.0, "tpot_ms": 100.0}; None/"" -> None."""
    if not text:
        return None
    slo: dict[str, float] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        key = key.strip()
        if key not in SLO_KEYS:
            raise ValueError(f"slo: unknown key {key!r}; valid keys are {', '.join(SLO_KEYS)} (e.g. ttft_ms=500)")
        try:
            slo[key] = float(value)
        except ValueError:
            raise ValueError(f"slo: {key} needs a number of milliseconds, got {value!r}") from None
        if slo[key] <= 0:
            raise ValueError(f"slo: {key} must be > 0, got {value}")
    return slo


def stats(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    a = np.asarray(values, dtype=float)
    return {"mean": float(a.mean()), "p50": float(np.percentile(a, 50)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99))}


def tpot_ms(r: RequestRecord) -> float | None:
    tp = r.tpot_s
    return None if tp is None else tp * 1000.0


def meets_slo(r: RequestRecord, slo: dict[str, float]) -> bool:
    """True when successful request ``r`` is within every bound of ``slo``."""
    if not r.ok or r.ttft_s is None or r.e2e_s is None:
        return False
    if "ttft_ms" in slo and r.ttft_s * 1000.0 > slo["ttft_ms"]:
        return False
    if "e2e_ms" in slo and r.e2e_s * 1000.0 > slo["e2e_ms"]:
        return False
    tp = tpot_ms(r)
    return not ("tpot_ms" in slo and tp is not None and tp > slo["tpot_ms"])


def summarize(records: list[RequestRecord], duration_s: float, slo: dict[str, float] | None = None) -> dict:
    """The summary dict of a run (keys in the module docstring). ``duration_s`` must be > 0."""
    if duration_s <= 0:
        raise ValueError(f"duration_s must be > 0, got {duration_s}")
    ok = [r for r in records if r.ok]
    failed = [r for r in records if not r.ok and r.status != CUT_OFF]
    prompt = sum(r.prompt_tokens for r in ok)
    tpots = [t for t in map(tpot_ms, ok) if t is not None]
    n_done = len(ok) + len(failed)
    return {
        "completed": len(ok),
        "failed": len(failed),
        "cut_off": sum(r.status == CUT_OFF for r in records),
        "error_rate": len(failed) / n_done if n_done else 0.0,
        "errors": _error_kinds(failed),
        "duration_s": duration_s,
        "requests_per_s": len(ok) / duration_s,
        "output_tok_s": sum(r.output_tokens for r in ok) / duration_s,
        "input_tok_s": prompt / duration_s,
        "ttft_ms": stats([r.ttft_s * 1000.0 for r in ok if r.ttft_s is not None]),
        "itl_ms": stats([x * 1000.0 for r in ok for x in r.itl_s]),
        "tpot_ms": stats(tpots),
        "e2e_ms": stats([r.e2e_s * 1000.0 for r in ok if r.e2e_s is not None]),
        "input_tokens": stats([r.prompt_tokens for r in ok]),
        "output_tokens": stats([r.output_tokens for r in ok]),
        "goodput_req_s": sum(meets_slo(r, slo) for r in ok) / duration_s if slo else None,
        "slo": slo,
        "cached_tokens_share": sum(r.cached_tokens for r in ok) / prompt if prompt else None,
        "prefix_cache_hit_rate": None,
        "prefix_reuse_ideal": None,
    }


def _error_kinds(failed: list[RequestRecord]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for r in failed:
        key = str(r.status) if r.status else "connection"
        kinds[key] = kinds.get(key, 0) + 1
    return kinds


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {name: value summed over label sets} (comments skipped)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = _LINE.match(line)
        if m and not line.startswith("#"):
            try:
                out[m.group(1)] = out.get(m.group(1), 0.0) + float(m.group(3))
            except ValueError:
                continue
    return out


def scrape_metrics(base_url: str, timeout: float = 10.0, api_key: str | None = None) -> dict[str, float]:
    """GET ``base_url``/metrics and parse it; {} when the server exports none (any error)."""
    base = base_url.rstrip("/").removesuffix("/v1")
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        resp = httpx.get(f"{base}/metrics", timeout=timeout, headers=headers)
    except httpx.HTTPError:
        return {}
    return parse_metrics(resp.text) if resp.status_code == 200 else {}


def prefix_cache_hit_rate(before: dict[str, float], after: dict[str, float]) -> float | None:
    """Token hit rate of the prefix cache between two scrapes, or None (no counters / no queries)."""
    for queries, hits in PREFIX_METRICS:
        if queries in after and hits in after:
            dq = after[queries] - before.get(queries, 0.0)
            dh = after[hits] - before.get(hits, 0.0)
            return dh / dq if dq > 0 else None
    return None
