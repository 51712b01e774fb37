"""Spans around central's use cases (invwire.tracing): nothing is done when tracing is off."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from invwire import tracing
from invwire.errors import WireError

if TYPE_CHECKING:
    from opentelemetry.trace import Span


@contextmanager
def use_case(name: str, **attributes: object) -> Iterator[Span | None]:
    """An INTERNAL span `name` around the block, with `attributes` named as
    tracing.annotate takes them (store_id, lines, ...). A refusal leaving the block (a
    WireError) is the span's `invctl.outcome`: its code; on success the caller annotates
    the outcome. None, and nothing done, when tracing is off."""
    if not tracing.enabled():
        yield None
        return
    named = {f"invctl.{key}": value for key, value in attributes.items()}
    with tracing.span(name, attributes=named) as span:
        try:
            yield span
        except WireError as refusal:
            tracing.annotate(span, outcome=refusal.code)
            raise
