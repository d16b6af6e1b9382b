"""Database triggers that refuse UPDATE and DELETE on the audit trail, so not even a
bug in the application (or a raw query) can rewrite it. Tampering by someone who can
drop the triggers is still caught by the hash chain (`manage.py audit_verify`)."""

from django.db import migrations

SQLITE = [
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON hospitals_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON hospitals_auditevent
       BEGIN SELECT RAISE(ABORT, 'audit events are append-only'); END""",
]
MYSQL = [
    """CREATE TRIGGER audit_no_update BEFORE UPDATE ON hospitals_auditevent FOR EACH ROW
       SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit events are append-only'""",
    """CREATE TRIGGER audit_no_delete BEFORE DELETE ON hospitals_auditevent FOR EACH ROW
       SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'audit events are append-only'""",
]
DROP = ["DROP TRIGGER IF EXISTS audit_no_update", "DROP TRIGGER IF EXISTS audit_no_delete"]


def create(apps, schema_editor):
    statements = {"sqlite": SQLITE, "mysql": MYSQL}.get(schema_editor.connection.vendor, [])
    for sql in statements:
        schema_editor.execute(sql)


def drop(apps, schema_editor):
    if schema_editor.connection.vendor in ("sqlite", "mysql"):
        for sql in DROP:
            schema_editor.execute(sql)


class Migration(migrations.Migration):
    atomic = False
    dependencies = [("hospitals", "0001_initial")]
    operations = [migrations.RunPython(create, drop)]
