"""The transaction coordinator: producer ids, transactional ids and their transactions, as
I/O-free shards over `__transaction_state` partitions (see shard.py)."""

from strom.coordinator.txn.config import TxnConfig
from strom.coordinator.txn.metadata import TransactionMetadata, TxnState
from strom.coordinator.txn.records import TxnRecord
from strom.coordinator.txn.shard import InitResult, MarkerJob, TransactionCoordinatorShard

__all__ = [
    "InitResult",
    "MarkerJob",
    "TransactionCoordinatorShard",
    "TransactionMetadata",
    "TxnConfig",
    "TxnRecord",
    "TxnState",
]
