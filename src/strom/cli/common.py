"""What every client command shares: the connection options, argument parsing helpers, and
running a command with its errors turned into one line and an exit code.

Exit codes: 0 done; 1 the broker refused or the thing asked for does not exist (a Kafka error
code, named in the message); 2 bad usage; 3 no broker could be reached, or the connection was
lost; 130 interrupted (Ctrl-C).

Only argparse and the standard library are imported here at module level: `strom serve`
builds the same parser and must not pay for rich or the client.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_INTERRUPTED = 130

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"

Command = Callable[["Client", "Output", argparse.Namespace], Awaitable[int]]


class UsageError(Exception):
    """A bad argument found after parsing (exit code 2)."""


def add_client_options(parser: argparse.ArgumentParser, *, formats: bool = True) -> None:
    group = parser.add_argument_group("connection")
    group.add_argument(
        "-b",
        "--bootstrap-server",
        default=DEFAULT_BOOTSTRAP,
        metavar="HOST:PORT[,...]",
        help=f"brokers to connect to first (default {DEFAULT_BOOTSTRAP})",
    )
    group.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for a broker's answer (default 30)",
    )
    if formats:
        parser.add_argument(
            "--format",
            choices=("table", "json"),
            default="table",
            help="table for people (default), json for scripts",
        )


def error(message: str) -> None:
    print(f"strom: {message}", file=sys.stderr)


def run(args: argparse.Namespace, command: Command) -> int:
    from strom.cli.output import Output
    from strom.client import BrokerUnreachableError, Client, ClientError, KafkaError

    out = Output(getattr(args, "format", "table"))

    async def main() -> int:
        client = Client(
            args.bootstrap_server,
            connect_timeout_s=min(args.timeout, 10.0),
            request_timeout_s=args.timeout,
        )
        try:
            await client.any_connection()
            return await command(client, out, args)
        finally:
            await client.close()

    try:
        return asyncio.run(main())
    except BrokerUnreachableError as exc:
        error(str(exc))
        return EXIT_UNREACHABLE
    except KafkaError as exc:
        error(str(exc))
        return EXIT_FAILED
    except UsageError as exc:
        error(str(exc))
        return EXIT_USAGE
    except ClientError as exc:
        error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader went away (`strom consume ... | head`): nothing more to say to it.
        _silence_stdout()
        return EXIT_OK


def run_offline(args: argparse.Namespace, command: Callable[[argparse.Namespace], int]) -> int:
    """Run a command that needs no broker."""
    try:
        return command(args)
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_OK


def _silence_stdout() -> None:
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())


def key_values(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageError(f"{what}: expected key=value, got {item!r}")
        out[key] = value
    return out


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}


def parse_duration_ms(text: str) -> int:
    """'90s', '15m', '1h30m', '2d' -> milliseconds."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise UsageError(f"bad duration {text!r} (examples: 90s, 15m, 1h30m, 2d)")
    return int(total)


def parse_timestamp_ms(text: str) -> int:
    """Milliseconds since the epoch, or an ISO 8601 time ('2024-05-01T12:00:00Z'; without a
    zone: local time)."""
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(
            f"bad timestamp {text!r} (milliseconds since the epoch, or ISO 8601 such as "
            "2024-05-01T12:00:00Z)"
        ) from None
    return int(moment.timestamp() * 1000)


def now_ms() -> int:
    return int(time.time() * 1000)


def format_ms(ms: int) -> str:
    if ms < 0:
        return ""
    return datetime.fromtimestamp(ms / 1000).astimezone().isoformat(timespec="milliseconds")


def parse_partitions(spec: str | None) -> list[int] | None:
    """'0,2,5-7' -> [0, 2, 5, 6, 7]."""
    if spec is None:
        return None
    out: list[int] = []
    for part in spec.split(","):
        lo, dash, hi = part.strip().partition("-")
        try:
            if dash:
                out.extend(range(int(lo), int(hi) + 1))
            else:
                out.append(int(lo))
        except ValueError:
            raise UsageError(f"bad partition list {spec!r} (example: 0,2,5-7)") from None
    return sorted(set(out))


def version() -> str:
    from importlib import metadata  # only `--version` pays for importing it

    try:
        return metadata.version("strom")
    except metadata.PackageNotFoundError:  # running from a source tree without installing
        return "unknown"
