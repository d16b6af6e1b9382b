"""The append-only, hash-chained audit trail.

`audit_record` is the only writer. Each hospital has its own chain (`h<id>`; events
without a hospital, such as logins, go to `platform`). An entry's hash covers its fields
and the previous hash; the chain head row is locked while appending, so concurrent
writers of one chain queue up instead of forking it."""

import contextlib
import functools
import hashlib
import json
from dataclasses import dataclass
from datetime import UTC

from django.conf import settings
from django.db import DatabaseError, connections, router, transaction
from django.utils import timezone
from django_scopes import scopes_disabled

from .models import AuditChainHead, AuditEvent, Hospital, User

GENESIS = "0" * 64


def chain_name(hospital_id: int | None) -> str:
    return f"h{hospital_id}" if hospital_id else "platform"


def _canonical(event: AuditEvent) -> bytes:
    payload = {
        "chain": event.chain,
        "seq": event.seq,
        "at": event.at.astimezone(UTC).isoformat(timespec="microseconds"),
        "hospital": event.hospital_id,
        "actor": event.actor_id,
        "actor_email": event.actor_email,
        "action": event.action,
        "object_type": event.object_type,
        "object_id": event.object_id,
        "detail": event.detail,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str).encode()


def compute_hash(event: AuditEvent) -> str:
    return hashlib.sha256(_canonical(event)).hexdigest()


def client_ip(request) -> str | None:
    if request is None:
        return None
    if getattr(settings, "AUDIT_TRUST_X_FORWARDED_FOR", False):
        forwarded = request.META.get("HTTP_X_FORWARDED_FOR", "")
        if forwarded:
            return forwarded.split(",")[0].strip()
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    action: str,
    object_type: str,
    object_id: str | int = "",
    hospital: Hospital | None = None,
    actor: User | None = None,
    request=None,
    detail: dict | None = None,
) -> AuditEvent:
    """Append one entry. `request` (a Django or DRF request) supplies the actor (when not
    given), IP and user agent. A partner client's request (hospitals.api) is recorded with
    the client's service account as actor and the client's id and name in `detail`."""
    if actor is None and request is not None and request.user.is_authenticated:
        actor = request.user
    client = getattr(request, "partner_client", None) if request is not None else None
    if client is not None:
        detail = {**(detail or {}), "client": client.pk, "client_name": client.name}
    chain = chain_name(hospital.pk if hospital else None)
    db = router.db_for_write(AuditEvent)
    connection = connections[db]
    sql = _statements(db)
    entry = {
        "hospital": hospital, "chain": chain, "actor": actor, "actor_email": actor.email if actor else "",
        "action": action, "object_type": object_type, "object_id": str(object_id), "detail": detail or {},
        "ip": client_ip(request),
        "user_agent": request.META.get("HTTP_USER_AGENT", "")[:300] if request is not None else "",
    }
    with connection.cursor() as cursor:
        if sql.batched and connection.get_autocommit():
            # A read outside any transaction: the entry is its own, begun with the lock and
            # committed with the writes, two round trips instead of Django's six (autocommit
            # off, lock, insert, update, commit, autocommit on).
            try:
                event = _append(cursor, connection, sql, entry, own_transaction=True)
            except BaseException:
                with contextlib.suppress(DatabaseError):
                    connection.rollback()
                raise
            if event is not None:
                return event
            connection.rollback()  # the chain's first entry: its head is created below
        # Inside the caller's transaction, no savepoint of its own (two round trips saved): an
        # entry that cannot be written fails the whole change, which is what an audit needs.
        with transaction.atomic(using=db, savepoint=False):
            event = _append(cursor, connection, sql, entry)
            if event is None:
                with scopes_disabled():
                    AuditChainHead.objects.using(db).get_or_create(chain=chain, defaults={"hash": GENESIS})
                event = _append(cursor, connection, sql, entry)
    return event


