from django_scopes import scope

from hospitals.models import Hospital


def test_migrations_apply_and_scope_opens(db):
    hospital = Hospital.objects.create(name="Smoke", slug="smoke")
    with scope(hospital=hospital):
        assert hospital.patients.count() == 0
