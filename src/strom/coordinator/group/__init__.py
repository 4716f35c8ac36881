"""The group coordinator: consumer groups (classic and KIP-848 protocols) and their offsets.

`GroupCoordinatorShard` (shard.py) is the entry point: the state of one `__consumer_offsets`
partition, driven by the runtime through request handlers, `replay`, `tick` and `unload`.
"""

from strom.coordinator.group.config import GroupConfig, NoTopics, TopicsView
from strom.coordinator.group.records import CoordinatorRecord
from strom.coordinator.group.shard import GroupCoordinatorShard

__all__ = ["CoordinatorRecord", "GroupConfig", "GroupCoordinatorShard", "NoTopics", "TopicsView"]
