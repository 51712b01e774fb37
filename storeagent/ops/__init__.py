"""Running the agent: the supervised background task, systemd notifications, Prometheus
metrics and the vital signs they read."""
