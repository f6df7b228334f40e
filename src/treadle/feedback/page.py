"""The review page at ``/review``: a login form (a reviewer key -> a signed session cookie), then the queue,
one item at a time with its conversation and feedback, approve / correct / reject / label, keyboard
shortcuts and progress. Plain server-rendered HTML; ``static/review.js`` talks to ``/review/api``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from treadle.feedback.review import REJECT_REASONS
from treadle.feedback.sessions import COOKIE, SessionSigner

STATIC = Path(__file__).parent / "static"

_LOGIN = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Treadle review: sign in</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{css}</style></head>
<body class="login"><form method="post" action="/review/login" class="card" id="login-form">
<h1>Treadle review</h1><p>Sign in with your reviewer key.</p>{error}
<label for="key">API key</label><input id="key" name="key" type="password" autocomplete="off" autofocus>
<button type="submit" id="login">Sign in</button></form></body></html>"""

_APP = """<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Treadle review</title>
<meta name="viewport" content="width=device-width, initial-scale=1"><style>{css}</style></head>
<body data-reasons="{reasons}">
<header><strong>Treadle review</strong><span id="progress-text"></span>
<div class="bar"><div id="progress-bar"></div></div>
<span class="who">{user} ({role})</span>
<form method="post" action="/review/logout"><button id="logout">Sign out</button></form></header>
<main><aside><h2>Queue</h2><ol id="queue"></ol></aside>
<section id="item"><p class="empty">Loading…</p></section></main>
<footer><kbd>a</kbd> approve · <kbd>c</kbd> correct · <kbd>r</kbd> reject (<kbd>1</kbd>–<kbd>4</kbd> reason) ·
<kbd>l</kbd> label · <kbd>j</kbd>/<kbd>k</kbd> next/previous · <kbd>Ctrl</kbd>+<kbd>Enter</kbd> save ·
<kbd>Esc</kbd> cancel</footer>
<script>{js}</script></body></html>"""


def _asset(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


def login_page(error: str = "") -> str:
    err = f'<p class="error" id="login-error">{html.escape(error)}</p>' if error else ""
    return _LOGIN.format(css=_asset("review.css"), error=err)


def app_page(user: str, role: str) -> str:
    return _APP.format(css=_asset("review.css"), js=_asset("review.js"), user=html.escape(user),
                       role=html.escape(role), reasons=",".join(REJECT_REASONS))


def add_page_routes(app: Any, svc: Any, signer: SessionSigner) -> None:
    @app.get("/review")
    async def review_page(request: Request) -> Response:
        p = signer.verify(request.cookies.get(COOKIE))
        if p is None and svc.keys.open:
            p = svc.keys.lookup("")
        if p is None:
            return HTMLResponse(login_page())
        if not p.can("reviewer"):
            return HTMLResponse(login_page(f"{p.user} is not a reviewer."), status_code=403)
        return HTMLResponse(app_page(p.user, p.role), headers={"Cache-Control": "no-store"})

    @app.post("/review/login")
    async def login(request: Request) -> Response:
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        key = (form.get("key") or [""])[0].strip()
        p = svc.keys.lookup(key) if key else None
        if p is None:
            return HTMLResponse(login_page("Unknown key."), status_code=401)
        if not p.can("reviewer"):
            return HTMLResponse(login_page(f"{p.user} has the role {p.role}: reviewing needs reviewer or admin."),
                                status_code=403)
        resp = RedirectResponse("/review", status_code=303)
        resp.set_cookie(COOKIE, signer.make(p), max_age=signer.max_age_s, httponly=True, samesite="strict",
                        path="/review")
        return resp

    @app.post("/review/logout")
    async def logout(request: Request) -> Response:
        resp = RedirectResponse("/review", status_code=303)
        resp.delete_cookie(COOKIE, path="/review")
        return resp
