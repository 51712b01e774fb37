"""uvicorn's httptools protocol with a bound on the request line and headers.

httptools parses HTTP in C (llhttp) and costs a fraction of h11, which is pure Python, but
uvicorn bounds a request's head only for h11 (`h11_max_incomplete_event_size`). This
protocol keeps that setting's meaning for httptools: a request whose line and headers pass
it is answered 400 `Invalid HTTP request received.` and its connection closed, whether the
head is complete or still arriving.

Two checks, because httptools buffers an unfinished header inside the parser, out of sight:
- a read that begins inside a head and ends in the same one adds all its bytes to the head's
  count, so a head that never ends is refused within one read (up to 256 KiB) past the
  limit;
- a head once parsed is measured from its parts (method, target, each header's name and
  value, with the line ends and separators a head needs; padding whitespace the parser
  strips is not counted), so a complete head over the limit is refused too, however it
  arrived.
A read that ends a body and begins the next head is not counted: the count never takes body
bytes for head bytes, so a request within the limit is never refused.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

DEFAULT_MAX_HEAD_BYTES = 16 * 1024  # h11's own default
INVALID = "Invalid HTTP request received."


class HeadTooLarge(Exception):
    """Raised in a parser callback; httptools turns it into a parser error, which uvicorn
    answers with its 400."""


class BoundedHttpTools(HttpToolsProtocol):
    """`uvicorn.Config(http=BoundedHttpTools, h11_max_incomplete_event_size=N)`."""

    def __init__(self, config: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(config, *args, **kwargs)
        self.max_head_bytes: int = config.h11_max_incomplete_event_size or DEFAULT_MAX_HEAD_BYTES
        self._in_head = True  # a connection's first bytes are a head
        self._head_bytes = 0
        self._heads_parsed = 0

    def data_received(self, data: bytes) -> None:
        began_in_head, heads_before = self._in_head, self._heads_parsed
        super().data_received(data)
        whole_read_in_one_head = began_in_head and self._heads_parsed == heads_before
        if not whole_read_in_one_head or self.transport.is_closing():
            return
        self._head_bytes += len(data)
        if self._head_bytes > self.max_head_bytes:
            self.logger.warning(INVALID)
            self.send_400_response(INVALID)

    def on_headers_complete(self) -> None:
        self._in_head = False
        self._heads_parsed += 1
        if self._parsed_head_bytes() > self.max_head_bytes:
            raise HeadTooLarge()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._in_head = True
        self._head_bytes = 0

    def _parsed_head_bytes(self) -> int:
        line = len(self.parser.get_method()) + len(self.url) + len(" HTTP/1.1\r\n") + 1
        return line + sum(len(name) + len(value) + 4 for name, value in self.headers) + 2
