"""The leader-epoch check shared by the APIs that carry a client's current_leader_epoch."""

from __future__ import annotations

from strom.protocol.errors import ErrorCode

NO_EPOCH = -1


def check_leader_epoch(client_epoch: int, leader_epoch: int) -> ErrorCode:
    """A client behind the leader's epoch is fenced; one ahead of it knows a newer leader."""
    if client_epoch in (NO_EPOCH, leader_epoch):
        return ErrorCode.NONE
    if client_epoch < leader_epoch:
        return ErrorCode.FENCED_LEADER_EPOCH
    return ErrorCode.UNKNOWN_LEADER_EPOCH
