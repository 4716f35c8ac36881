"""Client quotas without I/O: Kafka's quota entities and their precedence, the sampled rate a
quota is measured with, and the per-quota-type managers that turn usage into throttle times."""
