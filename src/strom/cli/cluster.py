"""`strom cluster info`: brokers, controller, cluster id and the API versions they answer."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strom.cli.common import EXIT_OK, add_client_options, version

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client

EXAMPLES = """\
examples:
  strom cluster info
  strom cluster info -b kafka1:9092 --api-versions
  strom cluster info --format json | jq '.brokers[].id'
"""


def register(commands: Any) -> None:
    cluster = commands.add_parser(
        "cluster",
        help="the cluster: brokers, controller, API versions",
        description="Look at the cluster.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = cluster.add_subparsers(dest="cluster_command", metavar="COMMAND", required=True)
    info = sub.add_parser(
        "info",
        help="brokers, controller, cluster id, API versions",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    info.add_argument(
        "--api-versions",
        action="store_true",
        help="also every API each broker answers, with its version range",
    )
    add_client_options(info)
    info.set_defaults(command=cluster_info)


async def cluster_info(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.admin import describe_cluster
    from strom.client.errors import UnsupportedByBrokerError
    from strom.protocol.messages import API_SPECS

    info = await describe_cluster(client)
    conn = await client.any_connection()
    apis: list[dict[str, Any]] = []
    for key, (lo, hi) in sorted(conn.versions.items()):
        spec = API_SPECS.get(key)
        try:
            used: int | None = conn.version_for(key) if spec is not None else None
        except UnsupportedByBrokerError:
            used = None
        apis.append(
            {
                "key": key,
                "name": spec.name if spec else f"unknown({key})",
                "min_version": lo,
                "max_version": hi,
                "client_version": used,
            }
        )
    doc: dict[str, Any] = {
        "cluster_id": info.cluster_id,
        "controller_id": info.controller_id,
        "brokers": [
            {
                "id": node,
                "host": host,
                "port": port,
                "rack": rack,
                "controller": node == info.controller_id,
                "apis": len(info.api_versions.get(node, {})),
            }
            for node, host, port, rack in info.brokers
        ],
        "client": f"strom {version()}",
        "api_versions": {"broker": conn.address, "apis": apis},
    }
    if out.json:
        out.emit_json(doc)
        return EXIT_OK
    out.table(
        ["CLUSTER-ID", "CONTROLLER", "BROKERS"],
        [[info.cluster_id, info.controller_id, len(info.brokers)]],
    )
    out.line()
    out.table(
        ["ID", "HOST", "PORT", "RACK", "CONTROLLER", "APIS"],
        [
            [
                b["id"],
                b["host"],
                b["port"],
                b["rack"] or "",
                "*" if b["controller"] else "",
                b["apis"],
            ]
            for b in doc["brokers"]
        ],
        right=["ID", "PORT", "APIS"],
    )
    if args.api_versions:
        out.line()
        out.table(
            ["KEY", "API", "BROKER-VERSIONS", "CLIENT-USES"],
            [
                [
                    a["key"],
                    a["name"],
                    f"{a['min_version']}-{a['max_version']}",
                    "" if a["client_version"] is None else a["client_version"],
                ]
                for a in apis
            ],
            title=f"API versions of {conn.address}",
            right=["KEY"],
        )
    return EXIT_OK
