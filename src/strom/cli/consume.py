"""`strom consume`: records from offsets, a time, or as a member of a consumer group or a
share group.

Without `--follow` it stops at the end of each partition as it was when consuming started (as
`kcat -e`); with it, it waits for new records until interrupted or `--num` is reached. A share
group has no end to reach: there it stops once no record has come for `--idle-timeout`.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from strom.cli.common import (
    EXIT_OK,
    UsageError,
    add_client_options,
    now_ms,
    parse_duration_ms,
    parse_partitions,
    parse_timestamp_ms,
)
from strom.cli.record_sink import Sink

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.client import Client
    from strom.client.fetcher import Fetcher
    from strom.protocol.records.codec import Record

EXAMPLES = """\
examples:
  strom consume greetings                           # everything there is, then exit
  strom consume greetings -o latest --follow        # new records as they come
  strom consume orders -p 0 -o 1200 -n 10           # 10 records from offset 1200
  strom consume orders -o -5                        # the last 5 of each partition
  strom consume orders --since 15m --format json    # the last 15 minutes, as JSON lines
  strom consume orders --from-timestamp 2024-05-01T12:00:00Z
  strom consume orders -g readers --follow          # as a member of group readers
  strom consume jobs --share-group workers -n 10    # take 10 records from a queue, accept them
  strom consume jobs --share-group workers --release  # look at records, give them back
  strom consume orders -F '%p:%o %k=%s %h\\n'       # kcat-style template
