"""The network side of the broker: the asyncio listener and connections, request dispatch in
order, fetch sessions, one handler module per Kafka API (`handlers/`), the HTTP listener with
metrics and the web console (`http/`), and `Broker` (broker.py and the parts it is made of),
which owns the partition logs and builds the runtimes."""
