"""Central's whole API fuzzed from its own OpenAPI document, as an admin, as staff and as a
store: no generated request may get a 5xx or an answer outside the declared schema.

Schemathesis generates valid and invalid requests for every operation. The fuzzer is free to
disable, demote or delete the very principals it runs as, so before each case the three
principals are put back as they were (through the models, since the admin itself may be the
one it locked out) and their credentials renewed when they stopped working.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode, checks

from central.models import Store, User
from central.security import TokenClaims, issue_token
from central.services import accounts
from tests.support.central_harness import Harness, running_central

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("INVCTL_FUZZ_EXAMPLES", "40"))
STAFF_PASSWORD = "staff-password-1"
STORE_ID = "fuzz-store"
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]


@dataclass
class Principals:
    harness: Harness
    store_key: str = ""
    tokens: dict[str, str] = field(default_factory=dict)
    cases: Counter[tuple[str, str]] = field(default_factory=Counter)

    def headers(self, role: str) -> dict[str, str]:
        self._restore()
        if role == "store":
            if not self._works({"X-API-Key": self.store_key}):
                self.store_key = accounts.rotate_key(self.harness.central.uow(), STORE_ID)[
                    "api_key"
                ]
            return {"X-API-Key": self.store_key}
        bearer = {"Authorization": f"Bearer {self.tokens.get(role, '')}"}
        if not self._works(bearer):
            self.tokens[role] = self._mint(_username(role))
            bearer = {"Authorization": f"Bearer {self.tokens[role]}"}
        return bearer

    def _mint(self, username: str) -> str:
        """A token as a login would issue it, without the login: the fuzzer's failed logins
        may have the login route throttled, which is its business, not the principals'."""
        central = self.harness.central
        with central.db.connection_context():
            user = User.get(User.username == username)
        claims = TokenClaims(username, user.role, user.store_id, user.id, user.token_version)
        return issue_token(central.tokens, claims, central.clock.now())

    def _works(self, headers: dict[str, str]) -> bool:
        return self.harness.client.get("/api/v1/auth/me", headers=headers).status_code == 200

    def _restore(self) -> None:
        """The fuzzer's own principals back as they were (it may have changed any of them)."""
        db = self.harness.central.db
        with db.connection_context():
            Store.update(active=True).where(Store.id == STORE_ID).execute()
            User.update(active=True, role="admin", store_id=None).where(
                User.username == "admin"
            ).execute()
            User.update(active=True, role="staff", store_id=STORE_ID).where(
                User.username == "fuzz-staff"
            ).execute()


def _username(role: str) -> str:
    return "admin" if role == "admin" else "fuzz-staff"


@contextmanager
def fuzzed_central(database_url: str) -> Iterator[Principals]:
    with running_central(database_url) as harness:
        uow = harness.central.uow()
        store = accounts.create_store(uow, STORE_ID, "Fuzz store")
        accounts.create_user(uow, accounts.NewUser("fuzz-staff", STAFF_PASSWORD, "staff", STORE_ID))
        yield Principals(harness, store_key=store["api_key"])


def schema_of(principals: Principals) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_asgi("/openapi.json", principals.harness.client.app)


@pytest.fixture(scope="module")
def principals(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Principals]:
    database = tmp_path_factory.mktemp("fuzz") / "central.db"
    with fuzzed_central(f"sqlite:///{database}") as principals:
        yield principals


@pytest.fixture(scope="module")
def api_schema(principals: Principals) -> schemathesis.BaseSchema:
    return schema_of(principals)


@pytest.mark.parametrize("role", ["admin", "staff", "store"])
def test_boundary_values_get_no_5xx_and_no_answer_outside_the_schema(
    role: str, database_url: str
) -> None:
    """Schemathesis' coverage phase: each declared bound, one past it, wrong types, missing
    and unknown fields, for every parameter of every operation, valid and invalid; on SQLite
    and on MariaDB, whose integer and text limits differ."""
    failures: dict[str, str] = {}
    with fuzzed_central(database_url) as principals:
        api_schema = schema_of(principals)
        generation = api_schema.config.generation
        for operation in _operations(api_schema):
            cases = api_schema.iter_coverage_cases(
                operation, generation_modes=list(GenerationMode), generation_config=generation
            )
            for case in cases:
                try:
                    _call(case, role, "coverage", principals)
                except Exception as exc:
                    failures.setdefault(operation.label, _first_lines(str(exc)))
    print(f"fuzz {role}/coverage: {principals.cases[role, 'coverage']} cases")
    assert not failures, _report(failures)


