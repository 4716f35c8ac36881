"""`strom acl create|list|delete`: access control lists, in the manner of `rpk security acl`.

`create` makes every combination of the principals, hosts, operations and resources it is
given (as rpk and kafka-acls do); `list` and `delete` take the same resource options as
filters. A broker without an authorizer answers SECURITY_DISABLED.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strom.cli.common import EXIT_FAILED, EXIT_OK, UsageError, add_client_options

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client
    from strom.client.security_admin import AclBinding, AclFilter

EXAMPLES = """\
examples:
  strom acl create --allow-principal User:alice --operation read,describe --topic orders
  strom acl create --allow-principal User:alice --operation read --group readers
  strom acl create --allow-principal User:app --operation write --topic orders- \\
      --resource-pattern-type prefixed
  strom acl create --deny-principal User:mallory --deny-host 10.0.0.9 --operation all --cluster
  strom acl list
  strom acl list --topic orders --principal User:alice --format json
  strom acl delete --principal User:alice --topic orders
"""

OPERATIONS = [
    "all",
    "read",
    "write",
    "create",
    "delete",
    "alter",
    "describe",
    "cluster_action",
    "describe_configs",
    "alter_configs",
    "idempotent_write",
    "create_tokens",
    "describe_tokens",
]
RESOURCE_OPTIONS = ("topic", "group", "transactional_id")
COLUMNS = [
    "PRINCIPAL",
    "HOST",
    "RESOURCE-TYPE",
    "RESOURCE-NAME",
    "PATTERN",
    "OPERATION",
    "PERMISSION",
]


def register(commands: Any) -> None:
    acl = commands.add_parser(
        "acl",
        help="create, list and delete ACLs",
        description="Create, list and delete access control lists (the broker needs "
        "authorizer.class.name set, else SECURITY_DISABLED).",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = acl.add_subparsers(dest="acl_command", metavar="COMMAND", required=True)

    create = sub.add_parser(
        "create",
        help="create ACLs",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    who = create.add_argument_group("who")
    who.add_argument("--allow-principal", action="append", default=[], metavar="TYPE:NAME")
    who.add_argument("--deny-principal", action="append", default=[], metavar="TYPE:NAME")
    who.add_argument(
        "--allow-host", action="append", default=[], metavar="HOST", help="default: any (*)"
    )
    who.add_argument(
        "--deny-host", action="append", default=[], metavar="HOST", help="default: any (*)"
    )
    create.add_argument(
        "--operation",
        action="append",
        default=[],
        required=True,
        metavar="OP[,OP...]",
        help="operations: " + ", ".join(OPERATIONS),
    )
    _resource_options(create, pattern_default="literal", pattern_choices=("literal", "prefixed"))
    add_client_options(create)
    create.set_defaults(command=create_acls)

    for name, help_, command in (
        ("list", "list ACLs (all, or those matching the filters)", list_acls),
        ("delete", "delete the ACLs matching the filters", delete_acls),
    ):
        p = sub.add_parser(
            name, help=help_, epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter
        )
        filters = p.add_argument_group("filters")
        filters.add_argument("--principal", metavar="TYPE:NAME")
        filters.add_argument("--host", metavar="HOST")
        filters.add_argument("--operation", metavar="OP", help="one of " + ", ".join(OPERATIONS))
        filters.add_argument("--permission", choices=("allow", "deny"))
        _resource_options(
            p, pattern_default="any", pattern_choices=("any", "match", "literal", "prefixed")
        )
        add_client_options(p)
        p.set_defaults(command=command)


def _resource_options(
    parser: argparse.ArgumentParser, *, pattern_default: str, pattern_choices: tuple[str, ...]
) -> None:
    group = parser.add_argument_group("resources")
    group.add_argument("--topic", action="append", default=[], metavar="NAME")
    group.add_argument("--group", action="append", default=[], metavar="NAME")
    group.add_argument("--transactional-id", action="append", default=[], metavar="NAME")
    group.add_argument("--cluster", action="store_true", help="the cluster resource")
    group.add_argument(
        "--resource-pattern-type",
        default=pattern_default,
        choices=pattern_choices,
        help=f"how resource names match (default {pattern_default})",
    )


def _resources(args: argparse.Namespace) -> list[tuple[Any, str]]:
    from strom.security.acl import CLUSTER_NAME, ResourceType

    out: list[tuple[Any, str]] = []
    for option in RESOURCE_OPTIONS:
        for name in getattr(args, option):
            out.append((ResourceType[option.upper()], name))
    if args.cluster:
        out.append((ResourceType.CLUSTER, CLUSTER_NAME))
    return out


def _operation(text: str) -> Any:
    from strom.security.acl import AclOperation

    name = text.strip().lower().replace("-", "_")
    if name not in OPERATIONS:
        raise UsageError(f"unknown operation {text!r} (one of {', '.join(OPERATIONS)})")
    return AclOperation[name.upper()]


def _principal(text: str) -> str:
    kind, sep, name = text.partition(":")
    if not sep or not kind or not name:
        raise UsageError(f"a principal is TYPE:NAME (e.g. User:alice), not {text!r}")
    return text


def _row(b: AclBinding) -> dict[str, Any]:
    return {
        "principal": b.principal,
        "host": b.host,
        "resource_type": b.resource_type.name,
        "resource_name": b.resource_name,
        "pattern_type": b.pattern_type.name,
        "operation": b.operation.name,
        "permission": b.permission.name,
    }


def _show(out: Output, rows: list[dict[str, Any]], *, errors: bool = False) -> None:
    if out.json:
        out.emit_json(rows)
        return
    keys = [
        "principal",
        "host",
        "resource_type",
        "resource_name",
        "pattern_type",
        "operation",
        "permission",
    ]
    columns = COLUMNS + (["ERROR"] if errors else [])
    if errors:
        keys.append("error")
    out.table(columns, [[r[k] or "" for k in keys] for r in rows])


async def create_acls(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.security_admin import AclBinding, create_acls
    from strom.security.acl import AclPermissionType, PatternType

    resources = _resources(args)
    if not resources:
        raise UsageError("name a resource: --topic, --group, --transactional-id or --cluster")
    if not args.allow_principal and not args.deny_principal:
        raise UsageError("name a principal: --allow-principal or --deny-principal")
    operations = [_operation(op) for spec in args.operation for op in spec.split(",") if op]
    pattern = PatternType[args.resource_pattern_type.upper()]
    bindings = []
    for permission, principals, hosts in (
        (AclPermissionType.ALLOW, args.allow_principal, args.allow_host or ["*"]),
        (AclPermissionType.DENY, args.deny_principal, args.deny_host or ["*"]),
    ):
        for principal in principals:
            for host in hosts:
                for rtype, rname in resources:
                    for op in operations:
                        bindings.append(
                            AclBinding(
                                rtype, rname, pattern, _principal(principal), host, op, permission
                            )
                        )
    results = await create_acls(client, bindings)
    rows = [
        {**_row(b), "error": None if err is None else str(err).removeprefix("create ACL: ")}
        for b, err in results
    ]
    _show(out, rows, errors=True)
    # One line per distinct refusal: a broker without an authorizer refuses every binding alike.
    out.failures(list(dict.fromkeys(str(err) for _, err in results if err is not None)))
    return EXIT_FAILED if any(r["error"] for r in rows) else EXIT_OK


def _filters(args: argparse.Namespace) -> list[AclFilter]:
    from strom.client.security_admin import AclFilter
    from strom.security.acl import AclOperation, AclPermissionType, PatternType, ResourceType

    pattern = PatternType[args.resource_pattern_type.upper()]
    principal = _principal(args.principal) if args.principal else None
    operation = _operation(args.operation) if args.operation else AclOperation.ANY
    permission = (
        AclPermissionType[args.permission.upper()] if args.permission else AclPermissionType.ANY
    )
    resources: list[tuple[ResourceType, str | None]] = list(_resources(args))
    if not resources:
        resources = [(ResourceType.ANY, None)]
    return [
        AclFilter(rtype, rname, pattern, principal, args.host, operation, permission)
        for rtype, rname in resources
    ]


async def list_acls(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.security_admin import describe_acls

    found: dict[Any, None] = {}
    for f in _filters(args):
        for binding in await describe_acls(client, f):
            found[binding] = None
    _show(out, [_row(b) for b in found])
    return EXIT_OK


async def delete_acls(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.security_admin import delete_acls

    if not (_resources(args) or args.principal or args.host or args.operation):
        raise UsageError(
            "name what to delete: --topic, --group, --transactional-id, --cluster, "
            "--principal, --host or --operation"
        )
    deleted = await delete_acls(client, _filters(args))
    _show(out, [_row(b) for b in deleted])
    if not deleted and not out.json:
        out.note("no ACL matched")
    return EXIT_OK
