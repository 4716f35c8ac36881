"""`strom serve`: open the broker, listen, and shut down cleanly on SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import gc
import logging
import signal
import time
from collections.abc import Awaitable

from strom.cluster.features import FeatureIncompatibilityError
from strom.config import BrokerConfig, ConfigError
from strom.security.scram import ScramCredential
from strom.server.acceptor import Acceptor, bind_listening_sockets
from strom.server.broker import Broker
from strom.server.cluster_startup import open_cluster_broker
from strom.server.connection_quotas import ConnectionSlot
from strom.server.descriptors import configure_open_files
from strom.server.dispatch import Dispatcher
from strom.server.http.listener import BrokerState, HttpListener
from strom.server.memory_pool import ResponseBudget
from strom.server.network import KafkaConnection, NetworkShared
from strom.server.sasl import SaslListener
from strom.server.tls import TlsListener
from strom.storage.file_cache import open_files
from strom.storage.log_dirs import LogDirConfigError

log = logging.getLogger("strom.server")

# The cyclic collector's thresholds for the broker process (CPython's are 700, 10, 10). A
# broker holds a few dozen long-lived objects per partition (millions at 100,000 partitions)
# and a Produce or Fetch request of thousands of partitions allocates tens of thousands of
# short-lived ones: at 700 the youngest generation is collected many times per request, the
# request's objects are promoted while still alive, and the full collections that follow walk
# every partition's objects. Measured with benchmarks/partitions_wire.py at 10,000 partitions
# (docs/performance.md): 4 s of collections against 0.4 s over the same run.
GC_THRESHOLDS = (50_000, 20, 20)


async def run_broker(config: BrokerConfig, started_at: float | None = None) -> None:
    started_at = started_at if started_at is not None else time.monotonic()
    loop = asyncio.get_running_loop()
    # From the start: a SIGTERM while the broker is still starting (in cluster mode, maybe
    # waiting for an older session's registration to expire) must also end in a clean stop
    # that closes the ZooKeeper session, or its ephemeral znodes outlive the process.
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    # Before anything opens: a key store that cannot be read stops the start.
    tls_listeners = {
        x.name: TlsListener(config, x.name)
        for x in config.listeners
        if config.listener_protocols[x.name] in ("SSL", "SASL_SSL")
    }
    # SCRAM credentials come from the broker's metadata once it is open.
    opened: list[Broker] = []

    def scram_credential(user: str, mechanism: str) -> ScramCredential | None:
        return opened[0].scram_credential(user, mechanism) if opened else None

    sasl_listeners = {
        x.name: SaslListener(config, x.name, scram_credential)
        for x in config.listeners
        if config.listener_protocols[x.name] in ("SASL_PLAINTEXT", "SASL_SSL")
    }
    if config.zookeeper_connect:
        # Cluster mode: metadata in ZooKeeper, partitions replicated.
        broker = await open_cluster_broker(config)
    else:
        broker = await loop.run_in_executor(None, Broker.open, config)
    dispatcher = Dispatcher(broker)
    broker.metrics.idle.install(loop)
    shared = dispatcher.connections.shared
    broker.response_budget = ResponseBudget(shared.pool.capacity, lambda: shared.unsent_bytes)
    opened.append(broker)
    # Connection limits change with the configuration and the ip client-quota entities.
    broker.reconfigurables.append(dispatcher.connections)
    broker.quotas.watch_connection_rates(dispatcher.connections.set_ip_rates)
    broker.reconfigurables.extend(tls_listeners.values())
    broker.reconfigurables.extend(sasl_listeners.values())
    # The dynamic configs stored by AlterConfigs (metadata file or ZooKeeper) are in the
    # opened broker's config: a key store replaced at run time stays replaced after a restart.
    for tls in tls_listeners.values():
        tls.reconfigure(broker.config)
    for sasl in sasl_listeners.values():
        sasl.reconfigure(broker.config)
    servers: list[Acceptor] = []
    reaper: asyncio.Task[None] | None = None
    cluster_started = False
    state = BrokerState()
    http: HttpListener | None = None
    http_started: asyncio.Task[None] | None = None
    try:
        for listener in config.listeners:
            server = Acceptor(
                bind_listening_sockets(listener.host, listener.port),
                # Each listener has its own acceptor; the connection knows which one it came
                # through (controller requests are only taken on the control-plane listener).
                functools.partial(
                    _connection,
                    dispatcher,
                    shared,
                    listener.name,
                    tls_listeners.get(listener.name),
                    sasl_listeners.get(listener.name),
                ),
                open_files.relieve,
                listener=listener.name,
                quotas=dispatcher.connections.quotas,
            )
            servers.append(server)
            server.start()
            bound = server.port
            broker.bind_port(bound, listener.name)
            log.info(
                "listening on %s:%d (%s, %s)",
                listener.host,
                bound,
                listener.name,
                config.listener_protocols[listener.name],
            )
        broker.start_background_tasks()
        if config.http_listeners:
            # Beside the cluster's start, so that /health and /ready answer while it runs.
            http = HttpListener(broker, dispatcher, config.http_listeners, state)
            http_started = asyncio.create_task(http.start())
        if broker.cluster is not None:
            cluster_started = await _unless_stopped(broker.cluster.start(), stop)
        if http_started is not None:
            await _unless_stopped(http_started, stop)
        state.serving = True
        reaper = asyncio.create_task(_watch_connections(dispatcher))
        if not stop.is_set():
            log.info(
                "strom broker %d started in %.0f ms; data in %s",
                config.broker_id,
                (time.monotonic() - started_at) * 1000,
                ", ".join(str(d) for d in config.log_dirs),
            )
        await stop.wait()
        log.info("shutting down")
    finally:
        state.stopping = True
        if reaper is not None:
            reaper.cancel()
        if broker.cluster is not None and cluster_started:
            # Before the listeners close: followers keep fetching (and stay in the ISRs) while
            # the leaderships move, clients get NOT_LEADER_OR_FOLLOWER rather than a closed
            # connection.
            await broker.cluster.controlled_shutdown()
        for server in servers:
            server.close()
        dispatcher.connections.close_all("broker shutting down")
        for server in servers:
            await server.wait_closed()
        if http is not None:
            await http.stop()
        await broker.close()
        log.info("stopped cleanly")


async def _unless_stopped(starting: Awaitable[None], stop: asyncio.Event) -> bool:
    """Runs a start-up step, abandoning it (cancelled) if a stop signal comes first; True
    when it completed."""
    task = asyncio.ensure_future(starting)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopped.cancel()
    if not task.done():
        log.info("stop requested during start-up")
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        return False
    task.result()
    return True


async def _watch_connections(dispatcher: Dispatcher) -> None:
    """Every second: limits that take up dynamic changes, idle connections, stalled ones."""
    connections = dispatcher.connections
    while True:
        await asyncio.sleep(1.0)
        config = dispatcher.broker.config
        connections.reconfigure(config)
        connections.close_idle(config.connections_max_idle_ms)
        connections.relieve_pressure()
        connections.close_excess()
        connections.quotas.expire()


def _connection(
    dispatcher: Dispatcher,
    shared: NetworkShared,
    listener: str,
    tls: TlsListener | None,
    sasl: SaslListener | None,
    host: str,
    slot: ConnectionSlot | None,
) -> KafkaConnection:
    return KafkaConnection(dispatcher, shared, listener, tls, sasl, peer_host=host, slot=slot)


def serve(config: BrokerConfig) -> int:
    started_at = time.monotonic()
    gc.set_threshold(*GC_THRESHOLDS)
    configure_open_files(config)
    try:
        asyncio.run(run_broker(config, started_at))
    except (OSError, ConfigError, LogDirConfigError, FeatureIncompatibilityError) as exc:
        log.error("cannot start: %s", exc)
        return 1
    except Exception as exc:
        from strom.cluster.zk.client import ZkError  # cluster mode: ZooKeeper unreachable

        if not isinstance(exc, ZkError):
            raise
        log.error("cannot start: %s", exc)
        return 1
    return 0
