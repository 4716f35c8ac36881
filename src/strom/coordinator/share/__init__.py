"""Share groups (KIP-932): share-partition state, the share group coordinator and the share coordinator."""
