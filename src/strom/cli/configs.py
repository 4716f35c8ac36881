"""`alter-config` of `strom topic` and `strom group`: IncrementalAlterConfigs on named
resources (SET and DELETE), one status row per resource."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strom.cli.common import EXIT_FAILED, EXIT_OK, UsageError, add_client_options, key_values

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client


def add_alter_config_parser(sub: Any, noun: str) -> argparse.ArgumentParser:
    """The `alter-config` subcommand for resources called `noun`s (topic, group)."""
    alter: argparse.ArgumentParser = sub.add_parser(
        "alter-config", help=f"set or delete {noun} configs"
    )
    alter.add_argument("names", nargs="+", metavar=noun.upper())
    alter.add_argument(
        "--set", action="append", metavar="KEY=VALUE", dest="set_", help="set a config (repeatable)"
    )
    alter.add_argument(
        "--delete",
        action="append",
        metavar="KEY",
        default=[],
        help="return a config to its default (repeatable)",
    )
    alter.add_argument("--dry-run", action="store_true", help="validate only")
    add_client_options(alter)
    return alter


async def alter_resource_configs(
    client: Client, out: Output, args: argparse.Namespace, resource_type: int, noun: str
) -> int:
    from strom.client import KafkaError
    from strom.client.admin import alter_configs

    to_set = key_values(args.set_, "--set")
    if not to_set and not args.delete:
        raise UsageError("nothing to change: give --set KEY=VALUE or --delete KEY")
    rows, failed = [], False
    for name in args.names:
        try:
            await alter_configs(
                client, resource_type, name, to_set, args.delete, validate_only=args.dry_run
            )
            rows.append(
                {noun: name, "status": "valid" if args.dry_run else "altered", "error": None}
            )
        except KafkaError as exc:
            failed = True
            rows.append({noun: name, "status": "failed", "error": str(exc)})
    if out.json:
        out.emit_json(rows)
    else:
        out.table([noun.upper(), "STATUS"], [[r[noun], r["status"]] for r in rows])
        out.failures([r["error"] for r in rows])
    return EXIT_FAILED if failed else EXIT_OK
