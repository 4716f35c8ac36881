"""The console's group pages: every consumer and share group with its state, members and total
lag, and one group's members and lag per partition (for a share group, measured from its
share-partition start offset)."""

from __future__ import annotations

from strom.client import Client, ClientError
from strom.client import groups as client_groups
from strom.server.http.console_pages import Html, facts, join, link, section, table


async def groups(client: Client) -> Html:
    listed = await client_groups.list_groups(client)
    rows = []
    for g in listed:
        total: int | str = ""
        members: int | str = ""
        try:
            description = await client_groups.describe_group(client, g.group_id)
            lags = await client_groups.group_lag(client, g.group_id, description)
            total = sum(lag.lag or 0 for lag in lags)
            members = len(description.members)
        except ClientError:
            pass  # shown without members and lag
        rows.append(
            [
                link(f"/ui/groups/{g.group_id}", g.group_id),
                g.state,
                g.group_type or g.protocol_type,
                members,
                total,
                g.coordinator,
            ]
        )
    return table(
        ["Group", "State", "Type", "Members", "Lag", "Coordinator"],
        rows,
        numeric=["Members", "Lag", "Coordinator"],
        id_="groups",
        empty="no groups",
    )


async def group(client: Client, group_id: str) -> Html:
    description = await client_groups.describe_group(client, group_id)
    lags = await client_groups.group_lag(client, group_id, description)
    # A share group's position is its share-partition start offset.
    share = description.protocol_type == "share"
    position = "Start offset" if share else "Committed"
    return join(
        [
            facts(
                [
                    ("State", description.state),
                    ("Protocol", description.protocol or description.protocol_type),
                    ("Coordinator", description.coordinator),
                    ("Total lag", sum(lag.lag or 0 for lag in lags)),
                ]
            ),
            section(
                "Members",
                table(
                    ["Member", "Client id", "Host", "Partitions"],
                    [
                        [
                            m.member_id,
                            m.client_id,
                            m.client_host,
                            " ".join(f"{t}-{p}" for t, p in m.assignment),
                        ]
                        for m in description.members
                    ],
                    id_="members",
                    empty="no active members",
                ),
            ),
            section(
                "Lag",
                table(
                    ["Topic", "Partition", position, "Log end", "Lag", "Member"],
                    [
                        [
                            lag.topic,
                            lag.partition,
                            "" if lag.committed is None else lag.committed,
                            lag.log_end,
                            "" if lag.lag is None else lag.lag,
                            lag.member_id or "",
                        ]
                        for lag in lags
                    ],
                    numeric=["Partition", position, "Log end", "Lag"],
                    id_="lag",
                    empty="no committed offsets" if not share else "nothing consumed yet",
                ),
            ),
        ]
    )
