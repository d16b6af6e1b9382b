"""Backup and restore drill: prove that a backup can be restored, and how long it takes.

1. Back up: the database (MariaDB: `mariadb-dump --single-transaction` with triggers;
   SQLite: the online backup API) and every stored file (scans, previews, decoded copies,
   heatmaps), with a sha256 manifest.
2. Restore into a fresh database (MariaDB: a new database `<name>_drill_<time>`; SQLite:
   a new file) and a fresh media folder.
3. Verify the restored copy: row counts of every table equal the source's; every
   restored file has its manifest checksum and every scan its recorded sha256; the audit
   trail's hash chains verify (`manage.py audit_verify` against the restored database).
4. Report the time of each step; restore + verify is the measured recovery time (RTO).

Run it with an account that may create databases (an operator's, not the application's).
Exit status 1 when anything does not match. `--json` prints the report as JSON."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import connection

def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def manifest(root: Path) -> dict[str, str]:
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def row_counts(cursor, tables) -> dict[str, int]:
    counts = {}
    for table in tables:
        cursor.execute(f"SELECT COUNT(*) FROM {connection.ops.quote_name(table)}")
        counts[table] = cursor.fetchone()[0]
    return counts


class MariaDB:
    def __init__(self, db: dict):
        self.db = db
        self.args = ["--host", db["HOST"] or "127.0.0.1", "--port", str(db["PORT"] or 3306), "--user", db["USER"]]
        self.env = {**os.environ, **({"MYSQL_PWD": db["PASSWORD"]} if db["PASSWORD"] else {})}

    def dump(self, target: Path) -> None:
        with open(target, "wb") as out:
            subprocess.run(["mariadb-dump", *self.args, "--single-transaction", "--triggers", "--routines",
                            "--hex-blob", "--default-character-set=utf8mb4", self.db["NAME"]],
                           stdout=out, env=self.env, check=True, stderr=subprocess.PIPE)

    def restore(self, dump: Path, stamp: str) -> dict:
        name = f"{self.db['NAME'][:40]}_drill_{stamp}"
        subprocess.run(["mariadb", *self.args, "-e", f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"],
                       env=self.env, check=True, capture_output=True)
        with open(dump, "rb") as src:
            subprocess.run(["mariadb", *self.args, "--default-character-set=utf8mb4", name], stdin=src, env=self.env,
                           check=True, capture_output=True)
        return {**self.db, "NAME": name}

    def connect(self, restored: dict):
        import MySQLdb

        return MySQLdb.connect(host=restored["HOST"] or "127.0.0.1", port=int(restored["PORT"] or 3306),
                               user=restored["USER"], password=restored["PASSWORD"] or "", database=restored["NAME"])

    def drop(self, restored: dict) -> None:
        subprocess.run(["mariadb", *self.args, "-e", f"DROP DATABASE IF EXISTS `{restored['NAME']}`"],
                       env=self.env, check=True, capture_output=True)

    def url(self, restored: dict) -> str:
        auth = restored["USER"] + (f":{restored['PASSWORD']}" if restored["PASSWORD"] else "")
        return f"mysql://{auth}@{restored['HOST'] or '127.0.0.1'}:{restored['PORT'] or 3306}/{restored['NAME']}"


class SQLite:
    def __init__(self, db: dict):
        self.db = db

    def dump(self, target: Path) -> None:
        connection.ensure_connection()
        with sqlite3.connect(target) as out:
            connection.connection.backup(out)
        out.close()

    def restore(self, dump: Path, stamp: str) -> dict:
        restored = dump.with_name(f"restored-{stamp}.sqlite3")
        shutil.copyfile(dump, restored)
        return {**self.db, "NAME": str(restored)}

    def connect(self, restored: dict):
        return sqlite3.connect(restored["NAME"])

    def drop(self, restored: dict) -> None:
        Path(restored["NAME"]).unlink(missing_ok=True)

    def url(self, restored: dict) -> str:
        return f"sqlite:///{restored['NAME']}"


ENGINES = {"mysql": MariaDB, "sqlite": SQLite}


class Command(BaseCommand):
    help = "Back up the database and the stored files, restore them into a fresh copy, verify it, report the time."

    def add_arguments(self, parser):
        parser.add_argument("--workdir", type=Path, help="Where the backup and the restored copy go (default: a "
                                                          "temporary folder, removed afterwards).")
        parser.add_argument("--keep", action="store_true", help="Keep the backup and the restored database.")
        parser.add_argument("--json", action="store_true")

    def handle(self, *args, workdir=None, keep=False, json=False, **options):
        engine_class = ENGINES.get(connection.vendor)
        if engine_class is None:
            raise CommandError(f"The drill supports MariaDB/MySQL and SQLite, not {connection.vendor}.")
        engine = engine_class(connection.settings_dict)
        work = Path(workdir or tempfile.mkdtemp(prefix="backup-drill-"))
        work.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d%H%M%S")
        media = Path(settings.MEDIA_ROOT)
        timings, restored = {}, None
        try:
            started = time.monotonic()
            with connection.cursor() as cursor:
                source_counts = row_counts(cursor, connection.introspection.table_names(cursor))
            engine.dump(work / "database.dump")
            source_files = manifest(media)
            if media.exists():
                shutil.copytree(media, work / "media", dirs_exist_ok=True)
            (work / "media-manifest.json").write_text(json_dumps(source_files))
            timings["backup_s"] = time.monotonic() - started

            started = time.monotonic()
            restored = engine.restore(work / "database.dump", stamp)
            restored_media = work / "restored-media"
            if (work / "media").exists():
                shutil.copytree(work / "media", restored_media)
            timings["restore_s"] = time.monotonic() - started

            started = time.monotonic()
            report = self.verify(engine, restored, restored_media, source_counts, source_files)
            timings["verify_s"] = time.monotonic() - started
        finally:
            if restored is not None and not keep:
                engine.drop(restored)
            if workdir is None and not keep:
                shutil.rmtree(work, ignore_errors=True)
        report.update({k: round(v, 2) for k, v in timings.items()})
        report["rto_s"] = round(timings["restore_s"] + timings["verify_s"], 2)
        report["ok"] = not (report["row_count_mismatches"] or report["checksum_mismatches"]
                            or report["audit_problems"])
        if json:
            self.stdout.write(json_dumps(report))
        else:
            self.stdout.write(
                f"Backup drill ({report['engine']}): tables {report['tables']}, rows {report['rows']}, files "
                f"{report['files']}; row-count mismatches {report['row_count_mismatches']}, checksum mismatches "
                f"{report['checksum_mismatches']}, audit entries {report['audit_entries']} with "
                f"{report['audit_problems']} problem(s); backup {report['backup_s']} s, restore {report['restore_s']} "
                f"s, verify {report['verify_s']} s: RTO {report['rto_s']} s")
        if not report["ok"]:
            raise CommandError("The restored copy does not match the source: " + "; ".join(report["problems"][:20]))

    def verify(self, engine, restored: dict, restored_media: Path, source_counts: dict, source_files: dict) -> dict:
        problems = []
        conn = engine.connect(restored)
        try:
            cursor = conn.cursor()
            counts = row_counts(cursor, source_counts)
            for table in sorted(source_counts):
                if source_counts[table] != counts[table]:
                    problems.append(f"table {table}: {source_counts[table]} rows, restored {counts[table]}")
            row_mismatches = len(problems)
            cursor.execute("SELECT file, sha256 FROM screening_scan")
            scans = cursor.fetchall()
        finally:
            conn.close()
        restored_files = manifest(restored_media)
        for name, digest in source_files.items():
            if restored_files.get(name) != digest:
                problems.append(f"file {name}: checksum differs after restore")
        for name, digest in scans:
            if restored_files.get(name) != digest:
                problems.append(f"scan file {name}: does not match the sha256 recorded at upload")
        checksum_mismatches = len(problems) - row_mismatches
        verify = subprocess.run([sys.executable, "manage.py", "audit_verify"], cwd=settings.BASE_DIR,
                                env={**os.environ, "DATABASE_URL": engine.url(restored)}, capture_output=True,
                                text=True)
        entries = next((int(line.split(":")[1]) for line in verify.stdout.splitlines()
                        if line.startswith("Audit entries checked:")), 0)
        audit_problems = 0 if verify.returncode == 0 else max(1, verify.stdout.count("chain "))
        if audit_problems:
            problems.append("audit trail of the restored copy: " + (verify.stdout + verify.stderr).strip()[-500:])
        return {"engine": connection.vendor, "tables": len(source_counts), "rows": sum(source_counts.values()),
                "files": len(source_files), "scans": len(scans), "row_count_mismatches": row_mismatches,
                "checksum_mismatches": checksum_mismatches, "audit_entries": entries,
                "audit_problems": audit_problems, "problems": problems}


def json_dumps(value) -> str:
    return json.dumps(value, indent=1, sort_keys=True)
