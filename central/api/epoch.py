"""Every HTTP answer of central says the database's epoch (docs/wire.md, `Invctl-Epoch`): a
client that sees it grow knows central was restored and may hold less than it saw before."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

EPOCH_RESPONSE_HEADER = b"invctl-epoch"


class EpochHeader:
    """Adds `Invctl-Epoch: N` to every answer; N is read once when central starts (a restore
    needs central stopped), so this costs nothing per request."""

    def __init__(self, app: ASGIApp, epoch: int) -> None:
        self.app = app
        self.value = str(epoch).encode("ascii")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_epoch(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                message["headers"] = [*headers, (EPOCH_RESPONSE_HEADER, self.value)]
            await send(message)

        await self.app(scope, receive, send_with_epoch)
