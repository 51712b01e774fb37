"""`invctl store add | list | keys | rotate-key | revoke-key | deactivate | activate`: stores
and their API keys."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from invctl.client import items_of, segment
from invctl.context import State, state_of
from invctl.options import JsonFlag, StoreIdArg
from invctl.output import Column, people_time

app = typer.Typer(
    help="Manage stores and their API keys (central).\n\nExample: invctl store list",
    no_args_is_help=True,
)
COLUMNS = ("id", "name", "active", "active_keys", "created_at")
KEY_COLUMNS = (Column("id", justify="right"), "prefix", Column("created_at", "created"), "status")
KEY_WARNING = (
    "this API key is shown only once and cannot be retrieved again; store it now "
    "(the agent reads it from STOREAGENT_API_KEY or --api-key-file)"
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="store")


@app.command("add")
def add(
    ctx: typer.Context,
    store_id: StoreIdArg,
    name: Annotated[str, typer.Option("--name", help="Display name.", show_default=False)],
    json_out: JsonFlag = False,
) -> None:
    """Register a store and print its first API key (shown only once).

    Example: invctl store add store-042 --name "Main Street"
    """
    state = state_of(ctx, json_out)
    created = state.central().post("/stores", json={"id": store_id, "name": name})
    _show_key(state, created, f"Store {store_id} created.")
    _agent_setup(state, store_id, created)


@app.command("list")
def list_stores(ctx: typer.Context, json_out: JsonFlag = False) -> None:
    """List stores and how many active API keys each has.

    Example: invctl store list
    """
    state = state_of(ctx, json_out)
    state.out.emit(items_of(state.central().get("/stores")), table=COLUMNS)


@app.command("rotate-key")
def rotate_key(ctx: typer.Context, store_id: StoreIdArg, json_out: JsonFlag = False) -> None:
    """Issue a new API key for a store; old keys stay valid until revoked.

    Example: invctl store rotate-key store-042
    """
    state = state_of(ctx, json_out)
    issued = state.central().post(f"/stores/{segment(store_id)}/keys")
    _show_key(state, issued, f"New key for store {store_id}.")
    _agent_setup(state, store_id, issued)
    state.out.note(
        f"revoke the old key with: invctl store revoke-key {store_id} OLD_KEY_ID "
        f"(`invctl store keys {store_id}` lists the ids)"
    )


@app.command("keys")
def keys(ctx: typer.Context, store_id: StoreIdArg, json_out: JsonFlag = False) -> None:
    """List a store's API keys: id, prefix, when issued, and active or when revoked.

    The id is what `revoke-key` takes; the prefix is the key's first characters, enough to
    tell which key an agent holds (the key itself is never shown again).

    Example: invctl store keys store-042
    """
    state = state_of(ctx, json_out)
    items = items_of(state.central().get(f"/stores/{segment(store_id)}/keys"))
    rows = items if state.out.json_mode else [_key_row(item) for item in items]
    state.out.emit(rows, table=KEY_COLUMNS)


def _key_row(key: dict[str, Any]) -> dict[str, Any]:
    revoked = key.get("revoked_at")
    status = "active" if key.get("active") else f"revoked {people_time(revoked)}"
    return {**key, "status": status}


@app.command("revoke-key")
def revoke_key(
    ctx: typer.Context,
    store_id: StoreIdArg,
    key_id: Annotated[
        str, typer.Argument(metavar="KEY_ID", help="The key's id.", show_default=False)
    ],
    json_out: JsonFlag = False,
) -> None:
    """Revoke one API key of a store; the agent using it loses access.

    Example: invctl store revoke-key store-042 7
    """
    state = state_of(ctx, json_out)
    state.central().delete(f"/stores/{segment(store_id)}/keys/{segment(key_id)}")
    data = {"store_id": store_id, "key_id": key_id, "revoked": True}
    state.out.done(data, f"Revoked key {key_id} of store {store_id}.")
    state.out.note(
        "central refuses the key at once; its Kafka user is deleted, and an agent still "
        "connected with it loses its events at its next re-authentication (within a minute)"
    )


@app.command("deactivate")
def deactivate(ctx: typer.Context, store_id: StoreIdArg, json_out: JsonFlag = False) -> None:
    """Deactivate a store: all its API keys are revoked at once, so its agent and its staff
    can no longer sell for it.

    Example: invctl store deactivate store-042
    """
    state = state_of(ctx, json_out)
    answer = state.central().post(f"/stores/{segment(store_id)}/deactivate")
    revoked = answer.get("revoked_keys", 0) if isinstance(answer, dict) else 0
    state.out.done(answer, f"Deactivated store {store_id}; revoked {revoked} API key(s).")
    state.out.note(
        "its agent is refused at once; a Kafka connection it holds is cut at its next "
        "re-authentication (within a minute)"
    )


@app.command("activate")
def activate(ctx: typer.Context, store_id: StoreIdArg, json_out: JsonFlag = False) -> None:
    """Activate a deactivated store; its old keys stay revoked, so issue a new one.

    Example: invctl store activate store-042
    """
    state = state_of(ctx, json_out)
    answer = state.central().post(f"/stores/{segment(store_id)}/activate")
    state.out.done(answer, f"Activated store {store_id}.")
    state.out.note(f"give its agent a new key with: invctl store rotate-key {store_id}")


def _show_key(state: State, answer: Any, headline: str) -> None:
    """The one place an API key is printed: to stdout, once, with a warning on stderr."""
    if state.json:
        state.out.emit(answer)
    else:
        record = answer if isinstance(answer, dict) else {}
        state.out.emit(record, title=headline)
    state.out.warn(KEY_WARNING)


def _agent_setup(state: State, store_id: str, answer: Any) -> None:
    """What the store's agent needs, on stderr: the key is its only secret."""
    record = answer if isinstance(answer, dict) else {}
    kafka_user = record.get("kafka_username")
    key_file = f"/etc/invctl/{store_id}.key"
    steps = [
        f"on the store machine, save the key in a file only the agent may read "
        f"(chmod 600), e.g. {key_file}, and run:",
        f"  storeagent run --store-id {store_id} --api-key-file {key_file}",
    ]
    if kafka_user:
        steps.append(
            f"the key is also the agent's Kafka password (user {kafka_user}); give the agent "
            "the cluster's CA certificate with STOREAGENT_KAFKA_CA_FILE"
        )
    for step in steps:
        state.out.note(step)
