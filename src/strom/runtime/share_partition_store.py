"""The share partitions this broker leads, loaded from and written to their share coordinator.

A share partition (group, topic, partition) is loaded when a ShareFetch or ShareAcknowledge
first names it: ReadShareGroupState (through `SharePersister`, on this broker or another) at
this broker's leader epoch of the partition, which fences the writes of any earlier leader.
A start offset of -1 (the group coordinator initialized the state and left the start to the
leader) is chosen by share.auto.offset.reset and written at once, so that a failover does not
move it. A state never initialized is refused by the coordinator; the fetch reports the error
for that partition and the next one asks again.

Writes (`persist`) carry the whole in-flight window, in order per share partition
(`StateWriter`), with the state epoch read at load and the leader epoch loaded at. A write
the coordinator refuses or that cannot reach it drops the share partition: the next request
loads it again, i.e. it goes back to what the coordinator has (records it had not heard were
acknowledged are delivered again; nothing is lost). A share partition is dropped too when
this broker is no longer the partition's leader or leads it at another leader epoch (it moved
away and back), and when the group's last share session here closes (Kafka's onGroupEmpty).
A new load waits for the writes still under way for the same share partition.

What share partitions keep beyond Kafka's state (issue #16: delays, backoffs, dead-letter
copies) comes in through `ShareExtras`: attached after a load from the state's extension,
written as the extension with every write, detached when the share partition is dropped.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

from strom.coordinator.share.coordinator import (
    UNINITIALIZED_START_OFFSET,
    Outcome,
    ShareState,
    StateKey,
    StateWrite,
)
from strom.coordinator.share.partition import SharePartition, StateBatch
from strom.protocol.errors import ErrorCode
from strom.runtime.share_state_writer import StateWriter

if TYPE_CHECKING:
    from strom.coordinator.share.extension import ShareExtension
    from strom.runtime.host import BrokerHost
    from strom.runtime.share_persister import SharePersister
    from strom.storage.partition_log import PartitionLog

__all__ = ["PartitionKey", "SharePartitionStore", "client_error"]

log = logging.getLogger("strom.share")

PartitionKey = tuple[str, str, int]  # group id, topic name, partition
TopicPartitionKey = tuple[uuid.UUID, str, int]  # topic id, topic name, partition

# What a share consumer is told when the state could not be read or written (Kafka's
# SharePartition.fetchPersisterError).
_CLIENT_ERRORS = {
    ErrorCode.NOT_COORDINATOR: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.COORDINATOR_LOAD_IN_PROGRESS: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.COORDINATOR_NOT_AVAILABLE: ErrorCode.COORDINATOR_NOT_AVAILABLE,
    ErrorCode.FENCED_LEADER_EPOCH: ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.FENCED_STATE_EPOCH: ErrorCode.NOT_LEADER_OR_FOLLOWER,
    ErrorCode.GROUP_ID_NOT_FOUND: ErrorCode.GROUP_ID_NOT_FOUND,
    ErrorCode.UNKNOWN_TOPIC_OR_PARTITION: ErrorCode.UNKNOWN_TOPIC_OR_PARTITION,
}


def client_error(code: ErrorCode) -> ErrorCode:
    if code == ErrorCode.NONE:
        return code
    return _CLIENT_ERRORS.get(code, ErrorCode.UNKNOWN_SERVER_ERROR)


@dataclass
class _Loaded:
    topic_id: uuid.UUID
    leader_epoch: int
    state_epoch: int


MakePartition = Callable[[str, int, list[StateBatch]], SharePartition]
InitialOffset = Callable[[str, "PartitionLog"], int]


class ShareExtras(Protocol):
    def attach(
        self, pk: PartitionKey, sp: SharePartition, state: ShareState | None, plog: PartitionLog
    ) -> None:
        """A share partition was loaded (`state` None: it starts fresh)."""

    def extension(self, sp: SharePartition, token: bytes) -> ShareExtension | None: ...

    def detach(self, pk: PartitionKey, sp: SharePartition) -> ShareExtension | None:
        """The share partition is dropped (a later load starts from the persisted state);
        an extension returned is written once more (its timer files were checkpointed)."""


class SharePartitionStore:
    def __init__(
        self,
        broker: BrokerHost,
        persister: SharePersister,
        make: MakePartition,
        initial_offset: InitialOffset,
        extras: ShareExtras | None = None,
    ) -> None:
        self.broker = broker
        self.persister = persister
        self._make = make
        self._initial_offset = initial_offset
        self.extras = extras
        self.partitions: dict[PartitionKey, SharePartition] = {}
        self._loaded: dict[PartitionKey, _Loaded] = {}
        self._loading: dict[PartitionKey, tuple[int, asyncio.Future[None]]] = {}
        self._errors: dict[PartitionKey, ErrorCode] = {}
        self._writers: dict[PartitionKey, StateWriter] = {}
        self._background: set[asyncio.Future[ErrorCode]] = set()

    # -- loading ---------------------------------------------------------------------------

    def prepare(self, group_id: str, keys: Iterable[TopicPartitionKey]) -> Awaitable[None] | None:
        """Load the share partitions of `keys` this broker leads that are not loaded (or
        were loaded at another leader epoch); None when nothing has to wait."""
        waits = [w for key in keys if (w := self._ensure(group_id, key)) is not None]
        if not waits:
            return None

        async def loaded() -> None:
            # A load that fails or is dropped is reported by `get`, not raised here.
            await asyncio.wait(waits)

        return loaded()

    def get(self, group_id: str, key: TopicPartitionKey) -> tuple[SharePartition | None, ErrorCode]:
        """The loaded share partition, or None and why (the error is reported once)."""
        pk = (group_id, key[1], key[2])
        sp = self.partitions.get(pk)
        if sp is not None:
            return sp, ErrorCode.NONE
        if self._ensure(group_id, key) is not None:
            return None, ErrorCode.NONE  # still loading: nothing to give yet
        sp = self.partitions.get(pk)
        if sp is not None:
            return sp, ErrorCode.NONE
        return None, self._errors.pop(pk, ErrorCode.NONE)

    def _ensure(self, group_id: str, key: TopicPartitionKey) -> asyncio.Future[None] | None:
        topic_id, topic, partition = key
        if not topic:
            return None
        plog = self.broker.partition_log(topic, partition)
        pk = (group_id, topic, partition)
        cluster = self.broker.cluster
        if plog is None or (
            cluster is not None and not cluster.replicas.is_leader(topic, partition)
        ):
            self.drop(pk)
            self._errors[pk] = (
                ErrorCode.UNKNOWN_TOPIC_OR_PARTITION
                if plog is None
                else ErrorCode.NOT_LEADER_OR_FOLLOWER
            )
            return None
        epoch = self.broker.leader_epoch(topic, partition)
        loaded = self._loaded.get(pk)
        if loaded is not None:
            if loaded.leader_epoch == epoch:
                return None
            self.drop(pk)  # led again at a new epoch: the state may have moved on elsewhere
        loading = self._loading.get(pk)
        if loading is not None and loading[0] == epoch:
            return loading[1]
        writer = self._writers.get(pk)
        pending: Awaitable[Outcome] | None = None
        if writer is None or not writer.busy:
            answer = self.persister.read((group_id, topic_id, partition), epoch)
            if not isinstance(answer, Awaitable):
                self._install(pk, topic_id, epoch, answer, plog)
                return None
            pending = answer
        future = asyncio.ensure_future(self._load_later(pk, topic_id, epoch, plog, pending))
        self._loading[pk] = (epoch, future)
        return future

    async def _load_later(
        self,
        pk: PartitionKey,
        topic_id: uuid.UUID,
        epoch: int,
        plog: PartitionLog,
        answer: Awaitable[Outcome] | None,
    ) -> None:
        """Finish a load: the read under way, or one made once the writes of an earlier
        load of the same share partition are done."""
        try:
            if answer is None:
                writer = self._writers.get(pk)
                if writer is not None:
                    await writer.idle()
                read = self.persister.read((pk[0], topic_id, pk[2]), epoch)
                outcome = await read if isinstance(read, Awaitable) else read
            else:
                outcome = await answer
            current = self._loading.get(pk)
            if current is not None and current[0] == epoch:
                self._install(pk, topic_id, epoch, outcome, plog)
        finally:
            current = self._loading.get(pk)
            if current is not None and current[0] == epoch:
                del self._loading[pk]
            self.broker.fetch_purgatory.notify((pk[1], pk[2]))

    def _install(
        self,
        pk: PartitionKey,
        topic_id: uuid.UUID,
        epoch: int,
        outcome: Outcome,
        plog: PartitionLog,
    ) -> None:
        if outcome.error != ErrorCode.NONE or outcome.state is None:
            log.info(
                "share partition %s-%d of group %s not loaded: %s",
                pk[1],
                pk[2],
                pk[0],
                outcome.message or outcome.error.name,
            )
            self._errors[pk] = client_error(outcome.error or ErrorCode.UNKNOWN_SERVER_ERROR)
            return
        state = outcome.state
        fresh = state.start_offset == UNINITIALIZED_START_OFFSET
        start = self._initial_offset(pk[0], plog) if fresh else state.start_offset
        sp = self.partitions[pk] = self._make(pk[0], start, list(state.batches))
        self._loaded[pk] = _Loaded(topic_id, epoch, state.state_epoch)
        self._errors.pop(pk, None)
        if self.extras is not None:
            self.extras.attach(pk, sp, None if fresh else state, plog)
        if fresh:
            # Where the group starts is state too: a failover must not move it.
            self.persist_in_background(pk[0], (topic_id, pk[1], pk[2]))

    # -- writing ---------------------------------------------------------------------------

    def persist(
        self, group_id: str, key: TopicPartitionKey, token: bytes = b""
    ) -> ErrorCode | Awaitable[ErrorCode]:
        """Write the share partition's state; the answer (for the client) comes once the
        share coordinator has it committed. `token` names the timer files a clean stop is
        about to checkpoint."""
        pk = (group_id, key[1], key[2])
        sp = self.partitions.get(pk)
        if sp is None:
            return ErrorCode.NONE
        extras = self.extras
        if extras is None:
            return self._write(pk, sp, None)
        return self._write(pk, sp, lambda: extras.extension(sp, token))

    def _write(
        self,
        pk: PartitionKey,
        sp: SharePartition,
        extension: Callable[[], ShareExtension | None] | None,
    ) -> ErrorCode | Awaitable[ErrorCode]:
        """Queue a write of `sp` (the extension as `extension` gives it when the write is
        built; None: no extension, Kafka's state only)."""
        loaded = self._loaded.get(pk)
        if loaded is None:
            return ErrorCode.NONE
        state_key: StateKey = (pk[0], loaded.topic_id, pk[2])

        def send() -> Outcome | Awaitable[Outcome]:
            write = StateWrite(
                state_epoch=loaded.state_epoch,
                leader_epoch=loaded.leader_epoch,
                start_offset=sp.start_offset,
                batches=sp.state_batches(),
                delivery_complete_count=sp.final_count(),
                extension=extension() if extension is not None else None,
                with_extension=extension is not None,
            )
            return self.persister.write(state_key, write)

        writer = self._writers.get(pk)
        if writer is None:
            writer = self._writers[pk] = StateWriter()
        written = writer.write(send)
        if isinstance(written, Awaitable):
            waiting = written

            async def later() -> ErrorCode:
                return self._written(pk, sp, await waiting)

            return later()
        return self._written(pk, sp, written)

    def _written(self, pk: PartitionKey, sp: SharePartition, code: ErrorCode) -> ErrorCode:
        if code == ErrorCode.NONE:
            return code
        if self.partitions.get(pk) is sp:
            log.warning(
                "share partition %s-%d of group %s: state not written (%s); loading it again",
                pk[1],
                pk[2],
                pk[0],
                code.name,
            )
            self.drop(pk)
        return client_error(code)

    def persist_in_background(self, group_id: str, key: TopicPartitionKey) -> None:
        """Write without anyone waiting for the answer (lock expiry, released sessions)."""
        written = self.persist(group_id, key)
        if isinstance(written, Awaitable):
            future = asyncio.ensure_future(written)
            self._background.add(future)
            future.add_done_callback(self._background.discard)

    # -- dropping --------------------------------------------------------------------------

    def drop(self, pk: PartitionKey) -> None:
        """Forget the share partition (its writes under way go on); the next use loads it."""
        sp = self.partitions.get(pk)
        if sp is not None and self.extras is not None:
            final = self.extras.detach(pk, sp)
            if final is not None:
                written = self._write(pk, sp, lambda: final)
                if isinstance(written, Awaitable):
                    future = asyncio.ensure_future(written)
                    self._background.add(future)
                    future.add_done_callback(self._background.discard)
        self.partitions.pop(pk, None)
        self._loaded.pop(pk, None)
        loading = self._loading.pop(pk, None)
        if loading is not None:
            loading[1].cancel()
        writer = self._writers.get(pk)
        if writer is not None and not writer.busy:
            del self._writers[pk]

    def drop_group(self, group_id: str) -> None:
        for pk in [pk for pk in self.partitions if pk[0] == group_id]:
            self.drop(pk)

    def close(self) -> None:
        for _, loading in self._loading.values():
            loading.cancel()
        for future in self._background:
            future.cancel()
        for writer in self._writers.values():
            writer.cancel()
