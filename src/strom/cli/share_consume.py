"""`strom consume --share-group`: a member of a share group printing what it is given, as
Kafka's kafka-console-share-consumer does.

Every record printed is acknowledged with the next request (accepted, or released/rejected
with `--release`/`--reject`); records acquired beyond `--num` are released so that other
members get them at once rather than when their acquisition locks expire. Leaving closes the
share sessions and the membership, which gives back anything still held.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from strom.cli.common import EXIT_OK, parse_duration_ms

if TYPE_CHECKING:
    from strom.cli.output import Output
    from strom.cli.record_sink import Sink
    from strom.client import Client
    from strom.client.share_consumer import ShareRecord


async def consume_from_share_group(
    client: Client, out: Output, args: argparse.Namespace, sink: Sink
) -> int:
    from strom.client.admin import topic_partitions
    from strom.client.share_consumer import AcknowledgeType, ShareFetcher, ShareMember

    idle_s = parse_duration_ms(args.idle_timeout) / 1000.0
    # Unknown topics fail here, before joining.
    topic_partitions(await client.metadata(args.topics), args.topics)
    settle = (
        AcknowledgeType.RELEASE
        if args.release
        else AcknowledgeType.REJECT
        if args.reject
        else AcknowledgeType.ACCEPT
    )
    member = ShareMember(client, args.share_group, args.topics)
    fetcher = ShareFetcher(member)
    try:
        await member.join()
        last_record = time.monotonic()
        while not sink.full:
            if member.failure is not None:
                raise member.failure
            got = await fetcher.fetch()
            for message in fetcher.errors:
                out.note(message)
            fetcher.errors.clear()
            if got:
                last_record = time.monotonic()
            elif not args.follow and member.assigned.is_set():
                if time.monotonic() - last_record >= idle_s:
                    break
            else:
                # Not yet assigned: the idle time counts from the assignment.
                last_record = time.monotonic()
            for run in _runs(got):
                before = sink.count
                sink.write(run[0].topic, run[0].partition, [r.record for r in run], None)
                printed = sink.count - before
                for i, record in enumerate(run):
                    fetcher.acknowledge(record, settle if i < printed else AcknowledgeType.RELEASE)
    finally:
        sink.close()
        try:
            await fetcher.close()
        finally:
            await member.leave()
    return EXIT_OK


def _runs(records: list[ShareRecord]) -> list[list[ShareRecord]]:
    """Records grouped by partition, in the order the partitions first appear."""
    by_partition: dict[tuple[str, int], list[ShareRecord]] = defaultdict(list)
    for record in records:
        by_partition[(record.topic, record.partition)].append(record)
    return list(by_partition.values())
