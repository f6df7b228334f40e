"""Forward one OpenAI request to a replica chosen by the policy; relay its answer (JSON or SSE).

Retries: a request goes to another replica (never one it already tried, at most ``max_attempts``
in all) when the replica cannot be reached, answers 429 or 503, or its stream breaks before the
first token (or a whole JSON answer breaks before it is relayed). Until then nothing has reached
the client: the first events of a stream (e.g. the chat role chunk) are held back until one
carries a token. After that, a broken stream is continued on another replica from the tokens
already delivered (``failover.StreamState``: replicas are asked for token ids, which the client
does not see unless it asked); a stream that cannot be continued ends with a ``server_error``
event and ``data: [DONE]``. A connect timeout is a connection failure (retried); other timeouts are not
retried (the replica may still be working on the request): 504, or an error event mid-stream.

Each request holds one unit of its replica's ``inflight`` from send to the last byte relayed, so
draining a replica waits for exactly the requests it is serving.

Models: a request goes only to replicas whose ``/v1/models`` lists its ``model`` (base or LoRA
adapter); a ``model`` that is a route alias (``treadle.gateway.routes``) is first replaced by the
version the route picks for the request's user, and the decision is counted per version.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator
from typing import Any

import httpx
from starlette.requests import Request
from starlette.responses import Response

from treadle.gateway.failover import StreamState
from treadle.gateway.metrics import GatewayMetrics
from treadle.gateway.policies import Decision, RouteRequest, RoutingPolicy
from treadle.gateway.prefix import PrefixHasher
from treadle.gateway.replicas import Replica, ReplicaSet
from treadle.gateway.routes import RouteTable, user_key
from treadle.gateway.sse_relay import Hold, RelayedStream, cached_tokens, read_until_token
from treadle.server.body import load_json_object
from treadle.server.errors import ApiError, unavailable
from treadle.server.responses import sse
from treadle.server.streams import ClientDisconnected, cancel_on_disconnect
from treadle.server.timing import gateway_ttft

log = logging.getLogger("treadle.gateway")
decision_log = logging.getLogger("treadle.gateway.decisions")  # DEBUG: every routing decision and its loads
RETRY_STATUSES = (429, 503)


class Proxy:
    def __init__(self, replicas: ReplicaSet, policy: RoutingPolicy, metrics: GatewayMetrics,
                 client: httpx.AsyncClient, hasher: PrefixHasher | None = None, max_attempts: int = 3,
                 request_timeout_s: float = 600.0, replica_api_key: str | None = None) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {max_attempts}")
        self.replicas, self.policy, self.metrics, self.client = replicas, policy, metrics, client
        self.hasher, self.max_attempts, self.timeout_s = hasher, max_attempts, request_timeout_s
        self.replica_api_key = replica_api_key
        self.ttft_log: deque[tuple[float, float]] = deque(maxlen=4096)  # (monotonic time, TTFT s), streams
        self.routes = RouteTable()
        self.recorder: Any = None  # treadle.feedback.service.FeedbackService: logs each relayed response

    def model_ids(self) -> list[str]:
        ids: list[str] = []
        for r in self.replicas.replicas.values():
            for card in r.models:
                if card.get("id") not in ids:
                    ids.append(card.get("id"))
        return ids

    def _headers(self, rid: str) -> dict[str, str]:
        h = {"content-type": "application/json", "x-request-id": rid}
        if self.replica_api_key:
            h["authorization"] = f"Bearer {self.replica_api_key}"
        return h

    async def handle(self, request: Request, path: str, chat: bool) -> Response:
        t0 = time.monotonic()
        raw = await request.body()
        body = load_json_object(raw)
        rid = request.headers.get("x-request-id") or uuid.uuid4().hex
        model, alias = self.routes.resolve(body.get("model"), user_key(body, request.headers, rid))
        if alias is not None:
            self.metrics.route_decisions.labels(alias, model).inc()
            body["model"] = model
            raw = json.dumps(body).encode()
        ids = self.model_ids()
        if model is not None and ids and model not in ids:
            served = ", ".join([*ids, *self.routes.routes])
            raise ApiError(404, f"The model `{model}`{f' (route {alias!r})' if alias else ''} does not exist. "
                           f"This gateway serves {served}.", "model", "model_not_found")
        route = RouteRequest()
        if self.policy.needs_prefix and self.hasher:
            card = next((c for r in self.replicas.routable() if model and (c := r.card(model))), None)
            route = self.hasher.route_request(body, chat, card)
        state = StreamState(body, chat) if body.get("stream") is True else None
        if state is not None and state.continuable and not state.client_wants_ids:
            raw = json.dumps({**body, "return_token_ids": True}, ensure_ascii=False).encode()
        try:
            async with cancel_on_disconnect(request.receive), asyncio.timeout(self.timeout_s):
                rec = self.recorder.gateway_record(request, body, chat) if self.recorder is not None else None
                return await self._attempts(raw, bool(body.get("stream")), route, path, rid, t0, model, rec,
                                            state)
        except TimeoutError:
            raise ApiError(504, f"The request timed out after {self.timeout_s:g} s (--request-timeout).",
                           None, "timeout") from None

    async def _attempts(self, raw: bytes, stream: bool, route: RouteRequest, path: str, rid: str,
                        t0: float, model: str | None = None, rec: Any = None, state: StreamState | None = None
                        ) -> Response:
        tried: set[str] = set()
        last: Response | None = None
        for _ in range(self.max_attempts):
            cands, last_resort = self.replicas.candidates(model, tried)
            if not cands:
                break
            loads = [r.load() for r in cands]
            d = self.policy.choose(route, loads)
            self.metrics.decisions.labels(self.policy.name, d.reason).inc()
            if last_resort:
                self._last_resort(d.replica_id, rid)
            if decision_log.isEnabledFor(logging.DEBUG):  # each decision with the loads it saw
                decision_log.debug("%s block0 %s -> %s (%s, %d blocks) loads %s", rid,
                                   route.block_hashes[0].hex()[:8] if route.block_hashes else "-", d.replica_id,
                                   d.reason, d.matched_blocks,
                                   " ".join(f"{x.replica_id}:{x.inflight}+{x.waiting}" for x in loads))
            r = self.replicas.replicas[d.replica_id]
            tried.add(r.replica_id)
            r.inflight += 1
            self.policy.on_routed(route, d)
            held = Hold(r)
            try:
                resp, retry_reason, last = await self._send(r, raw, stream, path, rid)
                if resp is None:
                    self.metrics.retries.labels(r.replica_id, retry_reason).inc()
                    continue
                if not stream or resp.status_code != 200:
                    try:
                        return await self._whole(r, resp, route, d, t0, rec)
                    except httpx.TransportError as e:  # the body broke before any byte was relayed
                        self.replicas.mark_failed(r, f"response broke before it was relayed: {e!r}")
                        self.metrics.retries.labels(r.replica_id, "stream_start").inc()
                        last = unavailable(f"replica {r.replica_id} failed before answering", "replica_failed"
                                           ).response()
                        continue
                lines = resp.aiter_lines()
                try:
                    first = await read_until_token(lines)
                except httpx.TransportError as e:
                    await resp.aclose()
                    self.replicas.mark_failed(r, f"stream broke before the first token: {e!r}")
                    self.metrics.retries.labels(r.replica_id, "stream_start").inc()
                    last = unavailable(f"replica {r.replica_id} failed before streaming", "replica_failed").response()
                    continue
                held.keep = True  # the relay (or the response's cleanup) releases it
                relay = self._relay(r, resp, lines, first, route, d, t0, held, rec, state or StreamState({}, False),
                                    tried, rid)
                return RelayedStream(relay, resp, held,
                               {"Cache-Control": "no-cache", "x-request-id": rid, "x-treadle-replica": r.replica_id})
            except (asyncio.CancelledError, ClientDisconnected):
                self.metrics.routed.labels(r.replica_id, "499").inc()
                raise
            finally:
                held.release_unless_kept()
        if last is not None:
            return last
        self.metrics.rejected.labels("503", "no_replica").inc()
        return unavailable("No replica is available to serve the request; retry later.", "no_replica").response()

    def _last_resort(self, replica_id: str, rid: str) -> None:
        """Count and log a request sent to a draining replica (no healthy one served its model)."""
        self.metrics.draining_fallbacks.labels(replica_id).inc()
        log.warning("request %s sent to draining replica %s: no healthy replica serves its model", rid, replica_id)

    async def _send(self, r: Replica, raw: bytes, stream: bool, path: str, rid: str
                    ) -> tuple[httpx.Response | None, str, Response | None]:
        """(response, "", None) to use it; (None, retry reason, response to give if nothing else works)."""
        req = self.client.build_request("POST", f"{r.url}{path}", content=raw, headers=self._headers(rid))
        try:
            resp = await self.client.send(req, stream=True)
        except httpx.TransportError as e:
            if isinstance(e, httpx.TimeoutException) and not isinstance(e, httpx.ConnectTimeout):
                raise TimeoutError from None  # the replica may be working on it: not retried
            self.replicas.mark_failed(r, f"request failed: {e!r}")
            return None, "connect", unavailable(f"replica {r.replica_id} is unreachable", "replica_failed").response()
        if resp.status_code in RETRY_STATUSES:
            content = await resp.aread()
            await resp.aclose()
            self.metrics.routed.labels(r.replica_id, str(resp.status_code)).inc()
            headers = {"x-treadle-replica": r.replica_id}
            if "retry-after" in resp.headers:
                headers["Retry-After"] = resp.headers["retry-after"]
            keep = Response(content, resp.status_code, media_type="application/json", headers=headers)
            return None, str(resp.status_code), keep
        return resp, "", None

    async def _whole(self, r: Replica, resp: httpx.Response, route: RouteRequest, d: Decision, t0: float,
                     rec: Any = None) -> Response:
        try:
            content = await resp.aread()
        finally:
            await resp.aclose()
        if resp.status_code == 200:
            try:
                cached = cached_tokens(json.loads(content).get("usage"))
            except (ValueError, AttributeError):
                cached = None
            if cached is not None:
                self.policy.on_result(route, d, cached)
            if rec is not None:
                ttft = gateway_ttft(time.monotonic() - t0, resp.headers.get("server-timing"))
                rec.whole(content, r.replica_id, t0, r.models, ttft)
        self.metrics.routed.labels(r.replica_id, str(resp.status_code)).inc()
        self.metrics.e2e.observe(time.monotonic() - t0)
        headers = {k: v for k, v in resp.headers.items()
                   if k.lower() in ("x-request-id", "retry-after", "server-timing")}
        headers["x-treadle-replica"] = r.replica_id
        return Response(content, resp.status_code, headers=headers,
                        media_type=resp.headers.get("content-type", "application/json"))

    async def _relay(self, r: Replica, resp: httpx.Response, lines: AsyncIterator[str], first: list[str],
                     route: RouteRequest, d: Decision, t0: float, held: Hold, rec: Any,
                     state: StreamState, tried: set[str], rid: str) -> AsyncIterator[str]:
        status = "200"
        try:
            for line in first:
                out = state.observe(line)
                if out is not None:
                    if rec is not None:
                        rec.feed(out)
                    yield out + "\n"
            ttft = time.monotonic() - t0
            self.metrics.ttft.observe(ttft)
            self.ttft_log.append((t0 + ttft, ttft))
            deadline = asyncio.get_running_loop().time() + max(0.0, self.timeout_s - (time.monotonic() - t0))
            try:
                async with asyncio.timeout_at(deadline):
                    async for line in lines:
                        if '"cached_tokens"' in line and line.startswith("data:"):
                            self._usage_line(line, route, d)
                        out = state.observe(line)
                        if out is not None:
                            if rec is not None:
                                rec.feed(out)
                            yield out + "\n"
            except (httpx.HTTPError, TimeoutError) as e:
                timed_out = isinstance(e, TimeoutError)
                status = "504" if timed_out else "502"
                if not timed_out:
                    self.replicas.mark_failed(r, f"stream broke: {e!r}")
                log.warning("stream from replica %s ended early: %r", r.replica_id, e)
                if not timed_out and state.finished:  # it broke after its last token: end the stream well
                    status = "200"
                    for line in state.closing_lines():
                        yield line
                    return
                if not timed_out and state.can_continue():
                    done = False
                    try:
                        async with asyncio.timeout_at(deadline):
                            async for line in self._continue(state, tried, rid):
                                done = done or line.strip() == "data: [DONE]"
                                yield line
                    except TimeoutError:
                        timed_out, status = True, "504"
                    if done:  # the continuation ended the stream
                        status = "200"
                        return
                err = (ApiError(504, f"The request timed out after {self.timeout_s:g} s.", None, "timeout")
                       if timed_out else
                       ApiError(502, f"The replica serving this request failed mid-stream ({type(e).__name__}) "
                                "and the stream could not be continued on another replica.", None, "replica_failed"))
                yield "\n" + sse(err.body()) + sse("[DONE]")
            else:
                if rec is not None:
                    rec.finish(r.replica_id, t0, ttft, r.models)
        except (asyncio.CancelledError, GeneratorExit):
            status = "499"
            raise
        finally:
            await resp.aclose()
            held.release()
            self.metrics.routed.labels(r.replica_id, status).inc()
            self.metrics.e2e.observe(time.monotonic() - t0)

    async def _continue(self, state: StreamState, tried: set[str], rid: str) -> AsyncIterator[str]:
        """Continue ``state``'s stream on replicas not tried yet; yields client lines (nothing if none could)."""
        while True:
            cands, last_resort = self.replicas.candidates(state.body.get("model"), tried)
            if not cands or state.continuations >= self.max_attempts:
                return
            body = state.continuation_body()
            if body is None:
                for line in state.length_lines():
                    yield line
                return
            r = min(cands, key=lambda c: c.inflight)
            if last_resort:
                self._last_resort(r.replica_id, rid)
            tried.add(r.replica_id)
            state.continuations += 1
            self.metrics.retries.labels(r.replica_id, "failover").inc()
            log.info("continuing stream %s on replica %s after %d delivered tokens", rid, r.replica_id,
                     len(state.delivered))
            r.inflight += 1
            try:
                req = self.client.build_request("POST", f"{r.url}/v1/completions", headers=self._headers(rid),
                                                content=json.dumps(body, ensure_ascii=False).encode())
                try:
                    resp = await self.client.send(req, stream=True)
                except httpx.TransportError as e:
                    self.replicas.mark_failed(r, f"request failed: {e!r}")
                    continue
                try:
                    if resp.status_code != 200:
                        await resp.aread()
                        continue
                    async for line in resp.aiter_lines():
                        out = state.observe(line, continued=True)
                        if out is not None:
                            yield out + "\n"
                    return
                except httpx.HTTPError as e:
                    self.replicas.mark_failed(r, f"stream broke: {e!r}")
                    if state.finished:
                        for line in state.closing_lines():
                            yield line
                        return
                    if not state.can_continue():
                        return
                finally:
                    await resp.aclose()
            finally:
                r.inflight -= 1

    def _usage_line(self, line: str, route: RouteRequest, d: Decision) -> None:
        try:
            cached = cached_tokens(json.loads(line[5:]).get("usage"))
        except (ValueError, AttributeError):
            return
        if cached is not None:
            self.policy.on_result(route, d, cached)
