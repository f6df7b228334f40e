"""HTTP routes: ``POST /v1/feedback`` and the review API under ``/review/api`` (JSON, for the page's script
and for clients with a reviewer key); the page itself is :mod:`treadle.feedback.page`.
``POST /review/api/enqueue`` (admin role) puts logged responses on the queue by hand (reason ``manual`` or
``red_team``: a red-team campaign's responses all go to review, whatever their thumbs).
``POST /review/api/withdraw`` (admin role) takes back a reviewer's actions (:mod:`treadle.feedback.withdraw`).

Every write answers only after its transaction committed. Errors are OpenAI error JSON: 400 names the
field, 401 no or wrong key, 403 wrong role, 404 unknown id, 409 already decided.
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from treadle.feedback import review
from treadle.feedback.errors import FeedbackError, forbidden
from treadle.feedback.roles import Principal, bearer_token
from treadle.feedback.sessions import COOKIE, SessionSigner
from treadle.feedback.submit import submit_feedback
from treadle.server.body import load_json_object
from treadle.server.errors import ApiError


def error(e: FeedbackError) -> Response:
    return ApiError(e.status, e.message, e.param, e.code).response()


async def in_thread(fn: Any, *args: Any) -> Any:
    """Run a store operation on a worker thread; a store outage becomes FeedbackError(503)."""
    from sqlalchemy.exc import OperationalError
    from sqlalchemy.exc import TimeoutError as PoolTimeout

    try:
        return await asyncio.to_thread(fn, *args)
    except (OperationalError, PoolTimeout) as e:
        raise FeedbackError(503, f"The feedback store is unavailable; retry later ({type(e).__name__}).", None,
                            "store_unavailable") from e


async def json_body(request: Request) -> Any:
    """The body as a JSON object, read through the server's safe parser (no 500 for any body)."""
    try:
        return load_json_object(await request.body())
    except ApiError as e:
        raise FeedbackError(e.status, e.message, e.param, e.code) from None


def reviewer(request: Request, svc: Any, signer: SessionSigner) -> Principal:
    """The caller of a review route: the session cookie, else a bearer key; reviewer role at least."""
    p = signer.verify(request.cookies.get(COOKIE))
    if p is None:
        token = bearer_token(request.headers)
        p = svc.keys.lookup(token) if (token or svc.keys.open) else None
        if p is None:
            raise FeedbackError(401, "Sign in at /review or send 'Authorization: Bearer <reviewer key>'.", None,
                                "invalid_api_key")
    if not p.can("reviewer"):
        raise FeedbackError(403, f"{p.user} has the role {p.role}: the review queue needs reviewer or admin.", None,
                            "forbidden")
    return p


def add_routes(app: Any, svc: Any) -> None:
    signer = SessionSigner()
    app.state.review_signer = signer

    @app.post("/v1/feedback")
    async def feedback(request: Request) -> Response:
        try:
            payload = await json_body(request)
            out = await in_thread(submit_feedback, svc.store, svc.principal(request), payload,
                                          svc.config.reviews_per_item, svc.flush_log)
        except FeedbackError as e:
            return error(e)
        return JSONResponse(out)

    @app.get("/review/api/queue")
    async def review_queue(request: Request) -> Response:
        try:
            p = reviewer(request, svc, signer)
            limit, offset = _int_param(request, "limit", 50), _int_param(request, "offset", 0)
            return JSONResponse(await in_thread(_queue, svc, p, limit, offset))
        except FeedbackError as e:
            return error(e)

    @app.get("/review/api/items/{item_id}")
    async def review_item(request: Request, item_id: int) -> Response:
        try:
            reviewer(request, svc, signer)
            return JSONResponse(await in_thread(_item, svc, item_id))
        except FeedbackError as e:
            return error(e)

    @app.post("/review/api/items/{item_id}")
    async def review_act(request: Request, item_id: int) -> Response:
        try:
            p = reviewer(request, svc, signer)
            body = await json_body(request)
            if not isinstance(body, dict):
                raise FeedbackError(400, "The request body must be a JSON object")
            out = await in_thread(_act, svc, item_id, p, body)
        except FeedbackError as e:
            return error(e)
        return JSONResponse(out)

    async def admin_call(request: Request, what: str, fn: Any) -> Response:
        """An admin-only route: the caller (403 below admin, naming ``what``), its JSON body, ``fn(principal, body)``
        in a thread."""
        try:
            p = reviewer(request, svc, signer)
            if not p.can("admin"):
                raise forbidden(f"{p.user} has the role {p.role}: {what} needs admin.")
            body = await json_body(request)
            out = await in_thread(fn, p, body)
        except FeedbackError as e:
            return error(e)
        return JSONResponse(out)

    @app.post("/review/api/enqueue")
    async def review_enqueue(request: Request) -> Response:
        return await admin_call(request, "queueing responses", lambda _p, body: _enqueue(svc, body))

    @app.post("/review/api/withdraw")
    async def review_withdraw(request: Request) -> Response:
        return await admin_call(request, "withdrawing reviews", lambda p, body: _withdraw(svc, p, body))

    from treadle.feedback.page import add_page_routes

    add_page_routes(app, svc, signer)


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name, str(default))
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise FeedbackError(400, f"{name} must be a non-negative integer, got {raw!r}", name)
    return value


