"""Cost model of one engine step: its duration as a linear function of the step's shape.

Model (one replica, ``threads`` threads, nothing else on its cores)::

    seconds = a + b * prefill_tokens + c * decode_rows + d * decode_context + e * prefill_attention
              + f * max(0, prefill_tokens - knee) + g * max(0, prefill_chunks - 1) + h * prefill_gather
              + i * [prefill_tokens > 0] + j * [prefill_tokens == 0 and decode_rows >= 2] + k * decode_kv

- ``prefill_tokens``: tokens of prompt chunks computed this step (cached tokens are not computed);
- ``decode_rows``: requests generating one token this step;
- ``decode_context``: sum over decode rows of the context they attend to (tokens before the new one);
- ``prefill_attention``: sum over prefill chunks of ``n * (start + (n + 1) / 2)`` / 1000: the query-key pairs
  of causal attention over a chunk of ``n`` tokens starting at position ``start``, in thousands;
- ``f``: a step's prefill tokens cost more per token beyond the ``knee`` (a fit's own, default
  ``PREFILL_KNEE`` = 256; ``treadle sim calibrate`` fits it at 384: on this CPU a 2-thread prefill costs
  1.2 ms per token up to ~384 tokens and 2-3 ms per token beyond, see docs/SIMULATION.md); files written
  before it have ``f = 0``;
- ``prefill_chunks``: prompt chunks in the step (``g`` is the cost of each beyond the first: one attention
  call, one mask, one sampled row per chunk);
- ``prefill_gather``: the context, in thousands of tokens, that chunks starting past position 0 (after cached
  or earlier-computed tokens) copy out of the paged cache with an explicit mask (``start + n`` each; a chunk
  from position 0 attends to its own rows and copies nothing). Measured: without ``g`` and ``h``, steps that
  prefill many short chunks after a long cached prefix were 10-26% slower than the fit. Files written before
  them have ``g = h = 0``;
- ``i``, ``j``: the engine's two step paths. A decode-only step (no prompt chunk) runs the whole layer stack in
  one C call (the fused decode step), and with one row through the one-row kernels; any step with a prompt
  chunk runs layer by layer (Python dispatch per layer, the tiled or dense kernels). ``a`` is then the fixed
  cost of a one-row decode step, ``a + j`` of a decode step with more rows, ``a + i`` of a step that prefills.
  Files written before 2026-12-03's fused decode step have ``i = j = 0`` (one fixed cost for every step).
- ``decode_kv``: the KV the decode rows read, in distinct tokens (each row's context and its new token, a
  prefix-cached block that several rows share counted once: ``distinct_kv``). ``d`` prices a row's attention
  over its context; ``k`` what reading distinct KV from memory adds. At 46 KB of fp32 KV per token
  (SmolLM2-135M), 16 rows of 300-token contexts read 220 MB per step, more than the weights; rows that share
  a prefix read it once, from cache. Measured (2026-12-03, fourth session): the fit without ``k``, calibrated
  on rows sharing their prefix, predicted the decode steps of a loaded replica (distinct ShareGPT contexts)
  17-28% too fast at 16 rows. Files written before have ``k = 0``.
Coefficients are fitted per thread count by ``treadle sim calibrate`` (or written by hand for other hardware);
``threads`` picks the fit with the closest thread count at or below (else the smallest).

Core sharing (``cores``): replicas on one machine share its cores. While replicas using ``T`` threads in all
are in the middle of a step, each progresses at ``min(1, cores / T)`` of its own speed (processor sharing),
divided by ``1 + oversubscribed_slowdown`` while ``T > cores`` and by ``1 + co_run_slowdown`` while ``T <= cores``
and more than one of them is busy (both measured by ``treadle sim calibrate --co-run``: caches, memory
bandwidth and the context switches of time-slicing). ``cores = 0`` means every replica has its
own hardware.

Serving overhead (``serving``: CPU seconds per output token of the replica's event loop, the gateway and the
client, measured by ``treadle sim calibrate --serving``, see ``serving_overhead.py``): the parts named in
``overhead_parts`` are added to ``c``, the cost of a decode row, because they run on the replica's machine
for every token it emits. Default: none (a file names its own); the simulator adds ``replica``.
Request latency (``latency``: seconds between a client sending a request and the replica's engine holding
it, plus the first chunk's way back, directly or through a gateway): a run picks a path and each request
reaches its replica that much after it was routed. A fresh replica's cold start, ``first_request_extra``
(its first request's path outside the engine: first template rendering, first tokenizer call) plus
``first_step_extra`` (torch's first run of the model: allocations, kernel set-up), lengthens its first step:
the requests behind the first one wait for both (one event loop, one engine thread), so neither can let
them overtake it. Finish stagger (``latency["finish_stagger"]``): requests whose last token comes from the
same step reach their clients one after another, this far apart (the replica's event loop ends each stream
and the client takes each end, and sends a closed loop's next request, one at a time); the k-th of a step's
finished requests ends ``k x finish_stagger`` after the step.

Files are JSON (or YAML when PyYAML is installed) with keys ``name``, ``source``, ``cores``,
``fits`` (``{threads: {a, ..., h, knee}}``), ``engine`` (the scheduler settings a replica runs with),
``fit_error`` (what calibration measured; informational), ``co_run_slowdown``, ``oversubscribed_slowdown``,
``serving`` and ``latency``; all but ``fits`` optional.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from treadle.engine.outputs import SchedulerOutput

COEFFS = ("a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k")
PREFILL_KNEE = 256
CPU_PARTS = ("replica", "gateway", "client")  # CPU per output token of each thread (serving_overhead)
SERVING_PARTS = (*CPU_PARTS, "step")  # and a served step's excess per decode row (serving_overhead)
LATENCY_PATHS = ("direct", "gateway")
COLD_START_KEYS = ("first_request_extra", "first_step_extra")
STEP_GAP_KEY = "step_gap"  # a served replica's engine thread between two steps with work (serving_overhead)
FINISH_STAGGER_KEY = "finish_stagger"  # between the client-seen ends of requests finishing in one step
LATENCY_KEYS = (*LATENCY_PATHS, *COLD_START_KEYS, STEP_GAP_KEY, FINISH_STAGGER_KEY)
BUNDLED = Path(__file__).parent / "costs"


@dataclass(frozen=True)
class StepShape:
    """What a step computes, in the cost model's terms (see the module docstring)."""

    prefill_tokens: int = 0
    decode_rows: int = 0
    decode_context: int = 0
    prefill_attention: float = 0.0  # thousands of query-key pairs
    prefill_chunks: int = 0
    prefill_gather: float = 0.0  # thousands of context tokens copied out of the cache by prefill chunks
    decode_kv: int = 0  # distinct KV tokens the decode rows read (``distinct_kv``)

    def features(self, knee: int = PREFILL_KNEE) -> tuple[float, ...]:
        """The regressors of ``COEFFS``, in order."""
        per_op = self.prefill_tokens > 0
        return (1.0, float(self.prefill_tokens), float(self.decode_rows), float(self.decode_context),
                self.prefill_attention, float(max(0, self.prefill_tokens - knee)),
                float(max(0, self.prefill_chunks - 1)), self.prefill_gather,
                float(per_op), float(not per_op and self.decode_rows >= 2), float(self.decode_kv))


