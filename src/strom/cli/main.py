"""The `strom` command.

`strom serve [--config FILE] [--set key=value ...] [--log-level LEVEL]` starts a broker;
`strom topic|group|produce|consume|cluster|acl|user|quota ...` talk to any Kafka-compatible broker through
`strom.client`; `strom log dump` reads a data directory offline; `strom --version` prints the
version. The server package is imported only by `serve`, and rich and the client only by the
commands that use them, so that `--help`, `--version` and configuration errors answer without
loading them.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from strom.config import BrokerConfig, ConfigError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")

EPILOG = """\
examples:
  strom serve                                   # a broker on 127.0.0.1:9092
  strom topic create orders -p 6                # then, against any Kafka-compatible broker:
  echo hello | strom produce orders
  strom consume orders -g readers --follow
  strom group describe readers                  # members and lag
  strom cluster info
  strom acl create --allow-principal User:alice --operation read --topic orders
  strom user create alice --password s3cret     # a SCRAM-SHA-256 user
  strom quota alter --name user=alice --add producer_byte_rate=1048576
  strom log dump strom-data/orders-0 --records  # offline

exit codes: 0 done, 1 refused by the broker or not found, 2 bad usage,
            3 no broker reachable, 130 interrupted
'COMMAND --help' tells more about each command.
"""


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected key=value, got {text!r}")
    return key.strip(), value


def build_parser() -> argparse.ArgumentParser:
    from strom.cli import acl, cluster, consume, group, log_dump, produce, quota, topic, user

    parser = argparse.ArgumentParser(
        prog="strom",
        description="An Apache Kafka-compatible event streaming broker, and tools to look at "
        "and use any Kafka-compatible cluster.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="store_true", help="print the version and exit")
    commands = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    serve = commands.add_parser(
        "serve",
        help="run a broker",
        description="Run a broker. Configuration precedence, lowest first: defaults, the "
        "properties file, STROM_* environment variables (STROM_LOG_DIRS -> log.dirs), --set.",
    )
    serve.add_argument("--config", "-c", type=Path, metavar="FILE", help="a server.properties file")
    serve.add_argument(
        "--set",
        dest="overrides",
        action="append",
        type=_key_value,
        default=[],
        metavar="KEY=VALUE",
        help="set a configuration key (repeatable; wins over the file and the environment)",
    )
    serve.add_argument(
        "--log-level", default="INFO", type=str.upper, choices=LOG_LEVELS, help="default INFO"
    )
    for module in (topic, group, produce, consume, cluster, acl, user, quota, log_dump):
        module.register(commands)
    return parser


def setup_logging(level: str) -> None:
    root = logging.getLogger()
    # Replace handlers rather than add: main() may run more than once in one process (tests).
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)


def _serve(args: argparse.Namespace) -> int:
    setup_logging(args.log_level)
    try:
        config = BrokerConfig.load(args.config, dict(args.overrides), os.environ)
    except ConfigError as exc:
        print(f"strom: invalid configuration: {exc}", file=sys.stderr)
        return 2
    from strom.server.app import serve  # imported late: it pulls in the whole server

    try:
        return serve(config)
    except KeyboardInterrupt:  # a second Ctrl-C during shutdown
        return 130


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(list(argv) if argv is not None else None)
    if args.version:
        from strom.cli.common import version

        print(f"strom {version()}")
        return 0
    if args.subcommand == "serve":
        return _serve(args)
    if getattr(args, "command", None) is not None:
        from strom.cli.common import run

        return run(args, args.command)
    if getattr(args, "offline", None) is not None:
        from strom.cli.common import run_offline

        return run_offline(args, args.offline)
    parser.print_help(sys.stderr)
    return 2
