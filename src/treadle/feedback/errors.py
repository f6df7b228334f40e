"""Errors of the feedback and review operations: an HTTP status and the field at fault.

The API turns them into OpenAI error JSON; the CLI prints the message.
"""

from __future__ import annotations


class FeedbackError(ValueError):
    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def bad(param: str | None, message: str) -> FeedbackError:
    return FeedbackError(400, message, param, "invalid_value")


def not_found(what: str, value: object, param: str) -> FeedbackError:
    return FeedbackError(404, f"No {what} {value!r}.", param, "not_found")


def forbidden(message: str) -> FeedbackError:
    return FeedbackError(403, message, None, "forbidden")
