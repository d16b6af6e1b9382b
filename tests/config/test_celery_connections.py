"""The database connection a Celery worker process keeps from one task to the next."""

import pytest
from celery.signals import task_postrun, task_prerun
from django.db import DatabaseError, connection, transaction
from django_scopes import scopes_disabled

from hospitals.models import Hospital
from screening.tasks import screening_sweep


def leave_connection_closed_in_a_transaction():
    """The state a task leaves behind when the server goes away inside an atomic block whose
    exit never runs to its end: Django keeps the closed wrapper "in the transaction"."""
    transaction.atomic().__enter__()
    connection.close()
    assert connection.closed_in_transaction and connection.needs_rollback


@pytest.mark.parametrize("signal", [task_postrun, task_prerun], ids=["after the task", "before the next"])
def test_a_connection_left_in_a_broken_transaction_is_replaced_around_a_task(transactional_db, signal):
    leave_connection_closed_in_a_transaction()
    # Every later query of the process would fail (MySQLdb's own error escapes Django's wrapper
    # when closing the cursor of the failed query fails too).
    with pytest.raises((DatabaseError, connection.Database.Error)), scopes_disabled():
        Hospital.objects.count()

    signal.send(sender=screening_sweep, task_id="t", task=screening_sweep, args=(), kwargs={})

    assert not connection.in_atomic_block
    with scopes_disabled():
        assert Hospital.objects.count() == 0
        with transaction.atomic():  # and a transaction opened afterwards really is one
            assert connection.in_atomic_block and not connection.get_autocommit()
    assert connection.get_autocommit()

