"""`strom user create|list|delete`: SCRAM users (SASL/SCRAM credentials), in the manner of
`rpk security user`. The password is salted and hashed by the CLI; the broker never sees it."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import TYPE_CHECKING, Any

from strom.cli.common import EXIT_OK, UsageError, add_client_options

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client

EXAMPLES = """\
examples:
  strom user create alice --password s3cret                  # SCRAM-SHA-256
  strom user create alice --password s3cret --mechanism SCRAM-SHA-512 --iterations 8192
  printf 's3cret\\n' | strom user create alice                # the password from stdin
  strom user list
  strom user delete alice                                     # every mechanism of alice
"""

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512")


def register(commands: Any) -> None:
    user = commands.add_parser(
        "user",
        help="create, list and delete SCRAM users",
        description="Create (or change the password of), list and delete SASL/SCRAM users.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = user.add_subparsers(dest="user_command", metavar="COMMAND", required=True)

    create = sub.add_parser(
        "create",
        help="create a user, or set its password",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("user", metavar="USER")
    create.add_argument(
        "-p",
        "--password",
        help="the password (default: asked on a terminal, else the first line of stdin)",
    )
    create.add_argument(
        "--mechanism",
        type=str.upper,
        choices=MECHANISMS,
        default="SCRAM-SHA-256",
        help="default SCRAM-SHA-256",
    )
    create.add_argument(
        "--iterations", type=int, default=4096, help="PBKDF2 iterations (4096-16384, default 4096)"
    )
    add_client_options(create)
    create.set_defaults(command=create_user)

    list_ = sub.add_parser("list", help="list users and their mechanisms")
    add_client_options(list_)
    list_.set_defaults(command=list_users)

    delete = sub.add_parser("delete", help="delete a user's credentials")
    delete.add_argument("user", metavar="USER")
    delete.add_argument(
        "--mechanism",
        type=str.upper,
        choices=MECHANISMS,
        help="delete only this mechanism's credential (default: every one the user has)",
    )
    add_client_options(delete)
    delete.set_defaults(command=delete_user)


def _password(args: argparse.Namespace) -> str:
    if args.password is not None:
        password: str = args.password
    elif sys.stdin.isatty():
        password = getpass.getpass(f"password for {args.user}: ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        raise UsageError("the password is empty")
    return password


async def create_user(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.security_admin import upsert_scram_user

    password = _password(args)
    await upsert_scram_user(client, args.user, password, args.mechanism, args.iterations)
    row = {"user": args.user, "mechanism": args.mechanism, "iterations": args.iterations}
    if out.json:
        out.emit_json(row)
    else:
        out.table(["USER", "MECHANISM", "ITERATIONS"], [list(row.values())])
    return EXIT_OK


async def list_users(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.security_admin import describe_scram_users

    rows = [
        {"user": c.user, "mechanism": c.mechanism, "iterations": c.iterations}
        for c in await describe_scram_users(client)
    ]
    if out.json:
        out.emit_json(rows)
    else:
        out.table(
            ["USER", "MECHANISM", "ITERATIONS"],
            [list(r.values()) for r in rows],
            right=["ITERATIONS"],
        )
    return EXIT_OK


async def delete_user(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.security_admin import delete_scram_user, describe_scram_users

    if args.mechanism:
        mechanisms = [args.mechanism]
    else:
        # RESOURCE_NOT_FOUND (exit 1) for a user with no credentials.
        mechanisms = [c.mechanism for c in await describe_scram_users(client, [args.user])]
    await delete_scram_user(client, args.user, mechanisms)
    rows = [{"user": args.user, "mechanism": m, "status": "deleted"} for m in mechanisms]
    if out.json:
        out.emit_json(rows)
    else:
        out.table(["USER", "MECHANISM", "STATUS"], [list(r.values()) for r in rows])
    return EXIT_OK
