"""Entry points that open a hospital scope outside a web request: management commands
and Celery tasks. Each takes a hospital id or slug, reloads it and runs inside
`scope(hospital=...)`; there is no other way into scoped data from those entry points."""

import random

from celery import Task
from django.core.management.base import BaseCommand, CommandError
from django.db import InterfaceError, OperationalError
from django_scopes import get_scope, scope

from .models import Hospital


class ScopedCommand(BaseCommand):
    """A management command that works on one hospital: `--hospital <slug>` is required
    and `handle_scoped(hospital, **options)` runs inside its scope."""

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.add_argument("--hospital", required=True, help="Slug of the hospital to work on.")
        return parser

    def handle(self, *args, **options):
        slug = options.pop("hospital")
        hospital = Hospital.objects.filter(slug=slug).first()
        if hospital is None:
            raise CommandError(f"No hospital with slug '{slug}'.")
        with scope(hospital=hospital):
            return self.handle_scoped(hospital, *args, **options)

    def handle_scoped(self, hospital: Hospital, *args, **options):
        raise NotImplementedError


class HospitalTask(Task):
    """Celery base for hospital work. Tasks take primary keys, never instances: call with
    `hospital_id=` among the kwargs and the body runs inside that hospital's scope
    (`scoped_hospital()` returns it). The kwargs are passed on unchanged, so a retry
    re-sends the same ids."""

    abstract = True

    def __call__(self, *args, **kwargs):
        try:
            hospital = Hospital.objects.get(pk=kwargs["hospital_id"])
        except (OperationalError, InterfaceError) as exc:
            # The database is away (a restart, a failover): the same message comes back later,
            # with exponential backoff and jitter, instead of failing and being dropped.
            wait = random.uniform(0.5, 1.0) * min(60, 2 * 2**self.request.retries)
            raise self.retry(exc=exc, countdown=wait) from exc
        with scope(hospital=hospital):
            return super().__call__(*args, **kwargs)


def scoped_hospital() -> Hospital:
    """The hospital whose scope is open (inside a HospitalTask or ScopedCommand)."""
    hospital = get_scope().get("hospital")
    if not isinstance(hospital, Hospital):
        raise RuntimeError("No single hospital scope is open.")
    return hospital
