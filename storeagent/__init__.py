"""invctl store agent: a store's Kafka-fed SQLite replica and local terminal API."""
