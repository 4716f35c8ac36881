"""Throughput over TLS and SASL beside plaintext, on one broker.

Starts a Strom broker with three listeners (PLAINTEXT, SSL, SASL_SSL with SCRAM-SHA-512, a
certificate made here), then for each listener produces and consumes the same volume with
confluent-kafka (acks=1, no compression, linger 5 ms, 1 MB batches: the settings of run.py) and
reports MB/s and the broker's CPU seconds per GB. The listeners take turns, `--rounds` times,
so that a busy machine weighs on all of them alike.

    .venv/bin/python benchmarks/security.py                 # 16 KiB and 1 KiB records, 3 rounds
    .venv/bin/python benchmarks/security.py --mb 200 --rounds 2 --sizes 16384
"""

from __future__ import annotations

import argparse
import datetime
import ipaddress
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import (
    AdminClient,
    NewTopic,
    ScramCredentialInfo,
    ScramMechanism,
    UserScramCredentialUpsertion,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

MB = 1 << 20
PRODUCER_CONFIG = {
    "acks": "1",
    "compression.type": "none",
    "linger.ms": 5,
    "batch.size": 1_000_000,
    "queue.buffering.max.kbytes": 1_048_576,
    "queue.buffering.max.messages": 1_000_000,
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def make_certificates(directory: Path) -> tuple[Path, Path]:
    """(CA certificate file, broker PEM with key and chain)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "bench CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "broker")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=7))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_file = directory / "ca.crt"
    ca_file.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    pem = directory / "broker.pem"
    pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        + cert.public_bytes(serialization.Encoding.PEM)
    )
    return ca_file, pem


class Broker:
    def __init__(self, directory: Path, pem: Path) -> None:
        self.dir = directory
        self.ports = {name: free_port() for name in ("PLAINTEXT", "SSL", "SASL_SSL")}
        listeners = ",".join(f"{n}://127.0.0.1:{p}" for n, p in self.ports.items())
        scram = "org.apache.kafka.common.security.scram.ScramLoginModule required;"
        sets = {
            "listeners": listeners,
            "log.dirs": str(directory / "data"),
            "ssl.keystore.type": "PEM",
            "ssl.keystore.location": str(pem),
            "sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": scram,
        }
        args = [sys.executable, "-m", "strom", "serve"]
        for key, value in sets.items():
            args += ["--set", f"{key}={value}"]
        with open(directory / "broker.log", "wb") as log:
            self.proc = subprocess.Popen(args, stderr=log)
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", self.ports["PLAINTEXT"]), 0.1):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"broker did not start; see {directory}/broker.log"
                    ) from None
                time.sleep(0.01)

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def run_once(
    broker: Broker, conf: dict[str, Any], size: int, total: int
) -> tuple[float, float, float, float]:
    """(produce MB/s, produce CPU s/GB, consume MB/s, consume CPU s/GB)."""
    admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.ports['PLAINTEXT']}"})
    topic = f"bench-{uuid.uuid4().hex[:8]}"
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result(30)
    count = total // size
    payload = os.urandom(size)
    producer = Producer({**conf, **PRODUCER_CONFIG})
    failed = [0]

    def done(err: KafkaError | None, _msg: object) -> None:
        if err is not None:
            failed[0] += 1

    cpu0 = broker.cpu_seconds()
    start = time.perf_counter()
    for i in range(count):
        while True:
            try:
                producer.produce(topic, payload, on_delivery=done)
                break
            except BufferError:
                producer.poll(0.01)
        if i % 1000 == 0:
            producer.poll(0)
    producer.flush(300)
    produce_s = time.perf_counter() - start
    cpu1 = broker.cpu_seconds()
    if failed[0]:
        raise RuntimeError(f"{failed[0]} records failed")
    consumer = Consumer(
        {
            **conf,
            "group.id": f"bench-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "fetch.max.bytes": 52_428_800,
            "max.partition.fetch.bytes": 10_485_760,
            "queued.max.messages.kbytes": 1_048_576,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    got = 0
    start = time.perf_counter()
    while got < count:
        got += sum(
            1 for m in consumer.consume(min(10_000, count - got), timeout=5) if not m.error()
        )
    consume_s = time.perf_counter() - start
    cpu2 = broker.cpu_seconds()
    consumer.close()
    gb = count * size / 1e9
    volume = count * size / MB
    return volume / produce_s, (cpu1 - cpu0) / gb, volume / consume_s, (cpu2 - cpu1) / gb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=int, default=300, help="MB per produce and consume run")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", default="16384,1024", help="record sizes, comma-separated")
    args = parser.parse_args()
    directory = Path(tempfile.mkdtemp(prefix="strom-bench-security-"))
    ca, pem = make_certificates(directory)
    broker = Broker(directory, pem)
    try:
        admin = AdminClient({"bootstrap.servers": f"127.0.0.1:{broker.ports['PLAINTEXT']}"})
        user = UserScramCredentialUpsertion(
            "bench", ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096), b"bench-secret"
        )
        admin.alter_user_scram_credentials([user])["bench"].result(30)
        confs: dict[str, dict[str, Any]] = {
            "PLAINTEXT": {"bootstrap.servers": f"127.0.0.1:{broker.ports['PLAINTEXT']}"},
            "SSL": {
                "bootstrap.servers": f"127.0.0.1:{broker.ports['SSL']}",
                "security.protocol": "SSL",
                "ssl.ca.location": str(ca),
            },
            "SASL_SSL": {
                "bootstrap.servers": f"127.0.0.1:{broker.ports['SASL_SSL']}",
                "security.protocol": "SASL_SSL",
                "ssl.ca.location": str(ca),
                "sasl.mechanism": "SCRAM-SHA-512",
                "sasl.username": "bench",
                "sasl.password": "bench-secret",
            },
        }
        print(
            "| records | listener | produce MB/s | produce CPU s/GB | consume MB/s | consume CPU s/GB |"
        )
        print("| --- | --- | --- | --- | --- | --- |")
        for size in (int(s) for s in args.sizes.split(",")):
            results: dict[str, list[tuple[float, float, float, float]]] = {n: [] for n in confs}
            names = list(confs)
            for r in range(args.rounds):
                for name in names[r % len(names) :] + names[: r % len(names)]:
                    results[name].append(run_once(broker, confs[name], size, args.mb * MB))
            for name, runs in results.items():
                cols = [statistics.median(x[i] for x in runs) for i in range(4)]
                spread = " / ".join(f"{x[0]:.0f}" for x in runs)
                print(
                    f"| {size} B | {name} | {cols[0]:.0f} ({spread}) | {cols[1]:.1f} | "
                    f"{cols[2]:.0f} ({' / '.join(f'{x[2]:.0f}' for x in runs)}) | {cols[3]:.1f} |"
                )
    finally:
        broker.stop()
        shutil.rmtree(directory, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
