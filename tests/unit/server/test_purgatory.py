"""The purgatory completes waiters on notify, by their check, or by their timeout."""

from __future__ import annotations

import asyncio

from strom.runtime.purgatory import Purgatory


def test_check_already_true_does_not_park() -> None:
    async def scenario() -> None:
        purgatory = Purgatory("t")
        assert await purgatory.wait(["k"], lambda: True, 10_000)
        assert len(purgatory) == 0

    asyncio.run(scenario())


def test_notify_completes_only_when_check_passes() -> None:
    async def scenario() -> None:
        purgatory = Purgatory("t")
        state = {"ready": False}
        waiter = asyncio.ensure_future(purgatory.wait(["a", "b"], lambda: state["ready"], 60_000))
        await asyncio.sleep(0)
        assert len(purgatory) == 1
        assert purgatory.notify("a") == 0  # check still false: keeps waiting
        assert not waiter.done()
        state["ready"] = True
        assert purgatory.notify("unrelated") == 0
        assert purgatory.notify("b") == 1
        assert await waiter is True
        assert len(purgatory) == 0

    asyncio.run(scenario())


def test_timeout_resolves_false_and_unwatches() -> None:
    async def scenario() -> None:
        purgatory = Purgatory("t")
        assert await purgatory.wait(["a"], lambda: False, 1) is False
        assert len(purgatory) == 0
        assert purgatory.notify("a") == 0

    asyncio.run(scenario())


def test_cancelled_waiter_is_unwatched() -> None:
    async def scenario() -> None:
        purgatory = Purgatory("t")
        waiter = asyncio.ensure_future(purgatory.wait(["a"], lambda: False, 60_000))
        await asyncio.sleep(0)
        waiter.cancel()
        await asyncio.sleep(0)
        assert len(purgatory) == 0

    asyncio.run(scenario())


def test_expire_all_releases_everyone() -> None:
    async def scenario() -> None:
        purgatory = Purgatory("t")
        waiters = [
            asyncio.ensure_future(purgatory.wait([i], lambda: False, 60_000)) for i in range(3)
        ]
        await asyncio.sleep(0)
        purgatory.expire_all()
        assert [await w for w in waiters] == [False, False, False]

    asyncio.run(scenario())
