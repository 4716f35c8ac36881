"""Integration tests: a real `strom serve` process driven by real Kafka clients."""