def _append(cursor, connection, sql: "_Statements", entry: dict, *, own_transaction: bool = False):
    """Lock the chain's head, then insert the entry (`entry`: its fields but for its place in
    the chain) and move the head, in one round trip where the server takes several statements
    (`own_transaction` begins a transaction with the lock and commits it with the writes).
    None, with nothing written, when the chain has no head yet."""
    cursor.execute(sql.begin_lock_head if own_transaction else sql.lock_head, [entry["chain"]])
    if own_transaction:
        with connection.wrap_database_errors:  # the lock's result (or its error) follows the begin's
            cursor.nextset()
    head = cursor.fetchone()
    if head is None:
        return None
    head_id, seq, prev_hash = head
    event = AuditEvent(seq=seq + 1, at=timezone.now(), prev_hash=prev_hash, **entry)
    event.hash = compute_hash(event)
    values = [f.get_db_prep_save(getattr(event, f.attname), connection) for f in sql.fields]
    head_values = [event.seq, event.hash, head_id]
    if sql.batched:
        cursor.execute(sql.append_commit if own_transaction else sql.append, values + head_values)
        event.pk = cursor.lastrowid  # the insert's: read before the next results replace it
        with connection.wrap_database_errors:  # an error of the update or the commit is raised here
            while cursor.nextset():
                pass
    else:
        cursor.execute(sql.insert, values)
        event.pk = connection.ops.last_insert_id(cursor, AuditEvent._meta.db_table, AuditEvent._meta.pk.column)
        cursor.execute(sql.update_head, head_values)
    event._state.adding, event._state.db = False, connection.alias
    return event


@dataclass(frozen=True)
class _Statements:
    lock_head: str
    insert: str
    update_head: str
    fields: tuple
    # Where the server takes several statements in one round trip (MariaDB, MySQL):
    append: str = ""  # insert; update_head
    begin_lock_head: str = ""  # START TRANSACTION; lock_head
    append_commit: str = ""  # append; COMMIT

    @property
    def batched(self) -> bool:
        return bool(self.append)


@functools.cache
def _statements(db: str) -> _Statements:
    """The statements of an append, written once per process: built by the ORM they cost
    more CPU than the rest of a read request's audit. The values are prepared by the
    model's own fields (`get_db_prep_save`), as `Model.save()` would store them."""
    connection = connections[db]
    q = connection.ops.quote_name
    head, events = AuditChainHead._meta, AuditEvent._meta
    fields = tuple(f for f in events.concrete_fields if not f.primary_key)
    lock_head = (f"SELECT {q(head.pk.column)}, {q('seq')}, {q('hash')} FROM {q(head.db_table)} "
                 f"WHERE {q('chain')} = %s" + (" FOR UPDATE" if connection.features.has_select_for_update else ""))
    insert = (f"INSERT INTO {q(events.db_table)} ({', '.join(q(f.column) for f in fields)}) "
              f"VALUES ({', '.join(['%s'] * len(fields))})")
    update_head = f"UPDATE {q(head.db_table)} SET {q('seq')} = %s, {q('hash')} = %s WHERE {q(head.pk.column)} = %s"
    if connection.vendor != "mysql":
        return _Statements(lock_head, insert, update_head, fields)
    append = f"{insert}; {update_head}"
    return _Statements(lock_head, insert, update_head, fields, append=append,
                       begin_lock_head=f"START TRANSACTION; {lock_head}", append_commit=f"{append}; COMMIT")


@dataclass
class ChainProblem:
    chain: str
    seq: int | None
    problem: str


def audit_verify(*, chain: str | None = None) -> tuple[int, list[ChainProblem]]:
    """Re-walk every chain (or one). Returns (entries checked, problems found).

    Detects an edited entry (hash mismatch), a deleted or inserted entry (a gap in seq or a
    broken prev_hash link) and a deleted tail (the head records more than is left)."""
    problems: list[ChainProblem] = []
    checked = 0
    with scopes_disabled():
        heads = AuditChainHead.objects.all()
        chains = {h.chain: h for h in heads}
        names = set(chains) | set(AuditEvent.objects.values_list("chain", flat=True).distinct())
        if chain is not None:
            names &= {chain}
        for name in sorted(names):
            expected_seq, prev = 1, GENESIS
            for event in AuditEvent.objects.filter(chain=name).order_by("seq").iterator(chunk_size=2000):
                checked += 1
                if event.seq != expected_seq:
                    problems.append(ChainProblem(name, event.seq, f"entries missing before seq {event.seq}"))
                if event.prev_hash != prev:
                    problems.append(ChainProblem(name, event.seq, "link to the previous entry is broken"))
                if compute_hash(event) != event.hash:
                    problems.append(ChainProblem(name, event.seq, "entry was altered (hash mismatch)"))
                expected_seq, prev = event.seq + 1, event.hash
            head = chains.get(name)
            if head is None:
                problems.append(ChainProblem(name, None, "chain head is missing"))
            elif head.seq != expected_seq - 1 or head.hash != prev:
                problems.append(ChainProblem(name, head.seq, "entries missing at the end of the chain"))
    return checked, problems
