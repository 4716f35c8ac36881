"""What the active controller's steps (controller_events, controller_tasks, controller_writes,
alter_partition) use of the controller: its ZooKeeper client and store, settings, the broker
channel, the listener, and its event queue. `ZkController` (controller.py) provides it; the
steps depend on this protocol and not on the class that imports them, so the imports only go
one way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Protocol

from strom.cluster.zk.client import ZkClient
from strom.cluster.zk.context import ControllerContext, ControllerListener
from strom.cluster.zk.controller_channel import ControllerChannelManager
from strom.cluster.zk.store import ZkClusterStore


class ControllerHost(Protocol):
    client: ZkClient
    store: ZkClusterStore
    broker_id: int
    listener: ControllerListener
    channel: ControllerChannelManager | None
    unclean_default: bool
    delete_topic_enable: bool
    auto_leader_rebalance_enable: bool
    leader_imbalance_check_interval_s: float
    leader_imbalance_per_broker_percentage: float
    # Leader changes written as controller (for /metrics), counted by the steps.
    leader_elections: int
    # The context while this broker is the active controller; a step that awaited checks it
    # is still the same before it tells anyone what it did.
    _ctx: ControllerContext | None
    _rebalance_timer: asyncio.TimerHandle | None

    def _enqueue(self, name: str, handler: Callable[[], Awaitable[object]]) -> None: ...

    def _schedule_resync(self, delay: float = 0.5) -> None: ...

    def _active_handler(
        self, fn: Callable[[ControllerContext], Awaitable[object]]
    ) -> Callable[[], Awaitable[object]]: ...
