"""The console's cluster overview and broker pages: the brokers with the controller, and each
broker's configs as DescribeConfigs gives them."""

from __future__ import annotations

from strom.client import Client
from strom.client import admin as client_admin
from strom.client import groups as client_groups
from strom.server.http.console_pages import Html, facts, join, link, section, table


async def overview(client: Client) -> Html:
    info = await client_admin.describe_cluster(client)
    metadata = await client.metadata(None)
    topics = [t for t in metadata.topics.values() if not t.internal]
    partitions = sum(len(t.partitions) for t in topics)
    groups = await client_groups.list_groups(client)
    return join(
        [
            facts(
                [
                    ("Cluster id", info.cluster_id),
                    ("Controller", info.controller_id),
                    ("Brokers", len(info.brokers)),
                    ("Topics", len(topics)),
                    ("Partitions", partitions),
                    ("Groups", len(groups)),
                ]
            ),
            section("Brokers", brokers_table(info)),
        ]
    )


def brokers_table(info: client_admin.ClusterInfo) -> Html:
    return table(
        ["Id", "Host", "Port", "Rack", "Role", "APIs"],
        [
            [
                link(f"/ui/brokers/{node}", node),
                host,
                port,
                rack or "",
                "controller" if node == info.controller_id else "",
                len(info.api_versions.get(node, {})),
            ]
            for node, host, port, rack in info.brokers
        ],
        numeric=["Port", "APIs"],
        id_="brokers",
    )


async def brokers(client: Client) -> Html:
    return brokers_table(await client_admin.describe_cluster(client))


async def broker_configs(client: Client, node: str) -> Html:
    configs = await client_admin.describe_configs(client, client_admin.RESOURCE_BROKER, node)
    return table(
        ["Config", "Value", "Source"],
        [[c.name, "(sensitive)" if c.sensitive else c.value, c.source] for c in configs],
        id_="configs",
    )
