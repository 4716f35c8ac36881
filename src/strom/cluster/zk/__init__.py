"""Cluster metadata in ZooKeeper, as Kafka's ZooKeeper mode keeps it.

- `layout`: znode paths and JSON payload codecs (byte-compatible with Kafka 3.x where it matters).
- `client`: a small asyncio wrapper over kazoo (thread pool for calls, callbacks on the loop,
  ephemerals re-created in a new session).
- `store`: typed reads and writes of the layout, with the controller-epoch fence.
- `controller_logic`: replica placement and leader elections, pure functions.
- `context`: the active controller's cache and the listener interface for the local broker.
- `controller`: controller election and the event loop that applies `controller_logic`.
"""
