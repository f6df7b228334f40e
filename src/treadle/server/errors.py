"""OpenAI's error JSON: ``{"error": {"message", "type", "param", "code"}}`` with the right status."""

from __future__ import annotations

import re

from starlette.responses import JSONResponse

_TYPES = {
    400: "invalid_request_error",
    401: "invalid_request_error",
    404: "invalid_request_error",
    405: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "server_error",
    503: "service_unavailable",
    504: "server_error",
}
# Seconds a client should wait before retrying (the Retry-After header of 429 and 503 answers).
RETRY_AFTER_S = {429: 1, 503: 5}


class ApiError(Exception):
    """An error answered as OpenAI's JSON. (Not a frozen dataclass: frameworks set attributes
    such as ``__traceback__`` on exceptions.)"""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    def __str__(self) -> str:
        return self.message

    def body(self) -> dict:
        return {
            "error": {
                "message": self.message,
                "type": _TYPES.get(self.status, "server_error" if self.status >= 500 else "invalid_request_error"),
                "param": self.param,
                "code": self.code,
            }
        }

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        if self.status in RETRY_AFTER_S:
            headers = {"Retry-After": str(RETRY_AFTER_S[self.status]), **(headers or {})}
        return JSONResponse(self.body(), status_code=self.status, headers=headers)

    @classmethod
    def bad_param(cls, param: str | None, message: str, code: str | None = None) -> ApiError:
        return cls(400, message, param, code)

    @classmethod
    def from_value_error(cls, e: ValueError, known: frozenset[str] = frozenset()) -> ApiError:
        """A ValueError from SamplingParams or the engine names its field first: use it as param."""
        message = str(e)
        m = re.match(r"([a-z_]+)\b", message)
        param = m.group(1) if m and m.group(1) in known else None
        code = "context_length_exceeded" if "max_model_len" in message else None
        return cls(400, message, param, code)


def not_found_model(model: str, served: str) -> ApiError:
    return ApiError(404, f"The model `{model}` does not exist. This server serves `{served}`.", "model",
                    "model_not_found")


def unavailable(message: str, code: str) -> ApiError:
    return ApiError(503, message, None, code)
