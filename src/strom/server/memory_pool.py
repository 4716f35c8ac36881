"""The broker-wide budget for requests being received and handled (`queued.max.request.bytes`).

Accounting, not allocation: a request frame that does not arrive in one read reserves its
announced size here (once its first `SMALL_FRAME_BYTES` have arrived, so announcing a size
costs nothing) before its buffer starts to grow, and the buffer then grows only as its bytes
arrive. A reservation is granted whole or not at all, so a request that got one never waits for
memory again and completes once its sender sends. Reservations that cannot be granted wait;
they are granted by client address in turn (round robin), oldest first within one address, so
that many connections from one address cannot keep another address waiting. Frames that
arrived whole in one read are added without waiting (they are already in memory). Every
reservation is released when the request's response is ready, or when its connection closes.

Invariant: `used` never exceeds `capacity` through `try_reserve` and grants; only `force`
(frames already received) may push it past, and then nothing more is granted until it is back
below.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable


class ResponseBudget:
    """Bytes that fetches may read while responses wait for clients that do not read them.

    A fetch takes a grant on the event loop before it reads (a read in the worker pool counts
    from its start, so many fetches reading at once cannot each see the whole budget), keeps
    what it read (one batch may exceed the grant, as Kafka's max_bytes allows) and gives that
    back once the response is queued, where it counts as unsent bytes. A fetch granted nothing
    returns no records.
    """

    def __init__(self, capacity: int, unsent: Callable[[], int]) -> None:
        self.capacity = capacity
        self._unsent = unsent
        self.reading = 0

    def take(self, wanted: int) -> int:
        granted = max(0, min(wanted, self.capacity - self._unsent() - self.reading))
        self.reading += granted
        return granted

    def give_back(self, granted: int) -> None:
        self.reading -= granted


UNLIMITED_RESPONSES = 1 << 62


class MemoryPool:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.used = 0
        # Reservations waiting for memory, by client address in turn order, then oldest first:
        # address -> [(size, grant)].
        self._waiters: OrderedDict[str, deque[tuple[int, Callable[[], None]]]] = OrderedDict()

    @property
    def available(self) -> int:
        return max(0, self.capacity - self.used)

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self._waiters.values())

    def try_reserve(self, size: int) -> bool:
        """Take `size` bytes if they fit and nobody is waiting."""
        if self._waiters or self.used + size > self.capacity:
            return False
        self.used += size
        return True

    def force(self, size: int) -> None:
        """Count bytes that are already in memory (a frame that arrived whole)."""
        self.used += size

    def wait(self, size: int, grant: Callable[[], None], address: str = "") -> None:
        """Queue a reservation; `grant` is called once it has been taken for the caller."""
        self._waiters.setdefault(address, deque()).append((size, grant))

    def cancel(self, grant: Callable[[], None]) -> None:
        """Forget a queued reservation (its connection closed)."""
        for address, queue in self._waiters.items():
            for i, (_, g) in enumerate(queue):
                if g == grant:
                    del queue[i]
                    if not queue:
                        del self._waiters[address]
                    self._grant_waiters()
                    return

    def release(self, size: int) -> None:
        self.used -= size
        self._grant_waiters()

    def _grant_waiters(self) -> None:
        while self._waiters:
            address, queue = next(iter(self._waiters.items()))
            size, grant = queue[0]
            if self.used + size > self.capacity:
                return
            queue.popleft()
            # This address goes to the back of the turn order (or leaves it).
            del self._waiters[address]
            if queue:
                self._waiters[address] = queue
            self.used += size
            grant()
