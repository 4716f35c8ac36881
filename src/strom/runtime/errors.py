"""An error that a handler turns into a Kafka error code (and message) in its response."""

from __future__ import annotations

from strom.protocol.errors import ErrorCode


class ApiError(Exception):
    def __init__(self, code: ErrorCode, message: str | None = None) -> None:
        super().__init__(message or code.name)
        self.code = code
        self.message = message