@pytest.mark.parametrize("role", ["admin", "staff", "store"])
@pytest.mark.parametrize("mode", list(GenerationMode), ids=lambda mode: mode.value)
def test_random_requests_get_no_5xx_and_no_answer_outside_the_schema(
    role: str, mode: GenerationMode, principals: Principals, api_schema: schemathesis.BaseSchema
) -> None:
    """Hypothesis-generated requests, valid (positive) and invalid (negative)."""
    failures: dict[str, str] = {}
    for operation in _operations(api_schema):
        try:
            _fuzz_operation(operation, mode, role, principals)
        except Unsatisfiable:
            # An operation without parameters or body has no invalid request to generate.
            assert mode is GenerationMode.NEGATIVE, operation.label
        except Exception as exc:
            failures[operation.label] = _first_lines(str(exc))
    print(f"fuzz {role}/{mode.value}: {principals.cases[role, mode.value]} cases")
    assert not failures, _report(failures)


def test_every_number_and_string_the_api_takes_is_bounded(
    api_schema: schemathesis.BaseSchema,
) -> None:
    """Bounds declared in the document are what the fuzzer probes one past; a parameter
    without them is where a 23-digit id would reach the database."""
    document = api_schema.raw_schema
    unbounded = sorted(_unbounded(document, document.get("paths", {}), "paths"))
    assert not unbounded, "\n".join(unbounded)


def _unbounded(
    document: dict[str, Any], node: Any, where: str, seen: set[str] | None = None
) -> Iterator[str]:
    """Integers without both bounds and free strings without a length limit, in everything
    a request carries (parameters and bodies, following references; answers are not input)."""
    seen = set() if seen is None else seen
    if isinstance(node, list):
        for index, value in enumerate(node):
            yield from _unbounded(document, value, f"{where}/{index}", seen)
        return
    if not isinstance(node, dict):
        return
    if "$ref" in node:
        reference = str(node["$ref"])
        if reference not in seen:
            seen.add(reference)
            yield from _unbounded(document, _resolve(document, reference), reference, seen)
        return
    kind = node.get("type")
    if kind == "integer" and not {"minimum", "maximum"} <= node.keys():
        yield where
    # A date-time is parsed to its fixed shape before use; other strings need a length limit.
    if kind == "string" and not {"maxLength", "enum", "format"} & node.keys():
        yield where
    for key, value in node.items():
        if key not in {"responses", "examples", "example", "default"}:
            yield from _unbounded(document, value, f"{where}/{key}", seen)


def _resolve(document: dict[str, Any], reference: str) -> Any:
    node: Any = document
    for part in reference.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _operations(api_schema: schemathesis.BaseSchema) -> Iterator[Any]:
    for result in api_schema.get_all_operations():
        yield result.ok()


def _fuzz_operation(
    operation: Any, mode: GenerationMode, role: str, principals: Principals
) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the first failure is enough
        database=None,
    )
    def run(case: schemathesis.Case) -> None:
        _call(case, role, mode.value, principals)

    run()


def _call(case: schemathesis.Case, role: str, phase: str, principals: Principals) -> None:
    headers = principals.headers(role)
    principals.cases[role, phase] += 1
    case.call_and_validate(headers=headers, checks=CHECKS)


def _report(failures: dict[str, str]) -> str:
    return f"{len(failures)} operations failed:\n\n" + "\n\n".join(
        f"{label}:\n{text}" for label, text in failures.items()
    )


def _first_lines(text: str, count: int = 12) -> str:
    return "\n".join(text.splitlines()[:count])
