"""The replica's allowances: grants as central last said, debits, and what is left to sell."""

from storeagent.replica.allowances import (
    LIVE,
    UNLISTED,
    Allowances,
    Debit,
    FetchedGrant,
)
from storeagent.replica.db import open_replica

G1 = "00000000-0000-0000-0000-000000000001"


def grant(**overrides) -> FetchedGrant:
    fields = {"id": G1, "sku": "MILK-1L", "units": 10, "remaining": 10, "expires_at": "2030"}
    return FetchedGrant(**{**fields, **overrides})


def fetched(allowances: Allowances, *grants: FetchedGrant, mark: int | None = None) -> None:
    allowances.record_fetch(
        list(grants),
        mark=allowances.replay_mark() if mark is None else mark,
        fetched_at="t",
        margin_s=300,
        server_time="s",
    )


def test_unreplayed_debits_reduce_what_is_left_under_a_grant(tmp_path):
    allowances = Allowances(open_replica(tmp_path / "r.db"))
    fetched(allowances, grant())

    allowances.debit([Debit("r1", G1, "MILK-1L", 4)])

    [use] = allowances.uses()
    assert (use.grant.remaining, use.unbooked, use.left) == (10, 4, 6)
    assert allowances.waiting_units() == 4


def test_a_fetch_sent_before_a_replay_was_booked_still_counts_its_debit(tmp_path):
    allowances = Allowances(open_replica(tmp_path / "r.db"))
    fetched(allowances, grant())
    allowances.debit([Debit("r1", G1, "MILK-1L", 4)])
    mark = allowances.replay_mark()  # the fetch starts ...
    allowances.replayed("r1")  # ... the replay is booked meanwhile ...
    fetched(allowances, grant(remaining=10), mark=mark)  # ... central answered before it

    assert allowances.uses()[0].left == 6

    fetched(allowances, grant(remaining=6))  # a later fetch has it in `remaining`
    assert allowances.uses()[0].left == 6
    assert allowances.waiting_units() == 0
    assert allowances.sold_under(G1) == (4, 0)


def test_a_grant_central_no_longer_lists_is_kept_but_not_live(tmp_path):
    allowances = Allowances(open_replica(tmp_path / "r.db"))
    fetched(allowances, grant())

    fetched(allowances)

    assert allowances.uses() == []
    [use] = allowances.uses([UNLISTED])
    assert use.grant.id == G1 and use.grant.state == UNLISTED
    assert allowances.margin_s(default=1) == 300


def test_a_closed_grant_stays_closed_when_listed_again(tmp_path):
    allowances = Allowances(open_replica(tmp_path / "r.db"))
    fetched(allowances, grant())
    allowances.close(G1)

    fetched(allowances, grant())

    assert [use.grant.state for use in allowances.uses([LIVE, UNLISTED])] == []
