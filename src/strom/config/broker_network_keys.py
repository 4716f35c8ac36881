"""Broker keys of listeners, sockets, connection limits, request queues and quotas.

`DYNAMIC_ONLY_DEFS` are Kafka's broker keys that exist only as dynamic configs (replication
throttle rates): AlterConfigs sets them, a properties file does not.
"""

from __future__ import annotations

from strom.config.definitions import LONG_MAX, ConfigDef
from strom.config.shorthand import CW, PB, C, I, L, S, define
from strom.config.validators import OneOf, at_least

# Kafka prints its default map in this order.
PROTOCOL_MAP = "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT"

# fmt: off
BROKER_NETWORK_DEFS: list[ConfigDef] = [
    define("listeners", S, "PLAINTEXT://127.0.0.1:9092", "Comma-separated NAME://host:port "
       "endpoints to accept clients on. Strom binds 127.0.0.1 by default, where Kafka binds "
       "every interface, so a development broker is not reachable from the network.", mode=PB),
    define("advertised.listeners", S, None, "Endpoints given to clients in metadata, when "
       "they differ from listeners (NAT, containers). Unset means the listeners.", mode=PB),
    define("listener.security.protocol.map", S, PROTOCOL_MAP, "Maps listener names to "
       "security protocols (PLAINTEXT, SSL); a listener not named here uses the protocol of "
       "its own name.", mode=PB),
    define("inter.broker.listener.name", S, None, "Listener the brokers use to reach each "
       "other; unset means the first listener that is not the control-plane listener."),
    define("control.plane.listener.name", S, None, "Listener the controller sends its "
       "requests (LeaderAndIsr, StopReplica) to, so that they do not queue behind client "
       "traffic; one of listeners, in listener.security.protocol.map, not the inter-broker "
       "listener. Never given to clients in metadata. Unset: the inter-broker listener."),
    define("security.inter.broker.protocol", S, "PLAINTEXT", "Security protocol between "
       "brokers when inter.broker.listener.name is unset: when set, the inter-broker listener "
       "is the listener of that name. Set this or inter.broker.listener.name, not both.",
       OneOf(("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"))),
    define("early.start.listeners", S, None, "Listeners opened before the broker has finished "
       "starting.", unused=True),
    define("socket.send.buffer.bytes", I, 102400, "SO_SNDBUF of client sockets; -1 keeps the "
       "operating system's default.", unused=True),
    define("socket.receive.buffer.bytes", I, 102400, "SO_RCVBUF of client sockets; -1 keeps "
       "the operating system's default.", unused=True),
    define("socket.request.max.bytes", I, 104857600, "Largest request frame accepted; larger "
       "ones close the connection.", at_least(1)),
    define("socket.listen.backlog.size", I, 50, "Pending-connection queue of the listening "
       "socket.", at_least(1), unused=True),
    define("connections.max.idle.ms", L, 600000, "Connections that neither send nor take "
       "bytes for longer than this are closed."),
    define("connection.failed.authentication.delay.ms", I, 100, "Delay before the connection "
       "of a client that failed to authenticate is answered and closed.", at_least(0)),
    define("max.connections", I, 10000, "Most connections the broker keeps open; beyond it "
       "new connections wait until one closes. The inter-broker listener, when there are "
       "others, is admitted beyond it and the least recently active other connections are "
       "closed. Per listener: listener.name.<listener>.max.connections. Strom defaults to "
       "10000 (Kafka: unlimited).", at_least(0), mode=CW),
    define("max.connections.per.ip", I, 1000, "Most connections from one address; more are "
       "refused. Strom defaults to 1000 (Kafka: unlimited).", at_least(0), mode=CW),
    define("max.connections.per.ip.overrides", S, "", "Per-address connection limits as "
       "host:count entries, overriding max.connections.per.ip.", mode=CW),
    define("max.connection.creation.rate", I, 1000, "Most new connections per second (not "
       "counting the inter-broker listener); beyond it accepting is delayed. Per listener: "
       "listener.name.<listener>.max.connection.creation.rate. Strom defaults to 1000 "
       "(Kafka: unlimited).", at_least(0), mode=CW),
    define("num.network.threads", I, 3, "Kafka's network thread count; accepted and ignored "
       "because Strom's network layer is one asyncio loop.",
       at_least(1), mode=CW, unused=True),
    define("num.io.threads", I, 8, "Worker threads for blocking work (fsync, reading cold "
       "segments, deleting files).", at_least(1), mode=CW),
    define("background.threads", I, 10, "Threads for background tasks.",
       at_least(1), mode=CW, unused=True),
    define("queued.max.requests", I, 500, "Requests that may be in progress before the broker "
       "stops reading from connections.", at_least(1), unused=True),
    define("queued.max.request.bytes", L, 209715200, "Memory for requests being received "
       "and handled, in bytes; a connection whose request does not fit waits until memory is "
       "released. -1: no limit. Strom defaults to 200 MiB (Kafka: -1)."),
    define("fetch.max.bytes", I, 57671680, "Most bytes one Fetch response returns.",
       at_least(1024)),
    define("max.incremental.fetch.session.cache.slots", I, 1000, "How many incremental fetch "
       "sessions (KIP-227) the broker keeps.", at_least(0)),
    define("max.request.partition.size.limit", I, 2000, "Most partitions one request may name "
       "(share fetches, KIP-932).", at_least(1), unused=True),
    define("quota.window.num", I, 11, "Samples kept for client quotas (the rate is measured "
       "over about this many windows).", at_least(1)),
    define("quota.window.size.seconds", I, 1, "Time span of one client quota sample.",
       at_least(1)),
    define("replication.quota.window.num", I, 11, "Samples kept for replication quotas.",
       at_least(1)),
    define("replication.quota.window.size.seconds", I, 1, "Time span of one replication quota "
       "sample.", at_least(1)),
    define("alter.log.dirs.replication.quota.window.num", I, 11, "Samples kept for the quota "
       "of moves between log directories.", at_least(1), unused=True),
    define("alter.log.dirs.replication.quota.window.size.seconds", I, 1, "Time span of one "
       "sample of that quota.", at_least(1), unused=True),
    define("controller.quota.window.num", I, 11, "Samples kept for controller mutation "
       "quotas (with the window, the burst a mutation quota allows).", at_least(1)),
    define("controller.quota.window.size.seconds", I, 1, "Time span of one controller "
       "mutation quota sample.", at_least(1)),
    define("client.quota.callback.class", C, None, "Plugin that decides client quotas instead "
       "of the built-in rules.", unused=True),
]

# Set only through AlterConfigs (Kafka's DynamicConfig.Broker); described only when set.
DYNAMIC_ONLY_DEFS: list[ConfigDef] = [
    define("leader.replication.throttled.rate", L, LONG_MAX, "Bytes per second a leader may "
       "send to the replicas listed in leader.replication.throttled.replicas; set only at run "
       "time.", at_least(0), mode=CW),
    define("follower.replication.throttled.rate", L, LONG_MAX, "Bytes per second a follower "
       "may fetch for the replicas listed in follower.replication.throttled.replicas; set "
       "only at run time.", at_least(0), mode=CW),
    define("replica.alter.log.dirs.io.max.bytes.per.second", L, LONG_MAX, "Bytes per second "
       "for moving replicas between log directories (AlterReplicaLogDirs), over all moves of "
       "the broker; set only at run time.", at_least(0), mode=CW),
]
# fmt: on
