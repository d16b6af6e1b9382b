"""The dashboard's figures for one hospital. Run inside the hospital's scope.

Each figure is one grouped query (days come from the stored dates, never from a query per
day or per patient), so the page costs the same number of queries whatever the data. The
figures are cached per hospital under a key holding the newest row of everything they
count (one indexed query), so any upload, result, review, patient edit or status change
shows on the next page load, and an unchanged hospital costs one query.

Counts per day are rebuilt from the status history: today's count of a status is the
number of patients in it now, and each earlier day's count undoes the changes that took
effect after that day (`StatusChange.effective_date`; the service refuses dates in the
future and dates before the current status began, so the history is ordered)."""

import datetime
import hashlib
import math
import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass

from django.core.cache import cache
from django.db import connection
from django.db.models import Count, Min
from django.db.models.functions import TruncDate
from django.utils import timezone
from django.utils.translation import get_language, ngettext
from django.utils.translation import gettext as _

from hospitals.models import Hospital
from patients.models import Patient, Status, StatusChange
from screening.models import AWAITING_REVIEW, AiLabel, AiResult, Review, Screening

DAYS = 30  # the charts and the review figures cover the last 30 days, today included
WINDOWS = (7, 30)  # status count changes over these many days
TREND_STATUSES = (Status.INFECTED, Status.CARRIER)
CACHE_SECONDS = 300  # bounds staleness after a deletion, which the data version does not see


@dataclass(frozen=True)
class StatusFigure:
    status: Status
    count: int
    changes: dict[int, int]  # window in days -> count now minus count at the end of that day


@dataclass(frozen=True)
class Turnaround:
    label: str
    count: int
    median_s: float | None
    p90_s: float | None

    @property
    def median(self) -> str:
        return format_duration(self.median_s)

    @property
    def p90(self) -> str:
        return format_duration(self.p90_s)


def _days(today: datetime.date) -> list[datetime.date]:
    return [today - datetime.timedelta(days=n) for n in range(DAYS - 1, -1, -1)]


def _start_of(day: datetime.date) -> datetime.datetime:
    return timezone.make_aware(datetime.datetime.combine(day, datetime.time.min))


