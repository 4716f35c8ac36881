"""The client's errors: what went wrong, in words a user of the CLI can act on."""

from __future__ import annotations

from strom.protocol.errors import ErrorCode

# Errors after which asking again (after a metadata refresh) may succeed, as Kafka's
# RetriableException subclasses mark them.
RETRIABLE = frozenset(
    {
        ErrorCode.LEADER_NOT_AVAILABLE,
        ErrorCode.NOT_LEADER_OR_FOLLOWER,
        ErrorCode.REQUEST_TIMED_OUT,
        ErrorCode.NETWORK_EXCEPTION,
        ErrorCode.COORDINATOR_LOAD_IN_PROGRESS,
        ErrorCode.COORDINATOR_NOT_AVAILABLE,
        ErrorCode.NOT_COORDINATOR,
        ErrorCode.NOT_ENOUGH_REPLICAS,
        ErrorCode.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
        ErrorCode.KAFKA_STORAGE_ERROR,
        ErrorCode.FENCED_LEADER_EPOCH,
        ErrorCode.UNKNOWN_LEADER_EPOCH,
        ErrorCode.OFFSET_NOT_AVAILABLE,
        ErrorCode.REPLICA_NOT_AVAILABLE,
        ErrorCode.CONCURRENT_TRANSACTIONS,
    }
)


def error_name(code: int) -> str:
    try:
        return ErrorCode(code).name
    except ValueError:
        return f"error code {code}"


class ClientError(Exception):
    """Anything the client cannot do; the message is one line for a person."""


class BrokerUnreachableError(ClientError):
    """No connection to a broker (refused, timed out, closed, not a Kafka broker)."""


class UnsupportedByBrokerError(ClientError):
    """The broker does not answer an API (or any version of it this client speaks)."""


class KafkaError(ClientError):
    """A Kafka error code in a response."""

    def __init__(self, code: int, what: str, message: str | None = None) -> None:
        self.code = code
        self.what = what
        self.broker_message = message
        text = f"{what}: {error_name(code)}"
        if message:
            text += f" ({message})"
        super().__init__(text)

    @property
    def retriable(self) -> bool:
        return self.code in RETRIABLE


def check(code: int, what: str, message: str | None = None) -> None:
    """Raise a `KafkaError` for a non-zero error code."""
    if code != ErrorCode.NONE:
        raise KafkaError(code, what, message)
