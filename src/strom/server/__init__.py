"""The network side of the broker: the asyncio listener and connections, request dispatch in
order, fetch sessions, one handler module per Kafka API (`handlers/`), and `Broker`, which
owns the partition logs and builds the runtimes."""
