"""`strom group list|describe|seek|alter-config|delete`: consumer groups and share groups,
their members and lag (a share group's from DescribeShareGroupOffsets: start offset and lag per
partition), and group configs (a share group's start, locks, dead-letter topic, filter)."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from strom.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    UsageError,
    add_client_options,
    now_ms,
    parse_duration_ms,
    parse_partitions,
    parse_timestamp_ms,
)
from strom.cli.configs import add_alter_config_parser, alter_resource_configs

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client

EXAMPLES = """\
examples:
  strom group list
  strom group list --lag                        # members and total lag of each group
  strom group describe readers                  # members, and lag per partition
  strom group seek readers --to earliest --topic orders
  strom group seek readers --to 1200 --topic orders:0,1
  strom group seek readers --to-timestamp 2024-05-01T12:00:00Z --topic orders
  strom group seek readers --to-duration 15m --topic orders   # where it was 15 minutes ago
  strom group alter-config workers --set errors.deadletterqueue.topic.name=dlq.jobs
  strom group alter-config workers --set strom.share.filter="header.kind = 'order'"
  strom group delete readers
"""


def register(commands: Any) -> None:
    group = commands.add_parser(
        "group",
        help="list, describe (lag), seek, configure and delete groups",
        description="List, describe, seek, configure and delete consumer and share groups.",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = group.add_subparsers(dest="group_command", metavar="COMMAND", required=True)

    list_ = sub.add_parser("list", help="list groups (consumer, classic and share groups)")
    list_.add_argument(
        "--lag",
        action="store_true",
        help="describe each group too: its members and total lag (a request or two per group)",
    )
    add_client_options(list_)
    list_.set_defaults(command=list_groups)

    describe = sub.add_parser("describe", help="state, members and lag per partition")
    describe.add_argument("groups", nargs="+", metavar="GROUP")
    add_client_options(describe)
    describe.set_defaults(command=describe_groups)

    seek = sub.add_parser(
        "seek",
        help="move a group's committed offsets, or a share group's start offsets (the group "
        "must have no active members)",
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    seek.add_argument("group", metavar="GROUP")
    where = seek.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--to", metavar="earliest|latest|OFFSET", help="the log start, the log end, or an offset"
    )
    where.add_argument(
        "--to-timestamp",
        metavar="TIME",
        help="the first offset at or after a time (ms since the epoch or ISO 8601)",
    )
    where.add_argument(
        "--to-duration",
        metavar="DURATION",
        help="the first offset at or after now minus DURATION (90s, 15m, 2h, 1d)",
    )
    where.add_argument(
        "--shift-by", type=int, metavar="N", help="move the committed offsets by N (negative: back)"
    )
    seek.add_argument(
        "--topic",
        action="append",
        metavar="TOPIC[:PARTITIONS]",
        default=[],
        help="topics (and partitions, e.g. orders:0,2-3) to move (repeatable; "
        "default: those the group has committed offsets for)",
    )
    seek.add_argument("--dry-run", action="store_true", help="show the new offsets only")
    add_client_options(seek)
    seek.set_defaults(command=seek_group)

    alter = add_alter_config_parser(sub, "group")
    alter.set_defaults(command=alter_group_config)

    delete = sub.add_parser("delete", help="delete groups (with no active members)")
    delete.add_argument("groups", nargs="+", metavar="GROUP")
    add_client_options(delete)
    delete.set_defaults(command=delete_groups)


async def alter_group_config(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.admin import RESOURCE_GROUP

    return await alter_resource_configs(client, out, args, RESOURCE_GROUP, "group")


async def list_groups(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.groups import list_groups as list_all

    groups = await list_all(client)
    rows: list[dict[str, Any]] = [
        {
            "group": g.group_id,
            "state": g.state,
            "type": g.group_type or g.protocol_type,
            "protocol_type": g.protocol_type,
            "coordinator": g.coordinator,
        }
        for g in groups
    ]
    columns = ["GROUP", "STATE", "TYPE", "COORDINATOR"]
    if args.lag:
        from strom.client.groups import describe_group, group_lag

        for row in rows:
            description = await describe_group(client, row["group"])
            lags = await group_lag(client, row["group"], description)
            row["members"] = len(description.members)
            row["total_lag"] = sum(lag.lag or 0 for lag in lags)
        columns += ["MEMBERS", "TOTAL-LAG"]
    if out.json:
        out.emit_json(rows)
    else:
        keys = ["group", "state", "type", "coordinator", "members", "total_lag"]
        out.table(
            columns,
            [[r[k] for k in keys[: len(columns)]] for r in rows],
            right=["COORDINATOR", "MEMBERS", "TOTAL-LAG"],
        )
    return EXIT_OK


async def describe_groups(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.groups import describe_group, group_lag

    described = []
    for group_id in args.groups:
        description = await describe_group(client, group_id)
        lags = await group_lag(client, group_id, description)
        # A share group commits nothing: its position is the share-partition start offset.
        share = description.protocol_type == "share"
        position_key = "start_offset" if share else "committed_offset"
        described.append(
            {
                "group": group_id,
                "state": description.state,
                "protocol_type": description.protocol_type,
                "protocol": description.protocol,
                "coordinator": description.coordinator,
                "members": [
                    {
                        "member_id": m.member_id,
                        "instance_id": m.instance_id,
                        "client_id": m.client_id,
                        "host": m.client_host,
                        "partitions": [{"topic": t, "partition": p} for t, p in m.assignment],
                    }
                    for m in description.members
                ],
                "offsets": [
                    {
                        "topic": lag.topic,
                        "partition": lag.partition,
                        position_key: lag.committed,
                        "log_end_offset": lag.log_end,
                        "lag": lag.lag,
                        "member_id": lag.member_id,
                        **({"delayed": lag.delayed} if share else {}),
                    }
                    for lag in lags
                ],
                "total_lag": sum(lag.lag or 0 for lag in lags),
                **(await _share_queue_configs(client, group_id) if share else {}),
            }
        )
    if out.json:
        out.emit_json(described)
        return EXIT_OK
    for i, g in enumerate(described):
        if i:
            out.line()
        out.table(
            ["GROUP", "STATE", "PROTOCOL", "COORDINATOR", "MEMBERS", "TOTAL-LAG"],
            [
                [
                    g["group"],
                    g["state"],
                    g["protocol"] or g["protocol_type"],
                    g["coordinator"],
                    len(g["members"]),
                    g["total_lag"],
                ]
            ],
        )
        if g["protocol_type"] == "share":
            out.line()
            out.table(
                ["DEAD-LETTER-TOPIC", "FILTER"],
                [[g["dead_letter_topic"] or "-", g["filter"] or "-"]],
            )
        if g["members"]:
            out.line()
            out.table(
                ["MEMBER", "CLIENT-ID", "HOST", "PARTITIONS"],
                [
                    [m["member_id"], m["client_id"], m["host"], _partition_list(m["partitions"])]
                    for m in g["members"]
                ],
            )
        if g["offsets"]:
            share = g["protocol_type"] == "share"
            position, key = (
                ("START-OFFSET", "start_offset") if share else ("COMMITTED", "committed_offset")
            )
            # A share group's records waiting for their delivery time (strom.deliver.at,
            # strom.delay.ms), as a Strom broker reports them.
            delayed = ["DELAYED"] if share else []
            out.line()
            out.table(
                ["TOPIC", "PARTITION", position, "LOG-END", "LAG", *delayed, "MEMBER"],
                [
                    [
                        o["topic"],
                        o["partition"],
                        "-" if o[key] is None else o[key],
                        o["log_end_offset"],
                        "-" if o["lag"] is None else o["lag"],
                        *(["-" if o["delayed"] is None else o["delayed"]] if share else []),
                        o["member_id"] or "",
                    ]
                    for o in g["offsets"]
                ],
                right=["PARTITION", position, "LOG-END", "LAG", *delayed],
            )
    return EXIT_OK


_DEAD_LETTER_TOPIC = "errors.deadletterqueue.topic.name"
_FILTER = "strom.share.filter"


async def _share_queue_configs(client: Client, group_id: str) -> dict[str, str | None]:
    """A share group's dead-letter topic and filter (None: not set, or a broker that does not
    describe group configs)."""
    from strom.client import KafkaError
    from strom.client.admin import RESOURCE_GROUP, describe_configs

    try:
        entries = await describe_configs(
            client, RESOURCE_GROUP, group_id, [_DEAD_LETTER_TOPIC, _FILTER]
        )
    except KafkaError:
        entries = []
    values = {e.name: e.value or None for e in entries}
    return {"dead_letter_topic": values.get(_DEAD_LETTER_TOPIC), "filter": values.get(_FILTER)}


def _partition_list(parts: list[dict[str, Any]]) -> str:
    by_topic: dict[str, list[int]] = {}
    for p in parts:
        by_topic.setdefault(p["topic"], []).append(p["partition"])
    return " ".join(f"{t}:{','.join(map(str, ps))}" for t, ps in by_topic.items())


async def seek_group(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.admin import EARLIEST, LATEST, list_offsets
    from strom.client.groups import (
        alter_share_group_offsets,
        commit_offsets,
        committed_offsets,
        describe_group,
        share_group_offsets,
    )

    # A share group has start offsets instead of committed ones (AlterShareGroupOffsets).
    description = await describe_group(client, args.group)
    share = description.protocol_type == "share"
    if share:
        starts_of = await share_group_offsets(client, args.group, description.coordinator)
        committed = {tp: start for tp, (start, _, _) in starts_of.items()}
    else:
        committed = await committed_offsets(client, args.group)
    if args.topic:
        wanted_topics: dict[str, list[int] | None] = {}
        for spec in args.topic:
            name, _, parts = spec.partition(":")
            wanted_topics[name] = parse_partitions(parts) if parts else None
        metadata = await client.metadata(sorted(wanted_topics))
        partitions = []
        for name, parts in wanted_topics.items():
            known = sorted(metadata.topic(name).partitions)
            for p in parts if parts is not None else known:
                if p not in known:
                    raise UsageError(f"topic {name!r} has no partition {p}")
                partitions.append((name, p))
    else:
        partitions = sorted(committed)
        if not partitions:
            raise UsageError(
                f"group {args.group!r} has no committed offsets: name the topics with --topic"
            )
        await client.metadata(sorted({t for t, _ in partitions}))
    starts = await list_offsets(client, partitions, EARLIEST)
    ends = await list_offsets(client, partitions, LATEST)
    targets: dict[tuple[str, int], int] = {}
    if args.to is not None:
        if args.to in ("earliest", "start", "beginning"):
            targets = {tp: starts[tp].offset for tp in partitions}
        elif args.to in ("latest", "end"):
            targets = {tp: ends[tp].offset for tp in partitions}
        else:
            try:
                offset = int(args.to)
            except ValueError:
                raise UsageError(
                    f"--to takes earliest, latest or an offset, not {args.to!r}"
                ) from None
            targets = dict.fromkeys(partitions, offset)
    elif args.shift_by is not None:
        targets = {}
        for tp in partitions:
            if tp not in committed:
                raise UsageError(f"group {args.group!r} has no committed offset on {tp[0]}-{tp[1]}")
            targets[tp] = committed[tp] + args.shift_by
    else:
        if args.to_timestamp is not None:
            ts = parse_timestamp_ms(args.to_timestamp)
        else:
            ts = now_ms() - parse_duration_ms(args.to_duration)
        found = await list_offsets(client, partitions, ts)
        targets = {
            tp: found[tp].offset if found[tp].offset >= 0 else ends[tp].offset for tp in partitions
        }
    # Kafka's tool clamps to the log's range, so a seek never lands outside it.
    targets = {tp: min(max(o, starts[tp].offset), ends[tp].offset) for tp, o in targets.items()}
    if not args.dry_run:
        if share:
            await alter_share_group_offsets(client, args.group, targets)
        else:
            await commit_offsets(client, args.group, targets)
    rows = [
        {
            "topic": t,
            "partition": p,
            "previous_offset": committed.get((t, p)),
            "new_offset": targets[(t, p)],
        }
        for t, p in sorted(targets)
    ]
    if out.json:
        out.emit_json(rows)
    else:
        out.table(
            ["TOPIC", "PARTITION", "PREVIOUS", "NEW"],
            [
                [
                    r["topic"],
                    r["partition"],
                    "-" if r["previous_offset"] is None else r["previous_offset"],
                    r["new_offset"],
                ]
                for r in rows
            ],
            right=["PARTITION", "PREVIOUS", "NEW"],
        )
        if args.dry_run:
            out.note("dry run: nothing committed")
    return EXIT_OK


async def delete_groups(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.groups import delete_groups as delete

    results = await delete(client, args.groups)
    rows = [
        {
            "group": g,
            "status": "failed" if results[g] else "deleted",
            "error": str(results[g]) if results[g] else None,
        }
        for g in args.groups
    ]
    if out.json:
        out.emit_json(rows)
    else:
        out.table(["GROUP", "STATUS"], [[r["group"], r["status"]] for r in rows])
        out.failures([r["error"] for r in rows])
    return EXIT_FAILED if any(r["error"] for r in rows) else EXIT_OK