def _queue(svc: Any, p: Principal, limit: int, offset: int = 0) -> dict:
    with svc.store.session() as s:
        items = review.queue(s, reviewer=p.user, limit=limit, offset=offset)
        return {"reviewer": p.user, "role": p.role, "progress": review.progress(s, p.user),
                "items": [{"id": i.id, "response_id": i.response_id, "reasons": i.reasons, "status": i.status}
                          for i in items]}


def _item(svc: Any, item_id: int) -> dict:
    with svc.store.session() as s:
        return review.item_json(s, review.get_item(s, item_id))


def _act(svc: Any, item_id: int, p: Principal, body: dict) -> dict:
    for k in body:
        if k not in ("action", "reply", "reason", "label"):
            raise FeedbackError(400, f"Unknown field {k!r}; a review action takes action, reply, reason, label", k)
    with svc.store.session() as s:
        item = review.act(s, item_id, p, str(body.get("action")), body.get("reply"), body.get("reason"),
                          body.get("label"))
        out = review.item_json(s, item)
    return out  # after the commit


def _enqueue(svc: Any, body: Any) -> dict:
    """Queue every listed response (all or none: an unknown id is a 404 and nothing is queued)."""
    if not isinstance(body, dict):
        raise FeedbackError(400, "The request body must be a JSON object")
    for k in body:
        if k not in ("response_ids", "reason", "required_reviews"):
            raise FeedbackError(400, f"Unknown field {k!r}; enqueue takes response_ids, reason, required_reviews", k)
    ids = body.get("response_ids")
    if not isinstance(ids, list) or not ids or not all(isinstance(i, str) and i for i in ids) or len(ids) > 1000:
        raise FeedbackError(400, "response_ids must be a list of 1 to 1000 response ids (strings)", "response_ids")
    reason = body.get("reason", "manual")
    if reason not in review.HAND_REASONS:
        raise FeedbackError(400, f"reason must be one of {list(review.HAND_REASONS)}, got {reason!r}", "reason")
    n = body.get("required_reviews", svc.config.reviews_per_item)
    if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 10:
        raise FeedbackError(400, "required_reviews must be an integer from 1 to 10", "required_reviews")
    with svc.store.session() as s:
        items = review.enqueue_many(s, ids, reason, n)
        out = {"items": [{"id": i.id, "response_id": i.response_id, "status": i.status, "reasons": i.reasons}
                         for i in items]}
    return out  # after the commit


def _withdraw(svc: Any, p: Principal, body: Any) -> dict:
    """Withdraw a reviewer's actions (admin; :mod:`treadle.feedback.withdraw`), after the commit."""
    from treadle.feedback.withdraw import parse_time, withdraw

    if not isinstance(body, dict):
        raise FeedbackError(400, "The request body must be a JSON object")
    fields = ("reviewer", "reason", "since", "until", "label", "dry_run")
    for k in body:
        if k not in fields:
            raise FeedbackError(400, f"Unknown field {k!r}; withdraw takes {', '.join(fields)}", k)
    for k in fields[:5]:
        if body.get(k) is not None and not isinstance(body[k], str):
            raise FeedbackError(400, f"{k} must be a string", k)
    if not isinstance(body.get("dry_run", False), bool):
        raise FeedbackError(400, "dry_run must be true or false", "dry_run")
    with svc.store.session() as s:
        res = withdraw(s, p, body.get("reviewer") or "", body.get("reason") or "", parse_time(body.get("since"), "since"),
                       parse_time(body.get("until"), "until"), body.get("label"), bool(body.get("dry_run", False)))
    return res.json()
