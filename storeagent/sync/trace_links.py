"""What a polled batch's records say about the sales that caused them, for the batch's
"replica.apply" span (sync.apply): central sends the trace context of the transaction that
wrote each outbox row as the record's `traceparent` header (invwire.tracing).

Only called with tracing on; OpenTelemetry is imported here and nowhere else in the sync path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from invwire import tracing
from storeagent.sync.source import Record

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Link

# A span's links are kept in memory until it ends and exported with it: a rebuild's batch of
# thousands of records (each of another sale) links to the first 128 distinct ones.
MAX_LINKS = 128


def batch_links(records: Sequence[Record], limit: int = MAX_LINKS) -> list[Link]:
    """One link per distinct span whose context the records carry (one sale's records share
    one), in the records' order, at most `limit`."""
    links: list[Link] = []
    seen: set[tuple[int, int]] = set()
    for record in records:
        for link in tracing.link_from_headers(record.headers):
            linked = (link.context.trace_id, link.context.span_id)
            if linked in seen:
                continue
            seen.add(linked)
            links.append(link)
            if len(links) >= limit:
                return links
    return links


def sole_parent(links: Sequence[Link]) -> Context | None:
    """The context to make the batch's span a child of: the linked span, when there is one
    only (a batch of one sale's records); None for a batch of several sales' records."""
    if len(links) != 1:
        return None
    from opentelemetry import trace

    return trace.set_span_in_context(trace.NonRecordingSpan(links[0].context))
