"""Kafka topics: names (before a deployment's prefix) and partition counts."""

from __future__ import annotations

TOPIC_CATEGORY = "new-category"
TOPIC_PRODUCT = "new-product"
TOPIC_INVENTORY = "inventory-updated"
TOPICS = (TOPIC_CATEGORY, TOPIC_PRODUCT, TOPIC_INVENTORY)

# Keyed by entity, so per-key order holds with any count; stock changes are the busiest.
PARTITIONS = {TOPIC_CATEGORY: 1, TOPIC_PRODUCT: 3, TOPIC_INVENTORY: 6}
