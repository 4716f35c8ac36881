"""A real Strom broker for tests, in any test runner: `with strom.testing.broker() as b:` starts
`strom serve` as a subprocess on a free port with its data in a temporary directory, waits
until it serves, and stops it (SIGTERM, then SIGKILL) when the block ends. `b.bootstrap` is the
address to give any Kafka client. The pytest plugin (`strom.testing.pytest_plugin`, registered
through the `pytest11` entry point) wraps it as the `strom_broker` fixtures.

The broker binds port 0 and its log says which port it got, so two tests never race for a
port. Settings default to what tests want (groups rebalance at once, one partition for each
internal topic); `config` overrides any of them with Kafka's names.
"""

from strom.testing.broker import BrokerStartError, StromBroker, broker

__all__ = ["BrokerStartError", "StromBroker", "broker"]