def status_figures(*, hospital: Hospital, today: datetime.date) -> tuple[list[StatusFigure], dict]:
    """Patients per status now with their change over each window, and the daily count of
    infected and carrier patients over the last `DAYS` days (chart data). Three queries."""
    now = dict(Patient.objects.filter(hospital=hospital).values_list("status").annotate(n=Count("id")))
    since = today - datetime.timedelta(days=max(WINDOWS[-1], DAYS))
    changes = StatusChange.objects.filter(hospital=hospital, effective_date__gt=since)
    # net[day][status]: patients who entered the status on that day minus those who left it.
    net: dict[datetime.date, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for day, status, n in changes.values_list("effective_date", "to_status").annotate(n=Count("id")):
        net[day][status] += n
    for day, status, n in (changes.exclude(from_status="").values_list("effective_date", "from_status")
                           .annotate(n=Count("id"))):
        net[day][status] -= n

    def count_at_end_of(day: datetime.date, status: str) -> int:
        return now.get(status, 0) - sum(by_status[status] for d, by_status in net.items() if d > day)

    figures = [
        StatusFigure(status=Status(status), count=now.get(status, 0),
                     changes={w: now.get(status, 0) - count_at_end_of(today - datetime.timedelta(days=w), status)
                              for w in WINDOWS})
        for status in Status.values
    ]
    days = _days(today)
    trend = {
        "days": [d.isoformat() for d in days],
        "series": [{"key": s.value, "label": s.label, "counts": [count_at_end_of(d, s) for d in days]}
                   for s in TREND_STATUSES],
    }
    return figures, trend


def screenings_per_day(*, hospital: Hospital, today: datetime.date) -> dict:
    """Screenings with an AI result per day (the day of the result) and AI label over the
    last `DAYS` days (chart data). One query."""
    days = _days(today)
    rows = (AiResult.objects.filter(hospital=hospital, created_at__gte=_start_of(days[0]))
            .annotate(day=TruncDate("created_at")).values_list("day", "label")
            .annotate(n=Count("screening", distinct=True)))
    counts = {(day, label): n for day, label, n in rows}
    return {
        "days": [d.isoformat() for d in days],
        "series": [{"key": label.value, "label": label.label, "counts": [counts.get((d, label.value), 0) for d in days]}
                   for label in AiLabel],
    }


def pending_reviews(*, hospital: Hospital) -> dict:
    """Screenings with an AI result that nobody has reviewed yet: how many, and when the
    oldest of them was uploaded. One query."""
    return (Screening.objects.filter(AWAITING_REVIEW, hospital=hospital)
            .aggregate(count=Count("id"), oldest=Min("created_at")))


def agreement(*, hospital: Hospital, today: datetime.date) -> dict:
    """AI label against the clinician's label over the screenings reviewed in the last
    `DAYS` days (the latest review of each): a confusion table and the agreement rate.
    One query; the latest review of each screening is picked here (a correlated subquery
    per review is far slower on a large trail)."""
    reviews = (Review.objects.filter(hospital=hospital, reviewed_at__gte=_start_of(_days(today)[0]))
               .order_by("screening_id", "reviewed_at", "id")
               .values_list("screening_id", "result__label", "clinical_label"))
    latest = {screening: (ai, clinical) for screening, ai, clinical in reviews}
    cells = Counter(latest.values())
    labels = list(AiLabel)
    total = sum(cells.values())
    agreed = sum(cells[(label.value, label.value)] for label in labels)
    return {
        "labels": labels,
        "rows": [(ai, [cells[(ai.value, clinical.value)] for clinical in labels],
                  sum(cells[(ai.value, clinical.value)] for clinical in labels)) for ai in labels],
        "column_totals": [sum(cells[(ai.value, clinical.value)] for ai in labels) for clinical in labels],
        "total": total,
        "agreed": agreed,
        "rate": agreed / total if total else None,
    }


def _percentile(sorted_values: list[float], fraction: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty list."""
    return sorted_values[max(math.ceil(fraction * len(sorted_values)) - 1, 0)]


def _turnaround(label: str, pairs) -> Turnaround:
    seconds = sorted((end - start).total_seconds() for start, end in pairs if start and end)
    if not seconds:
        return Turnaround(label=label, count=0, median_s=None, p90_s=None)
    return Turnaround(label=label, count=len(seconds), median_s=statistics.median(seconds),
                      p90_s=_percentile(seconds, 0.9))


def turnarounds(*, hospital: Hospital, today: datetime.date) -> list[Turnaround]:
    """Time from upload to the first AI result and from upload to the first review of the
    screenings uploaded in the last `DAYS` days: median and 90th percentile. One query."""
    rows = list(Screening.objects.filter(hospital=hospital, created_at__gte=_start_of(_days(today)[0]))
                .annotate(result_at=Min("results__created_at"), review_at=Min("reviews__reviewed_at"))
                .values_list("created_at", "result_at", "review_at"))
    return [_turnaround(_("AI result"), [(uploaded, result) for uploaded, result, _r in rows]),
            _turnaround(_("Review"), [(uploaded, review) for uploaded, _r, review in rows])]


def format_duration(seconds: float | None) -> str:
    """A short human duration: 42 s, 3 min, 2 h 05 min, 3 d 4 h; an em dash for none."""
    if seconds is None:
        return "—"
    seconds = round(seconds)
    if seconds < 60:
        return _("%(n)d s") % {"n": seconds}
    minutes = seconds // 60
    if minutes < 60:
        return _("%(n)d min") % {"n": minutes}
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return _("%(h)d h %(m)02d min") % {"h": hours, "m": minutes}
    days, hours = divmod(hours, 24)
    return ngettext("%(d)d day %(h)d h", "%(d)d days %(h)d h", days) % {"d": days, "h": hours}


def table_rows(chart: dict) -> list[tuple[datetime.date, list[int]]]:
    """A chart's data as table rows, oldest day first like the chart: (day, [count per series])."""
    return [(datetime.date.fromisoformat(day), [series["counts"][i] for series in chart["series"]])
            for i, day in enumerate(chart["days"])]


#: What the data version reads: the newest time of each table the figures count, the column its
#: (hospital, time) index holds, so that each part reads one index entry. Ordered by id, MariaDB
#: sorted the hospital's status changes and reviews, or walked the primary key past other
#: hospitals' screenings and results (the statement took 2.5 ms at the median of the benchmark's
#: 100 hospitals and 7.2 at most, against 0.6 and 2.6). Every time but the patient's is set once,
#: at insert; a second row of the same microsecond would go unseen until the cache expires, as a
#: deleted row other than the newest does.
VERSION_COLUMNS = ((Patient, "updated_at"), (StatusChange, "changed_at"), (Screening, "created_at"),
                   (AiResult, "created_at"), (Review, "reviewed_at"))
RECENT_VERSION = 2  # the first two: what the recent status changes show
_version_sql: dict[str, str] = {}  # database vendor -> the statement


def data_version(*, hospital: Hospital) -> tuple:
    """The newest time of everything the figures count, in one query (each part is an index
    lookup): it changes with every upload, AI result, review, status change and patient edit.
    Every load of the page reads it, so the statement is written once from the models' tables
    instead of being compiled by the ORM each time (which cost 30 times the CPU of running it)."""
    sql = _version_sql.get(connection.vendor)
    if sql is None:
        qn = connection.ops.quote_name

        def newest(model, name):
            column, table = qn(model._meta.get_field(name).column), qn(model._meta.db_table)
            return (f"(SELECT {column} FROM {table} WHERE {qn(model._meta.get_field('hospital').column)} = %s "
                    f"ORDER BY {column} DESC LIMIT 1)")

        sql = _version_sql[connection.vendor] = "SELECT " + ", ".join(newest(m, n) for m, n in VERSION_COLUMNS)
    with connection.cursor() as cursor:
        cursor.execute(sql, [hospital.pk] * len(VERSION_COLUMNS))
        return cursor.fetchone()


def dashboard(*, hospital: Hospital) -> dict:
    """Everything the dashboard shows except the recent changes list, from the cache while
    the hospital's data has not changed. `figures_key` names this version of the figures:
    the page caches the charts' tables rendered from them under it (tenant and language in
    the key, like the figures); `recent_key` names this version of the recent changes."""
    today = timezone.localdate()
    newest = data_version(hospital=hospital)
    version = hashlib.sha256(repr(newest).encode()).hexdigest()[:20]
    key = f"dashboard:h{hospital.pk}:{today.isoformat()}:{get_language()}:{version}"
    figures = cache.get(key)
    if figures is None:
        figures = _compute(hospital=hospital, today=today)
        cache.set(key, figures, CACHE_SECONDS)
    # The recent changes show status changes and their patients: an upload, a result or a
    # review leaves them as they were.
    recent = hashlib.sha256(repr(newest[:RECENT_VERSION]).encode()).hexdigest()[:20]
    return {**figures, "figures_key": key, "figures_seconds": CACHE_SECONDS,
            "recent_key": f"dashboard-recent:h{hospital.pk}:{hospital.slug}:{get_language()}:{recent}"}


def _compute(*, hospital: Hospital, today: datetime.date) -> dict:
    figures, trend = status_figures(hospital=hospital, today=today)
    screenings = screenings_per_day(hospital=hospital, today=today)
    return {
        "today": today,
        "days": DAYS,
        "windows": WINDOWS,
        "status_figures": figures,
        "total_patients": sum(f.count for f in figures),
        "trend": trend,
        "trend_rows": table_rows(trend),
        "screenings": screenings,
        "screenings_rows": table_rows(screenings),
        "pending": pending_reviews(hospital=hospital),
        "agreement": agreement(hospital=hospital, today=today),
        "turnarounds": turnarounds(hospital=hospital, today=today),
    }
