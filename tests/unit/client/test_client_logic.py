"""Pure parts of the client and the CLI: Kafka's partitioner hash, the range assignor, the
kcat-style template and the argument parsers."""

from __future__ import annotations

import pytest

from strom.cli.common import UsageError, parse_duration_ms, parse_partitions, parse_timestamp_ms
from strom.cli.consume import compile_template
from strom.client.connection import split_address
from strom.client.errors import ClientError
from strom.client.group_member import range_assign
from strom.client.producer import murmur2, partition_for_key
from strom.protocol.records.codec import Record


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Kafka's UtilsTest.testMurmur2 values.
        (b"21", -973932308),
        (b"foobar", -790332482),
        (b"a-little-bit-long-string", -985981536),
        (b"a-little-bit-longer-string", -1486304829),
        (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        (b"abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected


def test_partition_for_key_is_positive_modulo() -> None:
    assert partition_for_key(b"21", 7) == (-973932308 & 0x7FFFFFFF) % 7


def test_range_assign_splits_contiguous_runs() -> None:
    got = range_assign({"m2": ["a", "b"], "m1": ["a"], "m3": ["a"]}, {"a": 7, "b": 2})
    assert got == {
        "m1": [("a", 0), ("a", 1), ("a", 2)],
        "m2": [("a", 3), ("a", 4), ("b", 0), ("b", 1)],
        "m3": [("a", 5), ("a", 6)],
    }


def test_range_assign_more_members_than_partitions() -> None:
    got = range_assign({"a": ["t"], "b": ["t"], "c": ["t"]}, {"t": 2})
    assert got == {"a": [("t", 0)], "b": [("t", 1)], "c": []}


def test_template() -> None:
    record = Record(42, 1700000000000, b"k", b"v", [("h1", b"x"), ("h2", None)])
    render = compile_template("%t/%p/%o %k=%s %K %S %T %h %%\\t|\\n")
    assert render("orders", 3, record) == b"orders/3/42 k=v 1 1 1700000000000 h1=x,h2= %\t|\n"
    empty = Record(0, 0, None, None)
    assert compile_template("[%k][%s] %K %S")("t", 0, empty) == b"[][] -1 -1"


def test_durations_and_partitions() -> None:
    assert parse_duration_ms("90s") == 90_000
    assert parse_duration_ms("1h30m") == 5_400_000
    assert parse_duration_ms("250ms") == 250
    for bad in ("", "10", "1x", "h1"):
        with pytest.raises(UsageError):
            parse_duration_ms(bad)
    assert parse_partitions("0,2,5-7") == [0, 2, 5, 6, 7]
    assert parse_partitions(None) is None
    with pytest.raises(UsageError):
        parse_partitions("a-b")
    assert parse_timestamp_ms("1700000000000") == 1700000000000
    assert parse_timestamp_ms("2023-11-14T22:13:20Z") == 1700000000000
    with pytest.raises(UsageError):
        parse_timestamp_ms("yesterday")


def test_addresses() -> None:
    assert split_address("kafka1:9093") == ("kafka1", 9093)
    assert split_address("kafka1") == ("kafka1", 9092)
    assert split_address("[::1]:9094") == ("::1", 9094)
    for bad in (":9092", "host:port", "host:70000"):
        with pytest.raises(ClientError):
            split_address(bad)
