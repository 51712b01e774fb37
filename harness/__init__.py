"""Real parts for tests and benchmarks alike: Kafka cluster clients and their credentials, the
agent's command line, topic creation, process lookup, waiting for a state, HAProxy from the
deployment's configuration, the relay lease as the database holds it. Nothing here is a fake
(fakes live in tests/support/), and no product package imports it."""
