"""The broker's HTTP side (`strom.http.listeners`): Prometheus metrics, health and readiness
for orchestrators, and the web console."""
