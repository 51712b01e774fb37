"""Moments people type for `--since` / `--until`: `today`, `yesterday`, an age (`1d`, `12h`,
`30m`, `2w`) or an ISO 8601 date or time. A date or time without an offset, and the start of
today, are in the zone invctl shows times in (local time; UTC with --utc: invctl.style);
every moment is sent with its offset, so the server never guesses the zone."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from invctl.errors import UsageError
from invctl.style import people_zone

AGE = re.compile(r"([0-9]{1,6})([mhdw])")
UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
FORMS = "today, yesterday, an age such as 1d, 12h, 30m or 2w, or an ISO date such as 2026-11-29"


def parse_moment(text: str, now: datetime, *, option: str = "--since") -> datetime:
    """`text` as an aware datetime; `now` is the aware current time."""
    word = text.strip().lower()
    if word in ("today", "yesterday"):
        zone = people_zone()
        today = (now.astimezone(zone) if zone else now.astimezone()).date()
        day = today - timedelta(days=1) if word == "yesterday" else today
        return _local(datetime.combine(day, time()))
    age = AGE.fullmatch(word)
    if age is not None:
        try:
            return now - timedelta(**{UNITS[age.group(2)]: int(age.group(1))})
        except OverflowError:
            message = f"{option} {text!r} reaches before the year 1"
            raise UsageError(message, code="usage.moment", hint=f"give {FORMS}") from None
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{option} {text!r} is not a moment", code="usage.moment", hint=f"give {FORMS}"
        ) from None
    return moment if moment.tzinfo is not None else _local(moment)


def wire_moment(text: str | None, now: datetime, *, option: str) -> str | None:
    """`text` as an extended ISO 8601 time with its offset, as the servers take it."""
    return None if text is None else parse_moment(text, now, option=option).isoformat()


def _local(moment: datetime) -> datetime:
    """A naive time in people's zone (its offset on that day, DST included)."""
    zone = people_zone()
    if zone is not None:
        return moment.replace(tzinfo=zone)
    try:
        return moment.astimezone()
    except (OverflowError, OSError, ValueError):
        raise UsageError(
            f"{moment.isoformat()} cannot be placed in this machine's time zone",
            code="usage.moment",
            hint="give it with an offset, e.g. 2026-11-29T10:00:00+00:00",
        ) from None
