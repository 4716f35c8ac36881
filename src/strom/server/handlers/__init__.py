"""One module per Kafka API; importing this package registers every handler."""

from strom.server.handlers import (  # noqa: F401
    alter_configs,
    api_versions,
    create_partitions,
    create_topics,
    delete_records,
    delete_topics,
    describe_cluster,
    describe_configs,
    describe_log_dirs,
    fetch,
    incremental_alter_configs,
    list_offsets,
    metadata,
    produce,
)
