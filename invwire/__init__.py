"""The wire contract shared by central, the store agent and invctl.

Standard library only: topics and partitions, the patterns and limits every side checks,
order-line rules, the event envelope (central encodes, the agent parses), the error root
with stable codes, one JSON logging style and one ASGI request-context middleware.
`docs/wire.md` is the prose form of this package.
"""
