"""The handler registry: which API keys and versions this broker answers.

Each handler module registers itself with `@handles(api_key, min_version, max_version)`.
ApiVersions answers from this table, so the broker never advertises an API it cannot serve.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from strom.server.context import RequestContext

# A handler answers with a response message, with None when the protocol wants no answer
# (Produce with acks=0), or with an awaitable of either when it must wait (purgatory).
HandlerResult = Any
HandlerFn = Callable[["RequestContext", Any], HandlerResult]


@dataclass(frozen=True, slots=True)
class Handler:
    api_key: int
    min_version: int
    max_version: int
    fn: HandlerFn


HANDLERS: dict[int, Handler] = {}


class CloseConnection(Exception):
    """Raised by a handler whose answer, as Kafka's, is to close the connection; the message
    says why (logged)."""


def handles(api_key: int, min_version: int, max_version: int) -> Callable[[HandlerFn], HandlerFn]:
    def register(fn: HandlerFn) -> HandlerFn:
        if api_key in HANDLERS:
            raise RuntimeError(f"two handlers for api key {api_key}")
        HANDLERS[api_key] = Handler(api_key, min_version, max_version, fn)
        return fn

    return register


def is_awaitable(result: HandlerResult) -> bool:
    return isinstance(result, Awaitable)
