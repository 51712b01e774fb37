"""Kafka topics: names (before a deployment's prefix) and partition counts."""

from __future__ import annotations

TOPIC_CATEGORY = "new-category"
TOPIC_PRODUCT = "new-product"
TOPIC_INVENTORY = "inventory-updated"
# Later statuses of orders (cancellations), keyed by order id; every store reads it and keeps
# its own orders' (docs/wire.md).
TOPIC_ORDER = "order-updated"
TOPICS = (TOPIC_CATEGORY, TOPIC_PRODUCT, TOPIC_INVENTORY, TOPIC_ORDER)

# Keyed by entity, so per-key order holds with any count; stock changes are the busiest.
PARTITIONS = {TOPIC_CATEGORY: 1, TOPIC_PRODUCT: 3, TOPIC_INVENTORY: 6, TOPIC_ORDER: 3}
