from __future__ import annotations

import re
from typing import Annotated, Any

from fastapi import APIRouter, Path, Response
from pydantic import Field

from central.api.deps import API_PREFIX, CanImportCatalog, UowDep
from central.api.schemas import ImportBatch, ImportResult, RequestBody, errors
from central.services import importing, staged_imports

router = APIRouter(prefix=API_PREFIX, tags=["import"], responses=errors(401, 403, 503))

IMPORT_ROUTE = "/import"
# The paths whose bodies may be larger than INVCTL_MAX_BODY_BYTES (central.api.body_limit).
IMPORT_PATH = API_PREFIX + IMPORT_ROUTE
STAGE_PATH = re.compile(re.escape(API_PREFIX) + r"/import/batches/[^/]+/rows")

BatchIdPath = Annotated[str, Path(max_length=36, description="the id `POST /import/batches` gave")]


def takes_import_body(method: str, path: str) -> bool:
    """Whether a request carries import rows, and so gets INVCTL_MAX_IMPORT_BYTES."""
    return method == "POST" and (path == IMPORT_PATH or STAGE_PATH.fullmatch(path) is not None)


class ImportIn(RequestBody):
    rows: list[dict[str, Any]] = Field(max_length=importing.MAX_ROWS)


@router.post(IMPORT_ROUTE, response_model=ImportResult, responses=errors(400, 422))
def import_rows(body: ImportIn, uow: UowDep, principal: CanImportCatalog) -> dict[str, Any]:
    """Upsert up to 1,000 rows in one transaction; any bad row rejects them all."""
    return importing.import_rows(uow, principal, body.rows)


@router.post("/import/batches", status_code=201, response_model=ImportBatch, responses=errors(409))
def open_batch(uow: UowDep, principal: CanImportCatalog) -> dict[str, Any]:
    """Open a staged import: send its rows in requests of up to 1,000, then commit it to
    apply them all in one transaction, or none."""
    return staged_imports.open_batch(uow, principal)


@router.post(
    "/import/batches/{batch_id}/rows",
    response_model=ImportBatch,
    responses=errors(400, 404, 409, 422),
)
def stage_rows(
    batch_id: BatchIdPath, body: ImportIn, uow: UowDep, principal: CanImportCatalog
) -> dict[str, Any]:
    """Check up to 1,000 rows and add them to the batch; any bad row rejects them all (422
    `import.invalid`) and the batch stays as it was."""
    return staged_imports.stage_rows(uow, principal, batch_id, body.rows)


@router.post(
    "/import/batches/{batch_id}/commit",
    response_model=ImportResult,
    responses=errors(404, 422),
)
def commit_batch(batch_id: BatchIdPath, uow: UowDep, principal: CanImportCatalog) -> dict[str, Any]:
    """Apply every staged row in one transaction; if any cannot be applied, 422
    `import.invalid` lists them and nothing is. The batch is gone afterwards either way."""
    return staged_imports.commit_batch(uow, principal, batch_id)


@router.delete("/import/batches/{batch_id}", status_code=204, responses=errors(404, 422))
def discard_batch(batch_id: BatchIdPath, uow: UowDep, principal: CanImportCatalog) -> Response:
    """Drop a batch and its staged rows without applying them."""
    staged_imports.discard_batch(uow, principal, batch_id)
    return Response(status_code=204)
