"""Option and argument aliases shared by the command modules."""

from __future__ import annotations

from typing import Annotated

import typer

JsonFlag = Annotated[
    bool,
    typer.Option("--json", help="Print machine-readable JSON instead of tables."),
]
SkuArg = Annotated[
    str, typer.Argument(metavar="SKU", help="Product SKU, e.g. MILK-1L.", show_default=False)
]
StoreIdArg = Annotated[
    str, typer.Argument(metavar="STORE_ID", help="Store id, e.g. store-042.", show_default=False)
]
NoteOpt = Annotated[
    str | None,
    typer.Option("--note", help="Why; recorded in the stock ledger.", show_default=False),
]
PasswordStdinFlag = Annotated[
    bool,
    typer.Option("--password-stdin", help="Read the password from the first line of stdin."),
]
