"""A consume-transform-produce app with exactly-once semantics, for test_transactions.py.

    python eos_app.py BOOTSTRAP INPUT OUTPUT GROUP TRANSACTIONAL_ID [DELAY_MS]

Reads INPUT (read_committed) in the consumer group GROUP, writes every record's value with an
"out-" prefix to OUTPUT, and commits its input offsets with send_offsets_to_transaction, each
batch in one transaction of the confluent-kafka producer TRANSACTIONAL_ID. A static group
member (group.instance.id) so that a restarted instance takes over at once. Prints
"committed <n>" after every transaction. DELAY_MS (default 0) is slept after every record
written, so that a kill is likely to land inside a transaction. The test kills it with SIGKILL mid-stream and starts
it again: a restarted instance fences the old producer (init_transactions aborts whatever it
left open) and resumes from the offsets committed with the last transaction.
"""

from __future__ import annotations

import sys
import time

import confluent_kafka as ck


def main() -> None:
    bootstrap, source, sink, group, txn_id = sys.argv[1:6]
    delay = float(sys.argv[6]) / 1000 if len(sys.argv) > 6 else 0.0
    consumer = ck.Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": group,
            "group.instance.id": f"{group}-instance",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
        }
    )
    producer = ck.Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": txn_id,
            "transaction.timeout.ms": 30000,
            "linger.ms": 5,
        }
    )
    producer.init_transactions(30)
    consumer.subscribe([source])
    total = 0
    while True:
        messages = consumer.consume(num_messages=50, timeout=0.5)
        records = [m for m in messages if m.error() is None]
        if not records:
            continue
        producer.begin_transaction()
        for m in records:
            producer.produce(sink, key=m.key(), value=b"out-" + (m.value() or b""))
            if delay:
                producer.poll(0)
                time.sleep(delay)
        producer.send_offsets_to_transaction(
            consumer.position(consumer.assignment()), consumer.consumer_group_metadata(), 30
        )
        producer.commit_transaction(30)
        total += len(records)
        print(f"committed {total}", flush=True)


if __name__ == "__main__":
    try:
        main()
    except ck.KafkaException as exc:
        # Fenced, or an abortable error: the test starts a new instance, which resumes from
        # the last committed transaction (what a real app does after a fatal error).
        print(f"failed: {exc}", flush=True)
        sys.exit(3)
