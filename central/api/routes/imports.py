from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from central.api.deps import API_PREFIX, CanImportCatalog, UowDep
from central.api.schemas import ImportResult, errors
from central.services import importing

router = APIRouter(prefix=API_PREFIX, tags=["import"])


class ImportIn(BaseModel):
    rows: list[dict[str, Any]] = Field(max_length=importing.MAX_ROWS)


@router.post("/import", response_model=ImportResult, responses=errors(400, 401, 403, 422, 503))
def import_rows(body: ImportIn, uow: UowDep, principal: CanImportCatalog) -> dict[str, Any]:
    """Upsert up to 1,000 rows in one transaction; any bad row rejects them all."""
    return importing.import_rows(uow, principal, body.rows)
