"""Strom: an Apache Kafka-compatible event streaming broker.

Layers, from the bottom: `protocol` (sans-IO codecs), `storage` (partition logs in Kafka's
on-disk format), `cluster` and `replication` (metadata, ZooKeeper, followers), `coordinator`
(I/O-free group and transaction state machines), `runtime` (the broker's long-lived services),
`server` (network, dispatch, one handler per API) and `cli` (`strom serve`). Imports only go
down; docs/internals.md has the module contracts.
"""