def distinct_kv(rows: Iterable[tuple[int, Sequence[int]]], block_size: int) -> int:
    """Distinct KV tokens read by ``rows`` of (tokens attended, the request's block ids): the tokens summed,
    less ``block_size`` for every repeat of a block (a block several rows hold is a full, prefix-cached one)."""
    tokens, blocks = 0, []
    for n, ids in rows:
        tokens += n
        blocks += ids[: -(-n // block_size)]
    return tokens - (len(blocks) - len(set(blocks))) * block_size


def shape_of(out: SchedulerOutput, block_size: int = 16) -> StepShape:
    """The shape of a scheduled step: a one-token chunk past the prompt is a decode row, the rest prefill.
    ``block_size``: the KV cache's tokens per block (``decode_kv``)."""
    p = d = dc = chunks = 0
    att = gather = 0.0
    rows = []
    for s in out.scheduled:
        n, start = len(s.token_ids), s.start_pos
        if n == 1 and start >= s.num_prompt_tokens:
            d += 1
            dc += start
            rows.append((start + 1, s.block_ids))
        else:
            p += n
            chunks += 1
            att += n * (start + (n + 1) / 2)
            if start > 0:
                gather += start + n
    return StepShape(p, d, dc, att / 1000.0, chunks, gather / 1000.0, distinct_kv(rows, block_size))


def step_point(s: StepShape, seconds: float) -> list[float]:
    """A measured step as calibration files and step logs store it: [prefill tokens, decode rows, decode
    context, attention, prefill chunks, gathered context, decode KV, seconds]."""
    return [s.prefill_tokens, s.decode_rows, s.decode_context, s.prefill_attention, s.prefill_chunks,
            s.prefill_gather, s.decode_kv, seconds]


def from_step_point(pt: list[float]) -> tuple[StepShape, float]:
    """The inverse of ``step_point``. Points written before ``decode_kv`` (7 numbers) read it as the rows'
    context plus their new tokens, all distinct: what those files did not record; a step log's ninth number
    (when the step ended, ``StepLog``) is not part of the point."""
    if len(pt) == 9:
        pt = pt[:8]
    if len(pt) == 7:
        p, d, dc, att, ch, g, t = pt
        return StepShape(int(p), int(d), int(dc), att, int(ch), g, int(dc + d)), t
    p, d, dc, att, ch, g, kv, t = pt
    return StepShape(int(p), int(d), int(dc), att, int(ch), g, int(kv)), t


def bundled_names() -> list[str]:
    """The names of the cost files shipped in ``BUNDLED``."""
    return sorted(p.stem for p in BUNDLED.glob("*.json"))


@dataclass(frozen=True)
class Fit:
    a: float
    b: float = 0.0
    c: float = 0.0
    d: float = 0.0
    e: float = 0.0
    f: float = 0.0
    g: float = 0.0
    h: float = 0.0
    i: float = 0.0  # steps with a prompt chunk (layer by layer) over a one-row decode step
    j: float = 0.0  # decode-only steps of two or more rows over a one-row decode step
    k: float = 0.0  # per distinct KV token read by decode rows
    knee: int = PREFILL_KNEE  # prefill tokens of a step beyond which ``f`` applies

    def seconds(self, shape: StepShape) -> float:
        return (self.a + self.b * shape.prefill_tokens + self.c * shape.decode_rows
                + self.d * shape.decode_context + self.e * shape.prefill_attention
                + self.f * max(0, shape.prefill_tokens - self.knee)
                + self.g * max(0, shape.prefill_chunks - 1) + self.h * shape.prefill_gather
                + (self.i if shape.prefill_tokens > 0 else self.j if shape.decode_rows >= 2 else 0.0)
                + self.k * shape.decode_kv)


@dataclass(frozen=True)
class CostModel:
    fits: dict[int, Fit]
    cores: int = 0  # 0: each replica has its own hardware (no sharing)
    name: str = ""
    source: str = ""
    engine: dict = field(default_factory=dict)  # SchedulerConfig fields a replica of this hardware uses
    fit_error: dict = field(default_factory=dict)
    co_run_slowdown: float = 0.0  # extra slowdown while several replicas on one machine are busy
    oversubscribed_slowdown: float = 0.0  # the same while they ask for more threads than it has cores
    serving: dict = field(default_factory=dict)  # part -> CPU seconds per output token (serving_overhead.py)
    overhead_parts: tuple[str, ...] = ()  # the parts of ``serving`` added to every decode row
    latency: dict = field(default_factory=dict)  # path ("direct" | "gateway") -> seconds outside the engine
    request_latency_s: float = 0.0  # a run's choice: each request reaches its replica's engine this much later
    latency_spread: tuple[float, ...] = ()  # the path's factor, request by request: equally likely values, mean 1
    step_gap_s: float = 0.0  # a run's choice: served steps are this much further apart (added to each step)
    finish_stagger_s: float = 0.0  # a run's choice: the k-th request finishing in a step ends k x this later
    cold_start_s: float = 0.0  # a run's choice: a fresh replica's first step lasts this much longer

    def __post_init__(self) -> None:
        if not self.fits:
            raise ValueError("cost model: fits must hold at least one {threads: {a, b, c, d, e}} entry")
        for t, f in self.fits.items():
            if t < 1:
                raise ValueError(f"cost model: fits keys are thread counts >= 1, got {t}")
            if min(getattr(f, k) for k in COEFFS) < 0 or f.a <= 0:
                raise ValueError(f"cost model: coefficients must be >= 0 with a > 0, got {f} for {t} threads")
            if f.knee < 0:
                raise ValueError(f"cost model: knee must be >= 0 prefill tokens, got {f.knee} for {t} threads")
        if self.cores < 0:
            raise ValueError(f"cost model: cores must be >= 0, got {self.cores}")
        if self.co_run_slowdown < 0 or self.oversubscribed_slowdown < 0:
            raise ValueError(f"cost model: co_run_slowdown and oversubscribed_slowdown must be >= 0, got "
                             f"{self.co_run_slowdown}, {self.oversubscribed_slowdown}")
        if any(v < 0 for v in [*self.serving.values(), *self.latency.values(), self.request_latency_s,
                                self.cold_start_s, self.step_gap_s, self.finish_stagger_s]):
            raise ValueError(f"cost model: serving seconds must be >= 0, got serving {self.serving}, latency "
                             f"{self.latency}, request_latency_s {self.request_latency_s}, cold_start_s "
                             f"{self.cold_start_s}, step_gap_s {self.step_gap_s}, finish_stagger_s "
                             f"{self.finish_stagger_s}")
        if self.latency_spread and (min(self.latency_spread) < 0
                                    or abs(sum(self.latency_spread) / len(self.latency_spread) - 1.0) > 0.01):
            raise ValueError(f"cost model: latency_spread must be factors >= 0 with mean 1, got {self.latency_spread}")
        missing = [p for p in self.overhead_parts if p not in self.serving]
        if missing:
            raise ValueError(f"cost model: overhead part(s) {missing} not in its serving figures "
                             f"({sorted(self.serving) or 'none: calibrate with --serving'})")

    def with_overhead(self, parts: tuple[str, ...], path: str | None = None) -> CostModel:
        """This model with the serving overhead of ``parts`` added to each decode row and the request latency of
        ``path`` ("direct": client to replica, "gateway": through a gateway) before each request reaches the
        engine (times one of ``latency_spread``'s factors, drawn per request by the simulator), each served step
        ``step_gap`` longer (the engine thread between steps), the ends of requests finishing in one step
        ``finish_stagger`` apart, and a fresh replica's cold start
        (``first_request_extra + first_step_extra``) on its first step; what the file lacks is skipped (a file
        without serving figures stays as it is)."""
        from dataclasses import replace

        if path is not None and path not in LATENCY_PATHS:
            raise ValueError(f"latency path must be one of {', '.join(LATENCY_PATHS)}, got {path!r}")
        return replace(self, overhead_parts=tuple(p for p in parts if p in self.serving),
                       request_latency_s=float(self.latency.get(path, 0.0)) if path else 0.0,
                       step_gap_s=float(self.latency.get(STEP_GAP_KEY, 0.0)) if path else 0.0,
                       finish_stagger_s=float(self.latency.get(FINISH_STAGGER_KEY, 0.0)) if path else 0.0,
                       cold_start_s=sum(float(self.latency.get(k, 0.0)) for k in COLD_START_KEYS) if path else 0.0)

    @property
    def per_token_overhead(self) -> float:
        return sum(self.serving[p] for p in self.overhead_parts)

    def fit_for(self, threads: int) -> Fit:
        """The fit for ``threads`` (closest count at or below, else the smallest), overhead parts (per decode row)
        and the step gap (per step) included."""
        from dataclasses import replace

        below = [t for t in self.fits if t <= threads]
        f = self.fits[max(below) if below else min(self.fits)]
        if self.overhead_parts or self.step_gap_s:
            f = replace(f, a=f.a + self.step_gap_s, c=f.c + self.per_token_overhead)
        return f

    def seconds(self, shape: StepShape, threads: int = 1) -> float:
        """Duration of a step of ``shape`` on one replica of ``threads`` threads with its cores to itself."""
        return self.fit_for(threads).seconds(shape)

    def to_json(self) -> dict:
        return {"name": self.name, "source": self.source, "cores": self.cores, "engine": self.engine,
                "fits": {str(t): {**{k: getattr(f, k) for k in COEFFS}, "knee": f.knee}
                         for t, f in sorted(self.fits.items())},
                "fit_error": self.fit_error, "co_run_slowdown": self.co_run_slowdown,
                "oversubscribed_slowdown": self.oversubscribed_slowdown, "serving": self.serving,
                "latency": self.latency, **({"latency_spread": list(self.latency_spread)} if self.latency_spread
                                            else {})}

    @classmethod
    def from_json(cls, d: dict) -> CostModel:
        if not isinstance(d, dict) or "fits" not in d:
            raise ValueError("cost model file: needs a 'fits' mapping {threads: {a, b, c, d, e}}")
        fits = {}
        for t, f in d["fits"].items():
            unknown = set(f) - set(COEFFS) - {"knee"}
            if unknown or "a" not in f:
                raise ValueError(f"cost model file: fits[{t}] needs 'a' and only {', '.join(COEFFS)} and knee; "
                                 f"got {sorted(f)}")
            fits[int(t)] = Fit(**{k: int(v) if k == "knee" else float(v) for k, v in f.items()})
        return cls(fits, int(d.get("cores", 0)), str(d.get("name", "")), str(d.get("source", "")),
                   dict(d.get("engine") or {}), dict(d.get("fit_error") or {}),
                   co_run_slowdown=float(d.get("co_run_slowdown", 0.0)),
                   oversubscribed_slowdown=float(d.get("oversubscribed_slowdown", 0.0)),
                   serving={str(k): float(v) for k, v in (d.get("serving") or {}).items() if k in SERVING_PARTS},
                   latency={str(k): float(v) for k, v in (d.get("latency") or {}).items() if k in LATENCY_KEYS},
                   latency_spread=tuple(float(x) for x in d.get("latency_spread") or ()))


def load_cost_model(spec: str | Path) -> CostModel:
    """A cost model from a file path, or a bundled one by name (``bundled_names()``: ``cpu-smollm2``,
    ``gpu-h100-llama3-8b`` and the earlier CPU calibrations)."""
    path = Path(spec)
    if not path.exists():
        path = BUNDLED / f"{spec}.json"
        if not path.exists():
            raise ValueError(f"cost model {spec!r}: no such file, and no bundled model of that name "
                             f"(bundled: {', '.join(bundled_names())})")
    text = path.read_text()
    if path.suffix in (".yaml", ".yml"):
        import yaml

        data = yaml.safe_load(text)
    else:
        data = json.loads(text)
    return CostModel.from_json(data)
