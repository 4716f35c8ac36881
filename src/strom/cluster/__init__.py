"""Topic and broker metadata: a JSON file in the data directory on a single broker, a watched
cache of ZooKeeper in cluster mode (`zk_metadata`, `zk/`), and topic name rules."""
