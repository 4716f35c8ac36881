"""Which handler module answers each API key, and the versions it registers with `@handles`.

The broker imports a handler module on the first request for one of its keys (`handler_for`
in registry.py), so start-up pays for no handler and for none of the generated message
modules they use, and a single broker never imports the cluster-only ones (the ZooKeeper
client among them). ApiVersions answers from this table. tests/unit/server/test_handler_index.py
holds it to the `@handles` decorators: a new API or a version change goes in both places.
"""

from __future__ import annotations

from typing import Final

# api key: (module under strom.server.handlers, lowest version, highest version)
HANDLER_INDEX: Final[dict[int, tuple[str, int, int]]] = {
    0: ("produce", 0, 11),
    1: ("fetch", 0, 17),
    2: ("list_offsets", 0, 10),
    3: ("metadata", 0, 12),
    4: ("leader_and_isr", 0, 7),
    5: ("stop_replica", 0, 4),
    6: ("update_metadata", 0, 8),
    7: ("controlled_shutdown", 0, 3),
    8: ("group_offsets", 0, 9),
    9: ("group_offsets", 0, 9),
    10: ("find_coordinator", 0, 6),
    11: ("classic_group", 0, 9),
    12: ("classic_group", 0, 4),
    13: ("classic_group", 0, 5),
    14: ("classic_group", 0, 5),
    15: ("group_admin", 0, 5),
    16: ("group_admin", 0, 5),
    17: ("sasl", 0, 1),
    18: ("api_versions", 0, 4),
    19: ("create_topics", 0, 7),
    20: ("delete_topics", 0, 6),
    21: ("delete_records", 0, 2),
    22: ("init_producer_id", 0, 5),
    23: ("offsets_for_leader_epoch", 0, 4),
    24: ("add_partitions_to_txn", 0, 5),
    25: ("add_offsets_to_txn", 0, 4),
    26: ("end_txn", 0, 4),
    27: ("write_txn_markers", 0, 1),
    28: ("txn_offset_commit", 0, 4),
    29: ("acls", 0, 3),
    30: ("acls", 0, 3),
    31: ("acls", 0, 3),
    32: ("describe_configs", 0, 4),
    33: ("alter_configs", 0, 2),
    34: ("alter_replica_log_dirs", 0, 2),
    35: ("describe_log_dirs", 0, 4),
    36: ("sasl", 0, 2),
    37: ("create_partitions", 0, 3),
    42: ("group_admin", 0, 2),
    43: ("elect_leaders", 0, 2),
    44: ("incremental_alter_configs", 0, 1),
    45: ("alter_partition_reassignments", 0, 0),
    46: ("list_partition_reassignments", 0, 0),
    47: ("group_offsets", 0, 0),
    50: ("user_scram_credentials", 0, 0),
    51: ("user_scram_credentials", 0, 0),
    56: ("alter_partition", 0, 3),
    57: ("update_features", 0, 1),
    58: ("envelope", 0, 0),
    60: ("describe_cluster", 0, 1),
    61: ("describe_producers", 0, 0),
    65: ("describe_transactions", 0, 0),
    66: ("list_transactions", 0, 1),
    67: ("allocate_producer_ids", 0, 0),
    68: ("consumer_group_heartbeat", 0, 1),
    69: ("group_admin", 0, 0),
    76: ("share_group", 1, 1),
    77: ("share_group", 1, 1),
    78: ("share_fetch", 1, 2),
    79: ("share_fetch", 1, 2),
    83: ("share_state", 0, 0),
    84: ("share_state", 0, 0),
    85: ("share_state", 0, 1),
    86: ("share_state", 0, 0),
    87: ("share_state", 0, 1),
    90: ("share_group_offsets", 0, 1),
    91: ("share_group_offsets", 0, 0),
    92: ("share_group_offsets", 0, 0),
}
