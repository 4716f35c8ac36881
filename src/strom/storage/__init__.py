"""Partition logs in Kafka's on-disk format: segments with their offset, time and transaction
indexes, producer state snapshots, checkpoints, recovery after a crash, retention and
compaction. `LogManager` owns every `PartitionLog` under `log.dirs`."""
