"""One module per Kafka API; importing this package registers every handler."""

from strom.server.handlers import (  # noqa: F401
    alter_configs,
    api_versions,
    classic_group,
    consumer_group_heartbeat,
    create_partitions,
    create_topics,
    delete_records,
    delete_topics,
    describe_cluster,
    describe_configs,
    describe_log_dirs,
    fetch,
    find_coordinator,
    group_admin,
    group_offsets,
    incremental_alter_configs,
    list_offsets,
    metadata,
    produce,
)
