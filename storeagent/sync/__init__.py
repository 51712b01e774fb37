"""Kafka to the replica: the record source port and its Kafka adapter, the sync loop, the
batch apply and the loop's live progress."""
