"""A real ZooKeeper server as a child process, for the cluster tests.

Uses Debian's `zookeeper` package: /usr/share/java/zookeeper.jar names its dependencies in its
manifest Class-Path, so the class path is that jar plus an slf4j binding for the log.
`ZooKeeperServerMain <config>` runs a standalone server; the generated config listens on
127.0.0.1 only, on a free port, with a short tick (200 ms, so sessions may be as short as
400 ms and, unless a longer cap is asked for, as long as 4 s), no admin HTTP server, and without fsync (a test server needs no durability).

Readiness is the `srvr` four-letter command answering with a "Mode:" line (only a serving
server does). Startup takes about a second, mostly the JVM.

The data directory survives `stop()`, so `start()` again restarts the same ZooKeeper with its
znodes and sessions, as a real restart would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

ZOOKEEPER_JAR = Path("/usr/share/java/zookeeper.jar")
SLF4J_BINDING = Path("/usr/share/java/slf4j-simple.jar")
# Netty's codec (SslHandler's base) and resolver, which the manifest of Debian's ZooKeeper
# 3.8 does not name: its Netty server needs them for a secureClientPort.
NETTY_FOR_TLS = ("netty-codec.jar", "netty-resolver.jar", "netty-transport-native-unix-common.jar")


def zookeeper_available() -> str | None:
    """None when a server can be started here, else the reason it cannot."""
    if shutil.which("java") is None:
        return "java not found"
    if not ZOOKEEPER_JAR.exists():
        return f"{ZOOKEEPER_JAR} not found (apt-get install zookeeper)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def four_letter(port: int, command: bytes, timeout: float = 1.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as conn:
        conn.sendall(command)
        chunks = []
        while chunk := conn.recv(4096):
            chunks.append(chunk)
    return b"".join(chunks)


@dataclass(frozen=True)
class ServerTls:
    """A secureClientPort through Netty: ZooKeeper's key (PEM: key and certificate chain in
    one file), the authorities it trusts (PEM) and whether clients need certificates."""

    keystore: Path
    truststore: Path
    client_auth: str = "need"

    def jvm_options(self) -> list[str]:
        return [
            "-Dzookeeper.serverCnxnFactory=org.apache.zookeeper.server.NettyServerCnxnFactory",
            f"-Dzookeeper.ssl.keyStore.location={self.keystore}",
            "-Dzookeeper.ssl.keyStore.type=PEM",
            f"-Dzookeeper.ssl.trustStore.location={self.truststore}",
            "-Dzookeeper.ssl.trustStore.type=PEM",
            f"-Dzookeeper.ssl.clientAuth={self.client_auth}",
        ]


class ZooKeeperServer:
    def __init__(
        self,
        root: Path,
        tick_ms: int = 200,
        max_session_timeout_ms: int | None = None,
        tls: ServerTls | None = None,
    ) -> None:
        self.root = root
        self.tick_ms = tick_ms
        # ZooKeeper's default cap is 20 ticks (4 s at the test tick).
        self.max_session_timeout_ms = max_session_timeout_ms
        self.tls = tls
        self.port = 0
        self.secure_port = 0
        self.process: subprocess.Popen[bytes] | None = None
        self.log_path = root / "zookeeper.log"
        self.startup_seconds: list[float] = []

    @property
    def hosts(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def secure_hosts(self) -> str:
        return f"127.0.0.1:{self.secure_port}"

    def _write_config(self) -> Path:
        config = self.root / "zoo.cfg"
        config.write_text(
            "\n".join(
                [
                    f"tickTime={self.tick_ms}",
                    f"dataDir={self.root / 'data'}",
                    f"clientPort={self.port}",
                    "clientPortAddress=127.0.0.1",
                    "admin.enableServer=false",
                    "4lw.commands.whitelist=srvr,ruok,stat",
                    "forceSync=no",
                    "maxClientCnxns=0",
                    *(
                        [f"maxSessionTimeout={self.max_session_timeout_ms}"]
                        if self.max_session_timeout_ms is not None
                        else []
                    ),
                    *(
                        [
                            f"secureClientPort={self.secure_port}",
                            "secureClientPortAddress=127.0.0.1",
                        ]
                        if self.tls is not None
                        else []
                    ),
                    "",
                ]
            )
        )
        return config

    def start(self, timeout: float = 60.0) -> None:
        """Starts (or restarts, on the same port and data) and waits until it serves."""
        assert self.process is None, "already running"
        self.root.mkdir(parents=True, exist_ok=True)
        # A restart keeps its port (clients reconnect to the same address); a first start
        # may retry on another port if the chosen one was taken before ZooKeeper bound it.
        restart = bool(self.port)
        attempts = 1 if restart else 3
        for attempt in range(attempts):
            if not restart:
                self.port = free_port()
                self.secure_port = free_port() if self.tls is not None else 0
            config = self._write_config()
            began = time.monotonic()
            with open(self.log_path, "ab") as log:
                self.process = subprocess.Popen(
                    [
                        "java",
                        "-Xmx256m",
                        "-XX:+UseSerialGC",
                        "-XX:TieredStopAtLevel=1",
                        "-Dzookeeper.admin.enableServer=false",
                        *(self.tls.jvm_options() if self.tls is not None else []),
                        "-cp",
                        ":".join(
                            [
                                str(ZOOKEEPER_JAR),
                                str(SLF4J_BINDING),
                                *(
                                    f"/usr/share/java/{jar}"
                                    for jar in (NETTY_FOR_TLS if self.tls is not None else ())
                                ),
                            ]
                        ),
                        "org.apache.zookeeper.server.ZooKeeperServerMain",
                        str(config),
                    ],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    start_new_session=True,  # a Ctrl-C of pytest is handled by our teardown
                )
            if self._wait_serving(began + timeout):
                self.startup_seconds.append(time.monotonic() - began)
                return
            self.stop()
            if attempt == attempts - 1:
                raise RuntimeError(f"ZooKeeper did not start; log tail:\n{self.log_tail()}")
            # Most likely the port was taken between choosing and binding: try another.

    def _wait_serving(self, deadline: float) -> bool:
        assert self.process is not None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                return False
            with contextlib.suppress(OSError):
                if b"Mode:" in four_letter(self.port, b"srvr"):
                    return True
            time.sleep(0.05)
        return False

    def stop(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; always reaps the process."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)

    def kill(self) -> None:
        """SIGKILL: ZooKeeper gets no chance to close sessions or connections cleanly."""
        if self.process is not None and self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGKILL)
        self.stop()

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"
