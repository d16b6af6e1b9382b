"""The Celery application. JSON messages only, time limits on every task; the broker
carries ids, the database is the source of truth."""

import os
from contextlib import suppress

from celery import Celery
from celery.signals import task_postrun, task_prerun

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.local")

app = Celery("hospital")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    task_time_limit=300,
    task_soft_time_limit=240,
    worker_prefetch_multiplier=1,
    broker_connection_retry_on_startup=True,
    # Publishing happens inside web requests: a broker that is down or half-open must not
    # hang them (the sweeper re-enqueues what could not be published).
    broker_connection_timeout=3,
    # A pool child loads the model in worker_process_init (TensorFlow import + weights):
    # several seconds, more on a busy machine. Celery's default 4 s wait for the child's
    # "up" message kills it and starts another, which loads again: a restart loop.
    worker_proc_alive_timeout=120,
)

# Redis socket timeouts (kombu's default is none: a half-open broker hangs forever).
# Merged into whatever transport options the settings give (the filesystem transport's
# folders), which is why this waits until the configuration has been read.
BROKER_SOCKET_TIMEOUTS = {"socket_timeout": 5, "socket_connect_timeout": 3}


@app.on_after_configure.connect
def bounded_broker_waits(sender, **kwargs):
    options = dict(sender.conf.broker_transport_options or {})
    for key, value in BROKER_SOCKET_TIMEOUTS.items():
        options.setdefault(key, value)
    sender.conf.broker_transport_options = options


@task_prerun.connect
@task_postrun.connect
def close_old_database_connections(task, **kwargs):
    """Around every task, what Django does around every request: a connection older than
    CONN_MAX_AGE or broken by an error is closed; a kept one is pinged before its next query
    (CONN_HEALTH_CHECKS), so a database that restarted costs one reconnect, not a failed
    task. Celery's own fixup would close it after every task instead (CELERY_DB_REUSE_MAX
    in the settings turns that off): a reconnect per screening."""
    from django.db import close_old_connections, connections

    if getattr(task.request, "is_eager", False):  # an eager task runs inside its caller's transaction
        return
    for connection in connections.all(initialized_only=True):
        drop_if_left_in_a_transaction(connection)
    close_old_connections()


def drop_if_left_in_a_transaction(connection):
    """No task starts or ends inside a transaction, so a connection that believes it is in one
    was left there by a fault: a server lost in the middle of an atomic block leaves the wrapper
    closed "in a transaction" (Django keeps it so that the block's exit can clean up), and every
    later query of this process would fail with TransactionManagementError. Forget that state
    and close it; the next query connects afresh, as Django's connect() resets the same flags."""
    from django.db import DatabaseError

    if not (connection.in_atomic_block or connection.closed_in_transaction or connection.needs_rollback):
        return
    connection.in_atomic_block = connection.closed_in_transaction = connection.needs_rollback = False
    connection.savepoint_ids, connection.atomic_blocks = [], []
    with suppress(DatabaseError):  # a server already gone: the wrapper lets go of it all the same
        connection.close()


app.autodiscover_tasks()
