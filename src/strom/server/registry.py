"""The handler registry: which API keys and versions this broker answers.

Each handler module registers itself with `@handles(api_key, min_version, max_version)` when
it is imported; `handler_for` imports the module that handler_index.py names for a key on
the first request for it. ApiVersions answers from that index, which a test holds to the
decorators, so the broker never advertises an API it cannot serve.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from strom.server.handler_index import HANDLER_INDEX

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


class HandlerTable:
    """The handlers by API key. Looking up a key of the index whose module is not imported
    yet imports it (its `@handles` registers the handler)."""

    def __init__(self) -> None:
        self._registered: dict[int, Handler] = {}

    def register(self, handler: Handler) -> None:
        if handler.api_key in self._registered:
            raise RuntimeError(f"two handlers for api key {handler.api_key}")
        self._registered[handler.api_key] = handler

    def get(self, api_key: int) -> Handler | None:
        handler = self._registered.get(api_key)
        if handler is None:
            entry = HANDLER_INDEX.get(api_key)
            if entry is None:
                return None
            importlib.import_module(f"strom.server.handlers.{entry[0]}")
            handler = self._registered.get(api_key)
        return handler

    def registered(self) -> dict[int, Handler]:
        """The handlers of the modules imported so far."""
        return dict(self._registered)

    def __getitem__(self, api_key: int) -> Handler:
        handler = self.get(api_key)
        if handler is None:
            raise KeyError(api_key)
        return handler


HANDLERS = HandlerTable()


class CloseConnection(Exception):
    """Raised by a handler whose answer, as Kafka's, is to close the connection; the message
    says why (logged)."""


def handles(api_key: int, min_version: int, max_version: int) -> Callable[[HandlerFn], HandlerFn]:
    def register(fn: HandlerFn) -> HandlerFn:
        HANDLERS.register(Handler(api_key, min_version, max_version, fn))
        return fn

    return register


def handler_for(api_key: int) -> Handler | None:
    """The handler of `api_key` (its module imported on first use); None for a key no handler
    answers."""
    return HANDLERS.get(api_key)


def import_all_handlers() -> None:
    """Import every handler module now (a process that forks brokers, tests that list them)."""
    for module in sorted({entry[0] for entry in HANDLER_INDEX.values()}):
        importlib.import_module(f"strom.server.handlers.{module}")


def is_awaitable(result: HandlerResult) -> bool:
    return isinstance(result, Awaitable)
