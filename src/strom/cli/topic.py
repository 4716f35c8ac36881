"""`strom topic create|list|describe|alter-config|add-partitions|delete`."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strom.cli.common import EXIT_FAILED, EXIT_OK, add_client_options, key_values
from strom.cli.configs import add_alter_config_parser, alter_resource_configs

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client

EXAMPLES = """\
examples:
  strom topic create orders -p 6 -r 3 -c retention.ms=86400000 -c cleanup.policy=compact
  strom topic list
  strom topic describe orders
  strom topic describe orders --configs --format json
  strom topic alter-config orders --set retention.ms=3600000 --delete cleanup.policy
  strom topic add-partitions orders --num 2
  strom topic delete orders payments
"""


def register(commands: Any) -> None:
    topic = commands.add_parser(
        "topic",
        help="create, list, describe, configure and delete topics",
        description="Create, list, describe, configure and delete topics.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = topic.add_subparsers(dest="topic_command", metavar="COMMAND", required=True)

    create = sub.add_parser(
        "create",
        help="create topics",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    create.add_argument("topics", nargs="+", metavar="TOPIC")
    create.add_argument(
        "-p",
        "--partitions",
        type=int,
        default=-1,
        help="partition count (default: the broker's num.partitions)",
    )
    create.add_argument(
        "-r",
        "--replication-factor",
        type=int,
        default=-1,
        help="replicas per partition (default: the broker's default.replication.factor)",
    )
    create.add_argument(
        "-c", "--config", action="append", metavar="KEY=VALUE", help="a topic config (repeatable)"
    )
    create.add_argument("--dry-run", action="store_true", help="validate only; create nothing")
    add_client_options(create)
    create.set_defaults(command=create_topics)

    list_ = sub.add_parser("list", help="list topics")
    list_.add_argument(
        "-i",
        "--internal",
        action="store_true",
        help="include internal topics (__consumer_offsets, ...)",
    )
    add_client_options(list_)
    list_.set_defaults(command=list_topics)

    describe = sub.add_parser("describe", help="partitions, replicas, offsets and configs")
    describe.add_argument("topics", nargs="+", metavar="TOPIC")
    describe.add_argument(
        "--configs",
        action="store_true",
        help="also the topic's configs (those not at their default)",
    )
    describe.add_argument(
        "--all-configs", action="store_true", help="also every config, defaults included"
    )
    add_client_options(describe)
    describe.set_defaults(command=describe_topics)

    alter = add_alter_config_parser(sub, "topic")
    alter.set_defaults(command=alter_config)

    grow = sub.add_parser("add-partitions", help="add partitions to topics")
    grow.add_argument("topics", nargs="+", metavar="TOPIC")
    how = grow.add_mutually_exclusive_group(required=True)
    how.add_argument("-n", "--num", type=int, help="how many partitions to add")
    how.add_argument("--total", type=int, help="the partition count to grow to")
    add_client_options(grow)
    grow.set_defaults(command=add_partitions)

    delete = sub.add_parser("delete", help="delete topics")
    delete.add_argument("topics", nargs="+", metavar="TOPIC")
    add_client_options(delete)
    delete.set_defaults(command=delete_topics)


async def create_topics(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client import KafkaError
    from strom.client.admin import create_topic

    configs = key_values(args.config, "--config")
    rows, failed = [], False
    for name in args.topics:
        try:
            created = await create_topic(
                client,
                name,
                partitions=args.partitions,
                replication_factor=args.replication_factor,
                configs=configs,
                validate_only=args.dry_run,
            )
            rows.append(
                {
                    "topic": name,
                    "status": "valid" if args.dry_run else "created",
                    "partitions": created.partitions,
                    "replication_factor": created.replication_factor,
                    "error": None,
                }
            )
        except KafkaError as exc:
            failed = True
            rows.append(
                {
                    "topic": name,
                    "status": "failed",
                    "partitions": None,
                    "replication_factor": None,
                    "error": str(exc),
                }
            )
    if out.json:
        out.emit_json(rows)
    else:
        out.table(
            ["TOPIC", "STATUS", "PARTITIONS", "REPLICAS"],
            [[r["topic"], r["status"], r["partitions"], r["replication_factor"]] for r in rows],
        )
        out.failures([r["error"] for r in rows])
    return EXIT_FAILED if failed else EXIT_OK


async def list_topics(client: Client, out: Output, args: argparse.Namespace) -> int:
    metadata = await client.metadata(None)
    topics = sorted(
        (t for t in metadata.topics.values() if args.internal or not t.internal),
        key=lambda t: t.name,
    )
    rows = [
        {
            "topic": t.name,
            "partitions": len(t.partitions),
            "replication_factor": max((len(p.replicas) for p in t.partitions.values()), default=0),
            "internal": t.internal,
        }
        for t in topics
    ]
    if out.json:
        out.emit_json(rows)
    else:
        out.table(
            ["TOPIC", "PARTITIONS", "REPLICAS"],
            [[r["topic"], r["partitions"], r["replication_factor"]] for r in rows],
            right=["PARTITIONS", "REPLICAS"],
        )
    return EXIT_OK


async def describe_topics(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.admin import EARLIEST, LATEST, RESOURCE_TOPIC, describe_configs, list_offsets
    from strom.storage.partition_metadata import kafka_uuid_string

    metadata = await client.metadata(args.topics)
    described = []
    for name in args.topics:
        info = metadata.topic(name)
        tps = [(name, p) for p in sorted(info.partitions)]
        starts = await list_offsets(client, tps, EARLIEST) if tps else {}
        ends = await list_offsets(client, tps, LATEST) if tps else {}
        partitions = [
            {
                "partition": p.partition,
                "leader": p.leader,
                "leader_epoch": p.leader_epoch,
                "replicas": p.replicas,
                "isr": p.isr,
                "offline_replicas": p.offline,
                "log_start_offset": starts[(name, p.partition)].offset,
                "high_watermark": ends[(name, p.partition)].offset,
            }
            for p in (info.partitions[i] for i in sorted(info.partitions))
        ]
        entry: dict[str, Any] = {
            "topic": name,
            "topic_id": kafka_uuid_string(info.topic_id),
            "internal": info.internal,
            "partitions": partitions,
        }
        if args.configs or args.all_configs:
            configs = await describe_configs(client, RESOURCE_TOPIC, name)
            entry["configs"] = [
                {"name": c.name, "value": None if c.sensitive else c.value, "source": c.source}
                for c in configs
                if args.all_configs or not c.is_default
            ]
        described.append(entry)
    if out.json:
        out.emit_json(described)
        return EXIT_OK
    for i, entry in enumerate(described):
        if i:
            out.line()
        replicas = max((len(p["replicas"]) for p in entry["partitions"]), default=0)
        out.table(
            ["NAME", "ID", "PARTITIONS", "REPLICAS", "INTERNAL"],
            [
                [
                    entry["topic"],
                    entry["topic_id"],
                    len(entry["partitions"]),
                    replicas,
                    "yes" if entry["internal"] else "no",
                ]
            ],
        )
        out.line()
        out.table(
            ["PARTITION", "LEADER", "EPOCH", "REPLICAS", "ISR", "LOG-START", "HIGH-WATERMARK"],
            [
                [
                    p["partition"],
                    p["leader"],
                    p["leader_epoch"],
                    _ids(p["replicas"]),
                    _ids(p["isr"]),
                    p["log_start_offset"],
                    p["high_watermark"],
                ]
                for p in entry["partitions"]
            ],
            right=["PARTITION", "LEADER", "EPOCH", "LOG-START", "HIGH-WATERMARK"],
        )
        if "configs" in entry and not entry["configs"]:
            out.line()
            out.line("every config at its default (--all-configs lists them)")
        elif "configs" in entry:
            out.line()
            out.table(
                ["CONFIG", "VALUE", "SOURCE"],
                [[c["name"], c["value"], c["source"]] for c in entry["configs"]],
            )
    return EXIT_OK


def _ids(ids: list[int]) -> str:
    return ",".join(str(i) for i in ids)


async def alter_config(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.admin import RESOURCE_TOPIC

    return await alter_resource_configs(client, out, args, RESOURCE_TOPIC, "topic")


async def add_partitions(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client import KafkaError
    from strom.client.admin import create_partitions

    metadata = await client.metadata(args.topics)
    rows, failed = [], False
    for name in args.topics:
        try:
            current = len(metadata.topic(name).partitions)
            total = args.total if args.total is not None else current + args.num
            await create_partitions(client, name, total)
            rows.append(
                {"topic": name, "status": f"{current} -> {total} partitions", "error": None}
            )
        except KafkaError as exc:
            failed = True
            rows.append({"topic": name, "status": "failed", "error": str(exc)})
    _status(out, rows)
    return EXIT_FAILED if failed else EXIT_OK


async def delete_topics(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.admin import delete_topics as delete

    results = await delete(client, args.topics)
    rows = [
        {
            "topic": name,
            "status": "failed" if results.get(name) else "deleted",
            "error": str(results[name]) if results.get(name) else None,
        }
        for name in args.topics
    ]
    _status(out, rows)
    return EXIT_FAILED if any(r["error"] for r in rows) else EXIT_OK


def _status(out: Output, rows: list[dict[str, Any]]) -> None:
    if out.json:
        out.emit_json(rows)
    else:
        out.table(["TOPIC", "STATUS"], [[r["topic"], r["status"]] for r in rows])
        out.failures([r["error"] for r in rows])
