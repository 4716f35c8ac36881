"""Kafka's wire protocol, sans-IO: primitives, request and response framing, the messages
generated from Kafka's JSON specs, record batches and message sets, compression codecs and
error codes. Nothing here touches sockets, files or the event loop."""
