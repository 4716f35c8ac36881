"""Authentication without I/O: principals, TLS principal mapping, SASL mechanisms and the
per-connection authentication state machine that runs before requests reach the dispatcher."""
