"""One module per Kafka API; importing this package registers every handler."""

from strom.server.handlers import (  # noqa: F401
    api_versions,
    fetch,
    list_offsets,
    metadata,
    produce,
)
