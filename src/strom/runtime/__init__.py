"""The broker's long-lived services, between the request handlers and the I/O-free layers.

The coordinator runtimes put the coordinator shards on their internal topics' partitions
(append, replay, timers, leadership moves); the purgatory parks requests until their condition
holds; the cleaner runtime runs log compaction passes in cleaner threads; in cluster mode the
cluster runtime keeps the ZooKeeper session, the controller and the replica manager. They know
the broker through the protocols of `host.py` only, so this package never imports
`strom.server`.
"""
