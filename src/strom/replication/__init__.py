"""Replication: partition state on leaders and followers, and the fetchers that copy logs.

See README.md in this directory for the API and how the broker wires it in.
"""
