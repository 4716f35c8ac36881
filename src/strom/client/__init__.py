"""A small asyncio Kafka-protocol client built on Strom's generated codecs.

The `strom` CLI and the broker's web console talk to brokers (Strom or Kafka) through it:
every API the codecs know, it can send. Modules: `connection` (one pipelined connection and
version negotiation), `client` (bootstrap, metadata, routing to leaders and coordinators),
`admin` (topics, configs, offsets, the cluster), `groups` (group administration and lag),
`producer`, `fetcher` (reading from positions) and `group_member` (classic group membership
with the range assignor).
"""

from strom.client.client import Client, ClusterMetadata
from strom.client.errors import BrokerUnreachableError, ClientError, KafkaError

__all__ = ["BrokerUnreachableError", "Client", "ClientError", "ClusterMetadata", "KafkaError"]
