"""The agent's calls to central: the order client, its retries and circuit breaker, and the
heartbeat."""
