"""One module per Kafka API. Each registers its handler when imported; the broker imports
them on first use (server/handler_index.py, `registry.handler_for`)."""
