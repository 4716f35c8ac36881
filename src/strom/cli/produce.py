"""`strom produce`: lines from stdin or a file become records."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import threading
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from strom.cli.common import EXIT_OK, UsageError, add_client_options

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client

EXAMPLES = """\
examples:
  echo hello | strom produce greetings
  strom produce greetings -K : <<< 'user-1:hello'            # key before the first ':'
  strom produce orders -f orders.txt -z zstd --acks all --rate 500
  strom produce events -H source=cli -H version=2 < events.txt
  printf 'trace=abc,tenant=7|k1:v1\\n' | strom produce t --header-separator '|' -K :
"""

ACKS = {"all": -1, "-1": -1, "0": 0, "1": 1}
_READ_CHUNK = 256 * 1024


def register(commands: Any) -> None:
    produce = commands.add_parser(
        "produce",
        help="produce lines from stdin or a file as records",
        description="Produce records to a topic: one record per line of the input. With "
        "--key-separator, the text before the first separator is the key; with "
        "--header-separator, the text before it is headers (name=value,name=value).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    produce.add_argument("topic", metavar="TOPIC")
    produce.add_argument("-f", "--file", metavar="FILE", help="read from FILE (default stdin)")
    produce.add_argument(
        "-K",
        "--key-separator",
        metavar="SEP",
        help="split each line into key SEP value at the first SEP",
    )
    produce.add_argument(
        "--header-separator", metavar="SEP", help="headers (name=value,...) SEP rest of the line"
    )
    produce.add_argument(
        "-H",
        "--header",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a header on every record (repeatable)",
    )
    produce.add_argument(
        "-p",
        "--partition",
        type=int,
        help="write every record to this partition (default: by key hash; "
        "records without a key spread over the partitions)",
    )
    produce.add_argument(
        "-z",
        "--compression",
        choices=("none", "gzip", "snappy", "lz4", "zstd"),
        default="none",
        help="batch compression (default none)",
    )
    produce.add_argument(
        "--acks",
        choices=sorted(ACKS),
        default="all",
        help="all (-1): the in-sync replicas have it; 1: the leader has it; "
        "0: no answer (default all)",
    )
    produce.add_argument(
        "--rate",
        type=float,
        metavar="RECORDS_PER_S",
        help="produce at most this many records per second",
    )
    produce.add_argument(
        "--linger-ms",
        type=float,
        default=5.0,
        help="how long a batch waits for more records (default 5)",
    )
    produce.add_argument(
        "--batch-bytes",
        type=int,
        default=256 * 1024,
        help="batch size that sends at once (default 262144)",
    )
    produce.add_argument("-q", "--quiet", action="store_true", help="no summary on stderr")
    add_client_options(produce)
    produce.set_defaults(command=produce_lines)


def _headers(text: str, where: str) -> list[tuple[str, bytes | None]]:
    headers: list[tuple[str, bytes | None]] = []
    for item in text.split(","):
        if not item:
            continue
        name, sep, value = item.partition("=")
        if not sep:
            raise UsageError(f"{where}: header {item!r} is not NAME=VALUE")
        headers.append((name, value.encode()))
    return headers


async def _lines(fd: int) -> AsyncIterator[bytes]:
    """The lines of `fd` (without their newline), read in a thread so that a terminal that
    types slowly does not stall the event loop (and the linger timer)."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[bytes | BaseException] = asyncio.Queue(maxsize=8)
    stop = threading.Event()

    def read() -> None:
        while not stop.is_set():
            try:
                chunk: bytes | BaseException = os.read(fd, _READ_CHUNK)
            except OSError as exc:
                chunk = exc
            asyncio.run_coroutine_threadsafe(queue.put(chunk), loop).result()
            if not chunk or isinstance(chunk, BaseException):
                return

    threading.Thread(target=read, name="strom-produce-input", daemon=True).start()
    tail = b""
    try:
        while True:
            chunk = await queue.get()
            if isinstance(chunk, BaseException):
                raise UsageError(f"cannot read the input: {chunk}")
            if not chunk:
                break
            lines = (tail + chunk).split(b"\n")
            tail = lines.pop()
            for line in lines:
                yield line.removesuffix(b"\r")
        if tail:
            yield tail.removesuffix(b"\r")
    finally:
        stop.set()


async def produce_lines(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.producer import COMPRESSION_CODECS, Producer

    static_headers = _headers(",".join(args.header), "--header")
    key_sep = args.key_separator.encode() if args.key_separator else None
    header_sep = args.header_separator.encode() if args.header_separator else None
    if args.file:
        try:
            fd = os.open(args.file, os.O_RDONLY)
        except OSError as exc:
            raise UsageError(f"cannot open {args.file}: {exc.strerror}") from None
    else:
        fd = sys.stdin.fileno()
    total_bytes = os.fstat(fd).st_size if args.file else None
    progress = _Progress(out, total_bytes) if sys.stderr.isatty() else None
    producer = Producer(
        client,
        acks=ACKS[args.acks],
        compression=COMPRESSION_CODECS[args.compression],
        linger_ms=args.linger_ms,
        batch_bytes=args.batch_bytes,
        timeout_ms=int(args.timeout * 1000),
    )
    await producer.partitions_of(args.topic)  # an unknown topic fails before reading
    started = time.monotonic()
    sent = 0
    read_bytes = 0
    try:
        async for line in _lines(fd):
            read_bytes += len(line) + 1
            headers = list(static_headers)
            rest = line
            if header_sep is not None:
                head, sep, after = rest.partition(header_sep)
                if sep:
                    headers += _headers(head.decode(errors="replace"), "input")
                    rest = after
            key: bytes | None = None
            if key_sep is not None:
                k, sep, v = rest.partition(key_sep)
                if sep:
                    key, rest = k, v
            await producer.send(args.topic, rest, key, headers, partition=args.partition)
            sent += 1
            if progress is not None:
                progress.update(sent, read_bytes)
            if args.rate:
                ahead = sent / args.rate - (time.monotonic() - started)
                if ahead > 0:
                    await asyncio.sleep(ahead)
        result = await producer.flush()
    finally:
        await producer.close()
        if progress is not None:
            progress.stop()
        if args.file:
            os.close(fd)
    elapsed = time.monotonic() - started
    summary = {
        "topic": args.topic,
        "records": result.records,
        "bytes": result.bytes,
        "seconds": round(elapsed, 3),
        "partitions": [
            {"partition": p, "first_offset": first, "last_offset": last}
            for (_, p), (first, last) in sorted(result.offsets.items())
        ],
    }
    if out.json:
        out.emit_json(summary)
    elif not args.quiet:
        out.note(
            f"produced {result.records} records ({result.bytes} bytes) to {args.topic} in "
            f"{elapsed:.2f} s"
        )
    return EXIT_OK


class _Progress:
    """A progress bar on the terminal (stderr): bytes of a file, or a running count."""

    def __init__(self, out: Output, total_bytes: int | None) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TransferSpeedColumn,
        )

        self.progress = Progress(
            TextColumn("producing"),
            BarColumn(),
            TextColumn("{task.fields[records]} records"),
            TransferSpeedColumn(),
            TimeElapsedColumn(),
            console=out.err,
            transient=True,
        )
        self.task = self.progress.add_task("produce", total=total_bytes, records=0)
        self.progress.start()
        self._last = 0.0

    def update(self, records: int, read_bytes: int) -> None:
        now = time.monotonic()
        if now - self._last >= 0.1:
            self._last = now
            self.progress.update(self.task, completed=read_bytes, records=records)

    def stop(self) -> None:
        self.progress.stop()
