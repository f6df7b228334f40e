"""HTTP routes: ``POST /v1/feedback`` and the review API under ``/review/api`` (JSON, for the page's script
and for clients with a reviewer key); the page itself is :mod:`treadle.feedback.page`.

Every write answers only after its transaction committed. Errors are OpenAI error JSON: 400 names the
field, 401 no or wrong key, 403 wrong role, 404 unknown id, 409 already decided.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from treadle.feedback import review
from treadle.feedback.errors import FeedbackError
from treadle.feedback.roles import Principal, bearer_token
from treadle.feedback.sessions import COOKIE, SessionSigner
from treadle.feedback.submit import submit_feedback
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
    try:
        return json.loads(await request.body())
    except (ValueError, UnicodeDecodeError) as e:
        raise FeedbackError(400, f"The request body is not valid JSON: {e}") from e


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
            limit = int(request.query_params.get("limit", "50"))
            return JSONResponse(await in_thread(_queue, svc, p, limit))
        except FeedbackError as e:
            return error(e)
        except ValueError:
            return error(FeedbackError(400, "limit must be an integer", "limit"))

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

    from treadle.feedback.page import add_page_routes

    add_page_routes(app, svc, signer)


def _queue(svc: Any, p: Principal, limit: int) -> dict:
    with svc.store.session() as s:
        items = review.queue(s, reviewer=p.user, limit=limit)
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
