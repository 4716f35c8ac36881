"""Coordinators: the I/O-free state machines behind consumer groups (`group/`), transactions
(`txn/`) and share groups (`share/`).

A coordinator shard owns the state of one partition of an internal topic. Handlers take a
request and return a response plus the records to append; replaying a record is how the
persisted state changes, so loading a partition at start-up is replaying it.
"""
