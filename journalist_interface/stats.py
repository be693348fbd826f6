"""Figures for the statistics page: reports per category per week, open cases by status, and
the time reporters wait for a first reply.

Days are what the vault knows (the server keeps days only), so a week is Monday to Sunday of
the day a report reached the server, and a wait is counted in whole days: from that day to the
day of the first reply written to the reporter (here, or on another workstation, as it came back
in a pickup bundle).  The weeks shown end with the week of the newest report.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from journalist_interface.cases import OPEN_STATUSES
from journalist_interface.vault import Vault

WEEK_CHOICES = (8, 12, 26, 52)
DEFAULT_WEEKS = 12


@dataclass(frozen=True)
class Statistics:
    weeks: tuple[str, ...]
    """The Monday of each week shown, oldest first."""
    per_category: dict[str, tuple[int, ...]]
    """Category -> reports received each week (only categories with a report in the range)."""
    open_by_status: tuple[tuple[str, int], ...]
    closed: int
    reports: int
    median_days: float | None
    """Median wait for a first reply, over the reports of the weeks shown that have one."""
    median_days_per_week: tuple[float | None, ...]
    replied: int
    waiting: int
    """Reports of the weeks shown with no reply yet (and a codename: a reply can reach them)."""


def monday(day: date) -> date:
    return day - timedelta(days=day.weekday())


def compute(vault: Vault, weeks: int = DEFAULT_WEEKS) -> Statistics:
    with vault.transaction() as db:
        (newest,) = db.execute("SELECT max(day) FROM reports").fetchone()
        last = monday(date.fromisoformat(newest)) if newest else monday(datetime.now(UTC).date())
        first = last - timedelta(weeks=weeks - 1)
        mondays = [first + timedelta(weeks=i) for i in range(weeks)]
        labels = tuple(day.isoformat() for day in mondays)
        index = {label: i for i, label in enumerate(labels)}
        start = first.isoformat()
        per_category: dict[str, list[int]] = {}
        for category, week, count in db.execute(
            """SELECT category, date(day, 'weekday 0', '-6 days') AS week, count(*)
               FROM reports WHERE day >= ? AND received GROUP BY category, week""",
            (start,),
        ):
            if week in index:
                per_category.setdefault(category, [0] * weeks)[index[week]] += count
        marks = ",".join("?" * len(OPEN_STATUSES))
        by_status = dict(
            db.execute(
                f"SELECT status, count(*) FROM reports WHERE status IN ({marks})"  # noqa: S608
                " GROUP BY status",
                OPEN_STATUSES,
            ).fetchall()
        )
        (closed,) = db.execute("SELECT count(*) FROM reports WHERE status = 'closed'").fetchone()
        (total,) = db.execute("SELECT count(*) FROM reports").fetchone()
        waits: list[tuple[str, int]] = []
        waiting = 0
        for day, first_reply, can_reply in db.execute(
            """SELECT r.day,
                      min(coalesce((SELECT min(p.day) FROM replies p WHERE p.report_id = r.id),
                                   '9999-12-31'),
                          coalesce((SELECT min(i.day) FROM items i
                                    WHERE i.report_id = r.id AND i.kind = 'reply'),
                                   '9999-12-31')),
                      s.public_key IS NOT NULL
               FROM reports r JOIN sources s ON s.id = r.source_id
               WHERE r.day >= ?""",
            (start,),
        ):
            if first_reply == "9999-12-31":
                waiting += 1 if can_reply else 0
                continue
            wait = (date.fromisoformat(first_reply) - date.fromisoformat(day)).days
            waits.append((monday(date.fromisoformat(day)).isoformat(), max(0, wait)))
    per_week: list[list[float]] = [[] for _ in labels]
    for week, wait in waits:
        if week in index:
            per_week[index[week]].append(wait)
    return Statistics(
        weeks=labels,
        per_category={key: tuple(values) for key, values in sorted(per_category.items())},
        open_by_status=tuple((status, by_status.get(status, 0)) for status in OPEN_STATUSES),
        closed=closed,
        reports=total,
        median_days=statistics.median(w for _week, w in waits) if waits else None,
        median_days_per_week=tuple(statistics.median(w) if w else None for w in per_week),
        replied=len(waits),
        waiting=waiting,
    )
