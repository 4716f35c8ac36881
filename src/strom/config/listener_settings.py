"""How a broker's listeners are derived from its settings, and settings made for one listener.

`listeners`, `advertised.listeners`, `listener.security.protocol.map`,
`control.plane.listener.name`, `inter.broker.listener.name` / `security.inter.broker.protocol`
are checked as Kafka's ZooKeeper-mode broker checks them; `listener.name.<listener>.<key>` (and,
for SASL, `listener.name.<listener>.<mechanism>.<key>`) override a key for one listener.
Part of `BrokerConfig` (a base class, to keep that module to its one job).
"""

from __future__ import annotations

import socket

from strom.config.broker_keys import BROKER_DEFS
from strom.config.definitions import ConfigError, ConfigValue
from strom.config.listeners import SECURITY_PROTOCOLS, Listener, parse_listeners, protocol_map

_WILDCARD_HOSTS = ("", "0.0.0.0", "::")


class ListenerSettings:
    listeners: list[Listener]
    advertised_listeners: list[Listener]
    # Controller-to-broker requests only (None: none); never given to clients.
    control_plane_listener_name: str | None
    # Follower fetches and, without a control-plane listener, the controller's requests.
    inter_broker_listener_name: str
    # listener name -> security protocol (PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL)
    listener_protocols: dict[str, str]
    max_connections_per_ip_overrides: dict[str, int]  # host or address -> limit
    zookeeper_connect: str | None
    _static: dict[str, str]
    _origins: dict[str, str]

    def _layer_value(self, key: str) -> str | None:  # pragma: no cover - BrokerConfig's
        raise NotImplementedError

    def _error(self, key: str, reason: str) -> ConfigError:  # pragma: no cover
        raise NotImplementedError

    def get(self, name: str) -> ConfigValue:  # pragma: no cover
        raise NotImplementedError

    def get_str(self, name: str) -> str | None:  # pragma: no cover
        raise NotImplementedError

    def _derive_listeners(self) -> None:
        raw = self._layer_value("listeners")
        if raw is None:
            raw = str(BROKER_DEFS["listeners"].default)
        self.listeners = parse_listeners("listeners", raw, self._origins.get("listeners"))
        if not self.listeners:
            raise self._error("listeners", "at least one listener is required")
        ports = [x.port for x in self.listeners if x.port != 0]
        if len(set(ports)) != len(ports):
            raise self._error("listeners", "two listeners use the same port")
        protocols = protocol_map(self.get_str("listener.security.protocol.map") or "")
        control = (self.get_str("control.plane.listener.name") or "").strip().upper()
        if control in {x.name for x in self.listeners} and control not in protocols:
            # Said before the protocol check below, which would blame the listener instead.
            raise self._error(
                "control.plane.listener.name",
                "must be a listener name defined in listener.security.protocol.map",
            )
        self.listener_protocols = {}
        for listener in self.listeners:
            protocol = protocols.get(listener.name)
            if protocol is None and listener.name in SECURITY_PROTOCOLS:
                protocol = listener.name
            if protocol is None:
                raise self._error(
                    "listeners",
                    f"no security protocol defined for listener {listener.name} "
                    "(listener.security.protocol.map)",
                )
            if protocol not in SECURITY_PROTOCOLS:
                raise self._error(
                    "listener.security.protocol.map",
                    f"{protocol} is not a security protocol ({', '.join(SECURITY_PROTOCOLS)})",
                )
            self.listener_protocols[listener.name] = protocol
        advertised_raw = self._layer_value("advertised.listeners")
        if advertised_raw is None:
            host: str | None = None
            advertised: list[Listener] = []
            for x in self.listeners:
                if x.host in _WILDCARD_HOSTS:
                    # Clients cannot connect to "every interface"; advertise this machine's name
                    # as Kafka does.
                    host = host or socket.gethostname()
                    advertised.append(Listener(x.name, host, x.port))
                else:
                    advertised.append(x)
            self.advertised_listeners = advertised
            return
        self.advertised_listeners = parse_listeners(
            "advertised.listeners", advertised_raw, self._origins.get("advertised.listeners")
        )
        known = {x.name for x in self.listeners}
        for x in self.advertised_listeners:
            if x.name not in known:
                raise self._error("advertised.listeners", f"{x.name} is not among the listeners")
            if x.host in ("0.0.0.0", "::"):
                raise self._error(
                    "advertised.listeners", f"{x.host} cannot be advertised; give a host name"
                )

    def _derive_plane_listeners(self) -> None:
        """control.plane.listener.name and inter.broker.listener.name, checked as Kafka's
        ZooKeeper-mode broker does: each names a listener that is also advertised, the
        control-plane one is in listener.security.protocol.map, and they differ."""
        names = [x.name for x in self.listeners]
        advertised = {x.name for x in self.advertised_listeners}
        control = self.get_str("control.plane.listener.name")
        if control is not None:
            control = control.strip().upper()
            key = "control.plane.listener.name"
            if not self.zookeeper_connect:
                raise self._error(
                    key, "only a cluster (zookeeper.connect) has a controller to send on it"
                )
            if control not in names:
                raise self._error(key, f"must be one of the listeners ({', '.join(names)})")
            if control not in advertised:
                raise self._error(key, "must be a listener named in advertised.listeners")
            protocols = protocol_map(self.get_str("listener.security.protocol.map") or "")
            if control not in protocols:
                raise self._error(
                    key, "must be a listener name defined in listener.security.protocol.map"
                )
            if len(names) < 2:
                raise self._error(
                    key, "needs another listener for clients and replication (listeners)"
                )
        self.control_plane_listener_name = control
        inter = self.get_str("inter.broker.listener.name")
        by_protocol = "security.inter.broker.protocol" in self._static
        if inter is not None and by_protocol:
            raise self._error(
                "security.inter.broker.protocol",
                "only one of inter.broker.listener.name and security.inter.broker.protocol "
                "may be set",
            )
        if by_protocol:
            # Kafka: the inter-broker listener is the one named after the protocol.
            inter = self.get_str("security.inter.broker.protocol") or "PLAINTEXT"
            if inter not in names or inter not in advertised:
                raise self._error(
                    "security.inter.broker.protocol",
                    f"there is no listener named {inter} (set inter.broker.listener.name to "
                    "use a listener of another name)",
                )
        elif inter is None:
            inter = next(n for n in names if n != control)
        else:
            inter = inter.strip().upper()
            if inter not in names or inter not in advertised:
                raise self._error(
                    "inter.broker.listener.name", "must be a listener named in advertised.listeners"
                )
        if control is not None and inter == control:
            raise self._error(
                "control.plane.listener.name",
                f"must differ from inter.broker.listener.name ({inter})",
            )
        self.inter_broker_listener_name = inter

    def _derive_per_ip_overrides(self) -> dict[str, int]:
        key = "max.connections.per.ip.overrides"
        out: dict[str, int] = {}
        for item in (self.get_str(key) or "").split(","):
            if not item.strip():
                continue
            host, sep, count = item.strip().rpartition(":")
            if not sep or not host.strip() or not count.strip().isdigit():
                raise self._error(key, f"{item.strip()!r} is not of the form host:count")
            out[host.strip().strip("[]")] = int(count)
        return out

    def listener_value(self, listener: str, key: str) -> ConfigValue:
        """A setting for one listener: `listener.name.<listener>.<key>` where set (in the
        usual layers), else `key` itself."""
        prefixed = f"listener.name.{listener.lower()}.{key}"
        raw = self._layer_value(prefixed)
        if raw is None:
            return self.get(key)
        return BROKER_DEFS[key].parse(raw, self._origins.get(prefixed), name=prefixed)

    def listener_int(self, listener: str, key: str) -> int:
        value = self.listener_value(listener, key)
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{key} is not an integer (it is {value!r})")
        return value

    def mechanism_value(
        self, listener: str, mechanism: str, key: str, prefixed_only: bool = False
    ) -> ConfigValue:
        """A SASL setting as Kafka's broker reads it: `listener.name.<l>.<mechanism>.<key>`,
        then (unless `prefixed_only`) `listener.name.<l>.<key>`, then `key`."""
        full = f"listener.name.{listener.lower()}.{mechanism.lower()}.{key}"
        raw = self._layer_value(full)
        if raw is not None:
            return BROKER_DEFS[key].parse(raw, self._origins.get(full), name=full)
        if prefixed_only:
            return None
        return self.listener_value(listener, key)

    @property
    def data_plane_listeners(self) -> list[Listener]:
        """The listeners clients may use: all but the control-plane one."""
        return [x for x in self.listeners if x.name != self.control_plane_listener_name]

    @property
    def advertised_data_plane_listeners(self) -> list[Listener]:
        return [
            x
            for x in self.advertised_listeners or self.listeners
            if x.name != self.control_plane_listener_name
        ]
