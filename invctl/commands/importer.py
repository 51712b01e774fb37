"""`invctl import FILE`: batch upsert of categories, products and stock at central."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard

import typer

from invctl.client import ApiClient, segment
from invctl.context import state_of
from invctl.errors import (
    ExitCode,
    InvalidRequestError,
    InvctlError,
    NotFoundError,
    ServerError,
    UnavailableError,
    UsageError,
)
from invctl.options import JsonFlag
from invctl.output import Output, rows_table

if TYPE_CHECKING:
    from rich.console import RenderableType

    from invctl.importfile import CheckedFile, ErrorLog, Row, RowError

MAX_CHUNK = 1000
# An --all-or-nothing commit applies the whole file in one request: it may take minutes.
COMMIT_TIMEOUT = 900.0
# The report's counts, in the order the summary shows them (JSON and table alike).
FIGURES = ("rows", "created", "updated", "unchanged", "bad_rows", "skipped")


class Format(StrEnum):
    csv = "csv"
    jsonl = "jsonl"


@dataclass
class ImportReport:
    file: str
    format: str
    rows: int
    errors: ErrorLog
    dry_run: bool = False
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0

    @property
    def bad_rows(self) -> int:
        return self.errors.bad_lines

    @property
    def applied(self) -> int:
        return self.created + self.updated + self.unchanged

    def count(self, answer: Any) -> None:
        counts = answer if isinstance(answer, dict) else {}
        self.created += _whole(counts, "created")
        self.updated += _whole(counts, "updated")
        self.unchanged += _whole(counts, "unchanged")

    def to_dict(self) -> dict[str, Any]:
        """The summary; `errors` holds the first errors found (by line), `error_count` all."""
        return {
            "file": self.file,
            "format": self.format,
            "dry_run": self.dry_run,
            **{figure: getattr(self, figure) for figure in FIGURES},
            "error_count": self.errors.count,
            "errors_omitted": self.errors.omitted,
            "errors": [error.to_dict() for error in sorted(self.errors.kept, key=_by_line)],
        }


def _whole(counts: dict[str, Any], key: str) -> int:
    value = counts.get(key, 0)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ServerError(f"central's import answer has a {key!r} that is not a whole number")
    return value


def register(root: typer.Typer) -> None:
    root.command("import")(import_file)


def import_file(
    ctx: typer.Context,
    file: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="A .csv, .jsonl or .ndjson file.", show_default=False),
    ],
    all_or_nothing: Annotated[
        bool,
        typer.Option(
            "--all-or-nothing",
            help="Apply every row in one transaction at central, or none: nothing is sent "
            "if any row is bad, and nothing is applied if central cannot apply one.",
        ),
    ] = False,
    chunk_size: Annotated[
        int, typer.Option("--chunk-size", min=1, max=MAX_CHUNK, help="Rows per request.")
    ] = 500,
    file_format: Annotated[
        Format | None,
        typer.Option(
            "--format", help="File format (default: from the extension).", show_default=False
        ),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check every row and send nothing (no central).")
    ] = False,
    json_out: JsonFlag = False,
) -> None:
    """Import categories, products and stock from CSV or JSON Lines (idempotent upsert).

    Every row is checked first and bad rows are reported by line number (the first 100,
    and how many in all). The good rows are then sent in chunks, each applied atomically;
    a row central cannot apply (an unknown category, say) is reported and the rest of its
    chunk is applied without it. With --all-or-nothing a bad row stops the import before
    anything is sent, and the rows are applied at central in one transaction: all of them,
    or, if central cannot apply one, none. A product row's empty description, active or
    quantity keeps what central holds. Files of any size are read as a stream. Exits 1 if
    any row was bad or not applied.

    Example: invctl import catalog.csv --all-or-nothing
    """
    state = state_of(ctx, json_out)
    central = None if dry_run else state.central()
    from invctl.importfile import checked_file

    chosen = _format_of(file, file_format)
    with checked_file(file, chosen) as checked:
        report = ImportReport(str(file), chosen, checked.rows, checked.errors, dry_run=dry_run)
        if central is None:
            state.out.note(f"--dry-run: {checked.good_rows} good rows; nothing was sent")
        elif checked.errors.count and all_or_nothing:
            report.skipped = checked.good_rows
            state.out.note("--all-or-nothing: bad rows were found, so nothing was sent")
        elif all_or_nothing:
            commit_timeout = max(state.options.timeout, COMMIT_TIMEOUT)
            send_atomically(central, checked, report, chunk_size, state.out, commit_timeout)
        else:
            send_rows(central, checked, report, chunk_size, state.out)
    state.out.emit(report.to_dict(), render=summary_view)
    if report.bad_rows or report.skipped:
        raise typer.Exit(ExitCode.ERROR)


def _format_of(path: Path, chosen: Format | None) -> str:
    from invctl.importfile import detect_format

    found = chosen.value if chosen else detect_format(path)
    if found is None:
        raise UsageError(
            f"cannot tell the format of {path.name} from its extension",
            code="usage.format",
            hint="name it .csv, .jsonl or .ndjson, or pass --format csv|jsonl",
        )
    return found


def send_rows(
    client: ApiClient, checked: CheckedFile, report: ImportReport, chunk_size: int, out: Output
) -> None:
    """Send the good rows in chunks, each applied atomically by `POST /import`."""
    with out.progress(checked.good_rows, "Importing") as advance:
        for chunk in checked.chunks(chunk_size):
            _send_chunk(client, chunk, report, out)
            advance(len(chunk))


def _send_chunk(client: ApiClient, chunk: list[Row], report: ImportReport, out: Output) -> None:
    """Send one chunk. Central rejects a chunk whole, naming the rows it cannot apply: those
    are logged and the rest is sent again without them, until central takes what is left."""
    rows = chunk
    while rows:
        try:
            answer = client.post("/import", json={"rows": rows})
        except InvalidRequestError as err:
            if err.code != "import.invalid":
                raise
            rows = _without_rejected(rows, err, report)
            continue
        except InvctlError:
            if report.applied:
                out.note(
                    f"{report.applied} rows were applied before this error; "
                    "re-running the import is safe"
                )
            raise
        report.count(answer)
        return


def _without_rejected(rows: list[Row], err: InvalidRequestError, report: ImportReport) -> list[Row]:
    """Log central's rejection of `rows`; the rows it did not name, to be sent again. An
    answer naming none of them leaves nothing to resend: the rows are logged as skipped."""
    errors, count, bad_lines = _rejection(err)
    sent = {row["line"] for row in rows}
    named = {error.line for error in errors} & sent
    if not named:
        report.errors.add_reported([_chunk_error(rows, err)], 1, 1)
        report.skipped += len(rows) - 1
        return []
    report.errors.add_reported([e for e in errors if e.line in sent], count, bad_lines)
    return [row for row in rows if row["line"] not in named]


def _chunk_error(rows: list[Row], err: InvalidRequestError) -> RowError:
    from invctl.importfile import RowError

    first, last = rows[0]["line"], rows[-1]["line"]
    message = f"{err.message} (lines {first}-{last} were not applied)"
    return RowError(int(first), err.code, message)


def send_atomically(
    client: ApiClient,
    checked: CheckedFile,
    report: ImportReport,
    chunk_size: int,
    out: Output,
    commit_timeout: float,
) -> None:
    """Stage the good rows at central in chunks, then commit them in one transaction; if
    central cannot apply a row, it names the rows and applies none (`skipped`: the rest)."""
    batch = f"/import/batches/{segment(_open_batch(client))}"
    try:
        with out.progress(checked.good_rows, "Staging") as advance:
            for chunk in checked.chunks(chunk_size):
                _stage_chunk(client, batch, chunk, report)
                advance(len(chunk))
        if report.errors.count:
            _discard_quietly(client, batch)
        else:
            _commit(client, batch, report, commit_timeout)
    except BaseException:
        _discard_quietly(client, batch)
        raise
    if report.errors.count:
        report.skipped = checked.good_rows - report.errors.bad_lines
        out.note("--all-or-nothing: central cannot apply every row, so it applied none")


def _commit(client: ApiClient, batch: str, report: ImportReport, timeout: float) -> None:
    try:
        answer = client.request("POST", f"{batch}/commit", timeout=timeout)
    except InvalidRequestError as err:
        if err.code != "import.invalid":
            raise
        report.errors.add_reported(*_rejection(err))  # and central dropped the batch
        return
    except UnavailableError as err:
        raise _commit_unknown(err, timeout) from None
    report.count(answer)


def _open_batch(client: ApiClient) -> str:
    try:
        answer = client.post("/import/batches")
    except NotFoundError as err:
        if err.code != "not_found":
            raise
        raise InvctlError(
            "this central cannot apply an import in one transaction (no /import/batches)",
            code="import.atomic_unsupported",
            hint="upgrade central, or import without --all-or-nothing (each chunk atomic)",
        ) from None
    batch = answer.get("id") if isinstance(answer, dict) else None
    if not isinstance(batch, str) or not batch:
        raise ServerError("central's answer to opening an import batch has no id")
    return batch


def _stage_chunk(client: ApiClient, batch: str, chunk: list[Row], report: ImportReport) -> None:
    """Add a chunk to the batch; rows central refuses are logged (the chunk is not staged)."""
    try:
        client.post(f"{batch}/rows", json={"rows": chunk})
    except InvalidRequestError as err:
        if err.code != "import.invalid":
            raise
        errors, count, bad_lines = _rejection(err)
        if not {error.line for error in errors} & {row["line"] for row in chunk}:
            errors, count, bad_lines = [_chunk_error(chunk, err)], 1, 1
        report.errors.add_reported(errors, count, bad_lines)


def _discard_quietly(client: ApiClient, batch: str) -> None:
    """Drop a batch that will not be committed; central drops it within an hour anyway."""
    with contextlib.suppress(InvctlError):
        client.delete(batch)


def _commit_unknown(err: UnavailableError, waited: float) -> UnavailableError:
    return UnavailableError(
        f"no answer to the commit ({err.message}): central applies all the rows or none, "
        "and may not have finished",
        code=err.code,
        hint="see whether the rows are there (invctl product list --all), or run the same "
        "import again: it is safe, rows already applied stay unchanged",
        details={"waited_s": waited},
    )


def _rejection(err: InvalidRequestError) -> tuple[list[RowError], int, int]:
    """The rows central named in a 422 import.invalid; its count of errors and bad lines
    (it lists the first 100)."""
    from invctl.importfile import RowError

    listed = err.details.get("errors")
    errors = [
        RowError(int(item["line"]), str(item.get("code", err.code)), str(item.get("message", "")))
        for item in (listed if isinstance(listed, list) else [])
        if isinstance(item, dict) and _is_count(item.get("line"))
    ]
    count = err.details.get("error_count")
    bad_lines = err.details.get("bad_rows")
    return (
        errors,
        count if _is_count(count) else len(errors),
        bad_lines if _is_count(bad_lines) else len({error.line for error in errors}),
    )


def _is_count(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def summary_view(data: Any) -> Iterable[RenderableType]:
    from rich.table import Table
    from rich.text import Text

    yield Text(f"Import of {data['file']} ({data['format']})", style="bold underline")
    summary = Table.grid(padding=(0, 2))
    summary.add_column(style="bold")
    summary.add_column(justify="right")
    for key in FIGURES:
        style = "red" if key in ("bad_rows", "skipped") and data[key] else ""
        summary.add_row(key.replace("_", " "), Text(str(data[key]), style=style))
    yield summary
    errors = data["errors"]
    if errors:
        yield rows_table(errors, ("line", "code", "message"), title="Bad rows")
    if data["errors_omitted"]:
        more, total = data["errors_omitted"], data["error_count"]
        yield Text(f"... and {more:,} more row errors ({total:,} in all)")
    if errors or data["skipped"]:
        yield Text("Fix the bad rows and run the import again; applied rows stay unchanged.")


def _by_line(error: RowError) -> int:
    return error.line
