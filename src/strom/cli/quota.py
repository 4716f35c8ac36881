"""`strom quota describe|alter`: client quotas of users, client ids and IPs, in the manner of
`rpk cluster quotas`. An entity is named with `--name TYPE=NAME` and `--default TYPE` (the
default of a type), TYPE one of user, client-id, ip; a user and a client id together are the
quota of that client id of that user."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strom.cli.common import EXIT_OK, UsageError, add_client_options

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client

EXAMPLES = """\
examples:
  strom quota describe                                        # every quota
  strom quota describe --name user=alice                      # alice's, and her client ids'
  strom quota describe --name user=alice --strict             # exactly that entity
  strom quota describe --default client-id --any user
  strom quota alter --name user=alice --add producer_byte_rate=1048576
  strom quota alter --name user=alice --name client-id=app --add consumer_byte_rate=2097152
  strom quota alter --default client-id --add request_percentage=50
  strom quota alter --name user=alice --delete producer_byte_rate
"""

ENTITY_TYPES = ("user", "client-id", "ip")


def register(commands: Any) -> None:
    quota = commands.add_parser(
        "quota",
        help="describe and alter client quotas",
        description="Describe and alter client quotas (producer_byte_rate, consumer_byte_rate, "
        "request_percentage, controller_mutation_rate, connection_creation_rate).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = quota.add_subparsers(dest="quota_command", metavar="COMMAND", required=True)

    describe = sub.add_parser(
        "describe",
        help="quotas matching the entities named (every quota when none is)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _entity_options(describe)
    describe.add_argument(
        "--any",
        action="append",
        default=[],
        choices=ENTITY_TYPES,
        metavar="TYPE",
        help="any entity of the type that has a quota (repeatable)",
    )
    describe.add_argument(
        "--strict", action="store_true", help="only entities with exactly the components named"
    )
    add_client_options(describe)
    describe.set_defaults(command=describe_quotas)

    alter = sub.add_parser(
        "alter",
        help="set or remove quotas of one entity",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _entity_options(alter)
    alter.add_argument(
        "--add", action="append", default=[], metavar="KEY=VALUE", help="set a quota (repeatable)"
    )
    alter.add_argument(
        "--delete", action="append", default=[], metavar="KEY", help="remove a quota (repeatable)"
    )
    alter.add_argument("--dry-run", action="store_true", help="validate only; change nothing")
    add_client_options(alter)
    alter.set_defaults(command=alter_quotas)


def _entity_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="TYPE=NAME",
        help="an entity: user=NAME, client-id=NAME or ip=ADDRESS (repeatable)",
    )
    parser.add_argument(
        "--default",
        action="append",
        default=[],
        choices=ENTITY_TYPES,
        metavar="TYPE",
        help="the default entity of a type: user, client-id or ip (repeatable)",
    )


def _named(args: argparse.Namespace) -> dict[str, str | None]:
    entity: dict[str, str | None] = {}
    for spec in args.name:
        kind, sep, name = spec.partition("=")
        if not sep or kind not in ENTITY_TYPES or not name:
            raise UsageError(f"--name takes user=NAME, client-id=NAME or ip=ADDRESS, not {spec!r}")
        if kind in entity:
            raise UsageError(f"{kind} named twice")
        entity[kind] = name
    for kind in args.default:
        if kind in entity:
            raise UsageError(f"{kind} named twice")
        entity[kind] = None
    return entity


async def describe_quotas(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.security_admin import (
        MATCH_DEFAULT,
        MATCH_EXACT,
        MATCH_SPECIFIED,
        QuotaComponent,
        describe_quotas,
        entity_text,
    )

    components = [
        QuotaComponent(kind, MATCH_DEFAULT if name is None else MATCH_EXACT, name)
        for kind, name in _named(args).items()
    ]
    components += [QuotaComponent(kind, MATCH_SPECIFIED) for kind in args.any]
    found = await describe_quotas(client, components, strict=args.strict)
    rows: list[dict[str, Any]] = [
        {
            "entity": [{"type": t, "name": n} for t, n in entity],
            "entity_text": entity_text(entity),
            "quotas": values,
        }
        for entity, values in sorted(found.items(), key=lambda kv: entity_text(kv[0]))
    ]
    if out.json:
        out.emit_json([{"entity": r["entity"], "quotas": r["quotas"]} for r in rows])
    else:
        out.table(
            ["ENTITY", "QUOTA", "VALUE"],
            [
                [r["entity_text"], key, _number(value)]
                for r in rows
                for key, value in r["quotas"].items()
            ],
            right=["VALUE"],
        )
    return EXIT_OK


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() else str(value)


async def alter_quotas(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.security_admin import alter_quotas, entity_text

    entity = _named(args)
    if not entity:
        raise UsageError("name the entity: --name TYPE=NAME or --default TYPE")
    changes: dict[str, float | None] = {}
    for spec in args.add:
        key, sep, value = spec.partition("=")
        if not sep or not key:
            raise UsageError(f"--add takes KEY=VALUE, not {spec!r}")
        try:
            changes[key] = float(value)
        except ValueError:
            raise UsageError(f"{key}: {value!r} is not a number") from None
    for key in args.delete:
        changes[key] = None
    if not changes:
        raise UsageError("nothing to change: --add KEY=VALUE or --delete KEY")
    await alter_quotas(client, entity, changes, validate_only=args.dry_run)
    text = entity_text(tuple(entity.items()))
    rows = [
        {
            "entity": text,
            "quota": key,
            "value": value,
            "status": ("removed" if value is None else "set") + (" (dry run)" * args.dry_run),
        }
        for key, value in changes.items()
    ]
    if out.json:
        out.emit_json(rows)
    else:
        out.table(
            ["ENTITY", "QUOTA", "VALUE", "STATUS"],
            [
                [
                    r["entity"],
                    r["quota"],
                    "" if r["value"] is None else _number(r["value"]),
                    r["status"],
                ]
                for r in rows
            ],
        )
    return EXIT_OK