"""

_TEMPLATE_TOKEN = re.compile(r"%[tpokKsSThR%]|\\[ntr\\]")


def register(commands: Any) -> None:
    consume = commands.add_parser(
        "consume",
        help="consume records (from offsets, a time, or as a group member)",
        description="Consume records and print them, by default their values one per line.",
        epilog=EXAMPLES + _TEMPLATE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    consume.add_argument("topics", nargs="+", metavar="TOPIC")
    consume.add_argument(
        "-g",
        "--group",
        metavar="GROUP",
        help="consume as a member of this group: partitions are shared with "
        "its other members, offsets are committed",
    )
    consume.add_argument(
        "-G",
        "--share-group",
        metavar="GROUP",
        help="consume as a member of this share group (a queue): records are spread over "
        "its members one by one and acknowledged once printed",
    )
    settle = consume.add_mutually_exclusive_group()
    settle.add_argument(
        "--release",
        action="store_true",
        help="with --share-group: release the printed records (they are delivered again)",
    )
    settle.add_argument(
        "--reject",
        action="store_true",
        help="with --share-group: reject the printed records (never delivered again)",
    )
    consume.add_argument(
        "--idle-timeout",
        metavar="DURATION",
        default="2s",
        help="with --share-group and without --follow: stop when no record has come for "
        "this long (default 2s)",
    )
    consume.add_argument(
        "-p",
        "--partitions",
        metavar="LIST",
        help="only these partitions, e.g. 0,2,5-7 (not with --group)",
    )
    start = consume.add_mutually_exclusive_group()
    start.add_argument(
        "-o",
        "--offset",
        default=None,
        metavar="earliest|latest|N|-N",
        help="where to start: earliest (default), latest, an offset, or -N "
        "(N before the end); with --group, only where nothing is committed",
    )
    start.add_argument(
        "--from-timestamp",
        metavar="TIME",
        help="start at the first record at or after TIME (ms or ISO 8601)",
    )
    start.add_argument(
        "--since",
        metavar="DURATION",
        help="start at the first record of the last DURATION (15m, 2h, 1d)",
    )
    consume.add_argument("-n", "--num", type=int, metavar="N", help="stop after N records")
    consume.add_argument(
        "-f", "--follow", action="store_true", help="keep waiting for new records at the end"
    )
    consume.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: the template (default); json: one JSON object a line",
    )
    consume.add_argument(
        "-F",
        "--template",
        default="%s\\n",
        help="text output template (default '%%s\\n'), see below",
    )
    consume.add_argument(
        "--encoding",
        choices=("text", "base64", "hex"),
        default="text",
        help="how --format json shows keys, values and headers (default text: UTF-8)",
    )
    consume.add_argument(
        "--read-committed",
        action="store_true",
        help="skip records of aborted transactions and wait for open ones",
    )
    add_client_options(consume, formats=False)
    consume.set_defaults(command=consume_records)


_TEMPLATE_HELP = """
template tokens (as kcat's -f):
  %t topic  %p partition  %o offset  %k key  %s value  %K key length  %S value length
  %T timestamp (ms)  %R timestamp (ISO 8601)  %h headers (name=value,...)  %% percent
  \\n newline  \\t tab  \\r carriage return  \\\\ backslash
"""


def compile_template(template: str) -> Callable[[str, int, Record], bytes]:
    """A kcat-style output template as a function of (topic, partition, record)."""
    from strom.cli.common import format_ms

    fixed = {"%%": b"%", "\\n": b"\n", "\\t": b"\t", "\\r": b"\r", "\\\\": b"\\"}
    pieces: list[bytes | str] = []  # literal bytes, or a %-token
    pos = 0
    for match in _TEMPLATE_TOKEN.finditer(template):
        if match.start() > pos:
            pieces.append(template[pos : match.start()].encode())
        token = match.group()
        pieces.append(fixed.get(token, token))
        pos = match.end()
    if pos < len(template):
        pieces.append(template[pos:].encode())

    def field(token: str, topic: str, partition: int, r: Record) -> bytes:
        if token == "%s":
            return bytes(r.value or b"")
        if token == "%k":
            return bytes(r.key or b"")
        if token == "%o":
            return str(r.offset).encode()
        if token == "%p":
            return str(partition).encode()
        if token == "%t":
            return topic.encode()
        if token == "%K":
            return str(-1 if r.key is None else len(r.key)).encode()
        if token == "%S":
            return str(-1 if r.value is None else len(r.value)).encode()
        if token == "%T":
            return str(r.timestamp).encode()
        if token == "%R":
            return format_ms(r.timestamp).encode()
        # %h
        return b",".join(
            k.encode(errors="surrogateescape") + b"=" + bytes(v or b"") for k, v in r.headers
        )

    def render(topic: str, partition: int, record: Record) -> bytes:
        return b"".join(
            p if isinstance(p, bytes) else field(p, topic, partition, record) for p in pieces
        )

    return render


def _encoder(encoding: str) -> Callable[[bytes | memoryview | None], str | None]:
    def encode(data: bytes | memoryview | None) -> str | None:
        if data is None:
            return None
        raw = bytes(data)
        if encoding == "base64":
            return base64.b64encode(raw).decode()
        if encoding == "hex":
            return raw.hex()
        return raw.decode("utf-8", errors="replace")

    return encode


def json_renderer(encoding: str) -> Callable[[str, int, Record], bytes]:
    encode = _encoder(encoding)

    def render(topic: str, partition: int, record: Record) -> bytes:
        doc = {
            "topic": topic,
            "partition": partition,
            "offset": record.offset,
            "timestamp": record.timestamp,
            "key": encode(record.key),
            "value": encode(record.value),
            "headers": [{"key": k, "value": encode(v)} for k, v in record.headers],
        }
        return json.dumps(doc, ensure_ascii=False).encode() + b"\n"

    return render


async def consume_records(client: Client, out: Output, args: argparse.Namespace) -> int:
    from strom.client.admin import LATEST, list_offsets, topic_partitions

    if args.group and args.partitions:
        raise UsageError("--partitions and --group do not go together (the group assigns)")
    if args.share_group:
        _check_share_options(args)
    elif args.release or args.reject:
        raise UsageError("--release and --reject go with --share-group")
    render = (
        json_renderer(args.encoding) if args.format == "json" else compile_template(args.template)
    )
    if args.share_group:
        from strom.cli.share_consume import consume_from_share_group

        return await consume_from_share_group(client, out, args, Sink(out, render, args.num))
    start = _start(args)
    metadata = await client.metadata(args.topics)
    partitions = topic_partitions(metadata, args.topics)
    wanted = parse_partitions(args.partitions)
    if wanted is not None:
        missing = [p for p in wanted if all(p != q for _, q in partitions)]
        if missing:
            raise UsageError(f"no partition {missing[0]} in {', '.join(args.topics)}")
        partitions = [(t, p) for t, p in partitions if p in wanted]
    sink = Sink(out, render, args.num)
    if args.group:
        return await _consume_in_group(client, args, start, sink)
    from strom.client.fetcher import Fetcher, resolve_positions

    positions = await resolve_positions(client, partitions, start)
    ends = (
        {}
        if args.follow
        else {tp: a.offset for tp, a in (await list_offsets(client, partitions, LATEST)).items()}
    )
    if not args.follow:
        sink.expect(sum(max(0, ends[tp] - positions[tp]) for tp in partitions))
    fetcher = Fetcher(client, positions, read_committed=args.read_committed)
    try:
        while not sink.full:
            if not args.follow:
                fetcher.positions = {tp: o for tp, o in fetcher.positions.items() if o < ends[tp]}
                if not fetcher.positions:
                    break
            for fetched in await fetcher.fetch():
                sink.write(
                    fetched.topic,
                    fetched.partition,
                    fetched.records,
                    None if args.follow else ends[(fetched.topic, fetched.partition)],
                )
    finally:
        sink.close()
    return EXIT_OK


def _check_share_options(args: argparse.Namespace) -> None:
    """A share group decides what each member gets and where the group starts."""
    if args.group:
        raise UsageError("--group and --share-group do not go together")
    if args.partitions:
        raise UsageError("--partitions and --share-group do not go together (the group assigns)")
    if args.offset or args.from_timestamp or args.since:
        raise UsageError(
            "a share group starts where its share.auto.offset.reset config says; move it with "
            "`strom group seek`"
        )
    if args.read_committed:
        raise UsageError("a share group's isolation is its share.isolation.level config")


def _start(args: argparse.Namespace) -> int | str:
    if args.from_timestamp is not None:
        return f"@{parse_timestamp_ms(args.from_timestamp)}"
    if args.since is not None:
        return f"@{now_ms() - parse_duration_ms(args.since)}"
    offset = args.offset or "earliest"
    if offset in ("earliest", "beginning", "start", "latest", "end"):
        return offset
    try:
        value = int(offset)
    except ValueError:
        raise UsageError(f"--offset takes earliest, latest, N or -N, not {offset!r}") from None
    return value if value >= 0 else offset


async def _consume_in_group(
    client: Client, args: argparse.Namespace, start: int | str, sink: Sink
) -> int:
    from strom.client.admin import LATEST, list_offsets
    from strom.client.fetcher import Fetcher, resolve_positions
    from strom.client.group_member import GroupMember

    member = GroupMember(client, args.group, args.topics)
    fetcher: Fetcher | None = None
    ends: dict[tuple[str, int], int] = {}
    try:
        while not sink.full:
            if member.rejoin_needed:
                if fetcher is not None:
                    await _commit(member, fetcher)
                assignment = await member.join()
                committed = await member.committed()
                fresh = [tp for tp in assignment if tp not in committed]
                positions = dict(committed)
                if fresh:
                    positions.update(await resolve_positions(client, fresh, start))
                fetcher = Fetcher(client, positions, read_committed=args.read_committed)
                if not args.follow and assignment:
                    answers = await list_offsets(client, assignment, LATEST)
                    ends = {tp: a.offset for tp, a in answers.items()}
            assert fetcher is not None
            if not args.follow:
                active = {tp: o for tp, o in fetcher.positions.items() if o < ends.get(tp, 0)}
                if not active:
                    break
            if not fetcher.positions:
                await _idle(member)
                continue
            before = dict(fetcher.positions)
            complete = True
            for fetched in await fetcher.fetch():
                tp = (fetched.topic, fetched.partition)
                complete &= sink.write(
                    fetched.topic,
                    fetched.partition,
                    fetched.records,
                    None if args.follow else ends.get(tp),
                )
            live = fetcher.positions
            if not complete:
                # Commit only as far as what was printed.
                printed = sink.positions_printed()
                live = {tp: max(o, printed.get(tp, o)) for tp, o in before.items()}
            await member.commit(live)
    finally:
        sink.close()
        await member.leave()
    return EXIT_OK


async def _commit(member: Any, fetcher: Fetcher) -> None:
    from strom.client import KafkaError

    # A refused commit means the generation moved on: the new owner starts from the last one.
    with contextlib.suppress(KafkaError):
        await member.commit(fetcher.positions)


async def _idle(member: Any) -> None:
    import asyncio

    while not member.rejoin_needed:
        await asyncio.sleep(0.2)
