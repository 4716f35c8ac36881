"""Brokers with TLS and SASL listeners, and the matching settings of each client library.

A secure broker always keeps a PLAINTEXT listener on its main port (the harness checks
readiness there); the listeners under test get ports of their own.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .broker_process import HOST, BrokerProcess, free_port
from .conftest import BrokerFactory


@dataclass
class SecureBroker:
    process: BrokerProcess
    ports: dict[str, int]  # listener name -> port

    def bootstrap(self, listener: str) -> str:
        return f"{HOST}:{self.ports[listener]}"

    @property
    def plaintext(self) -> str:
        return self.process.bootstrap


def start_secure(
    factory: BrokerFactory,
    listeners: Mapping[str, str],
    sets: Mapping[str, object] | None = None,
    wait: bool = True,
) -> SecureBroker:
    """A broker with a PLAINTEXT listener plus `listeners` (name -> security protocol)."""
    ports = {name: free_port() for name in listeners}
    merged: dict[str, object] = dict(sets or {})
    plain_port = free_port()
    names = {"PLAINTEXT": "PLAINTEXT", **listeners}
    merged["listeners"] = ",".join(
        [f"PLAINTEXT://{HOST}:{plain_port}"]
        + [f"{name}://{HOST}:{port}" for name, port in ports.items()]
    )
    merged["listener.security.protocol.map"] = ",".join(f"{n}:{p}" for n, p in names.items())
    broker = factory(merged, port=plain_port, wait=wait)
    return SecureBroker(broker, ports)


# -- client settings ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientTls:
    ca: Path
    cert: Path | None = None
    key: Path | None = None
    key_password: str | None = None


def ck_security(protocol: str, tls: ClientTls | None = None, **sasl: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"security.protocol": protocol}
    if tls is not None:
        conf["ssl.ca.location"] = str(tls.ca)
        if tls.cert is not None:
            conf["ssl.certificate.location"] = str(tls.cert)
        if tls.key is not None:
            conf["ssl.key.location"] = str(tls.key)
        if tls.key_password is not None:
            conf["ssl.key.password"] = tls.key_password
    conf.update(sasl)
    return conf


def kp_security(protocol: str, tls: ClientTls | None = None, **sasl: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"security_protocol": protocol}
    if tls is not None:
        conf["ssl_cafile"] = str(tls.ca)
        conf["ssl_check_hostname"] = True
        if tls.cert is not None:
            conf["ssl_certfile"] = str(tls.cert)
        if tls.key is not None:
            conf["ssl_keyfile"] = str(tls.key)
        if tls.key_password is not None:
            conf["ssl_password"] = tls.key_password
    conf.update(sasl)
    return conf


def aio_security(protocol: str, tls: ClientTls | None = None, **sasl: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {"security_protocol": protocol}
    if tls is not None:
        context = ssl.create_default_context(cafile=str(tls.ca))
        if tls.cert is not None:
            context.load_cert_chain(
                str(tls.cert), str(tls.key) if tls.key else None, tls.key_password
            )
        conf["ssl_context"] = context
    conf.update(sasl)
    return conf


def kcat_security(protocol: str, tls: ClientTls | None = None, **sasl: str) -> list[str]:
    args = ["-X", f"security.protocol={protocol}"]
    if tls is not None:
        args += ["-X", f"ssl.ca.location={tls.ca}"]
        if tls.cert is not None:
            args += ["-X", f"ssl.certificate.location={tls.cert}"]
        if tls.key is not None:
            args += ["-X", f"ssl.key.location={tls.key}"]
    for key, value in sasl.items():
        args += ["-X", f"{key}={value}"]
    return args
