"""Manifests, patient-disjoint splits and the decoded-image cache.

Used by training and evaluation only (the web and the worker never need it).
"""

from __future__ import annotations

import csv
import hashlib
import os
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ml.card import CLASSES, sha256_file
from ml.preprocessing import PREPROCESSING_VERSION, load_image, prepare

REQUIRED_COLUMNS = ("path", "label", "patient_id", "source")


@dataclass
class Record:
    path: Path  # absolute
    label: str
    patient_id: str
    source: str
    age_group: str = ""
    row: dict | None = None

    @property
    def y(self) -> int:
        return CLASSES.index(self.label)


def read_manifest(manifest: str | os.PathLike, limit: int | None = None,
                  seed: int = 0) -> list[Record]:
    """Read a manifest CSV; image paths are relative to the manifest's folder.

    With ``limit``, a label- and source-stratified random subset of about
    ``limit`` rows is kept (for quick runs), chosen deterministically.
    """
    manifest = Path(manifest)
    root = manifest.resolve().parent
    with open(manifest, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = [c for c in REQUIRED_COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{manifest}: missing column(s) {', '.join(missing)}")
        records = []
        for i, row in enumerate(reader):
            label = (row["label"] or "").strip().lower()
            if label not in CLASSES:
                raise ValueError(f"{manifest}:{i + 2}: unknown label {row['label']!r}")
            records.append(Record(
                path=(root / row["path"]).resolve(),
                label=label,
                patient_id=row["patient_id"] or f"row:{i}",
                source=row["source"] or "unknown",
                age_group=row.get("age_group", "") or "",
                row=row,
            ))
    if limit and limit < len(records):
        rng = np.random.default_rng(seed)
        by_stratum = defaultdict(list)
        for r in records:
            by_stratum[(r.label, r.source)].append(r)
        frac = limit / len(records)
        keep = []
        for key in sorted(by_stratum):
            rs = by_stratum[key]
            n = max(1, int(round(len(rs) * frac)))
            idx = rng.permutation(len(rs))[:n]
            keep.extend(rs[i] for i in sorted(idx))
        records = keep
    return records


def patient_split(records: list[Record], val_fraction: float = 0.15,
                  seed: int = 0) -> tuple[list[int], list[int]]:
    """Split indices into train/validation, grouped by ``patient_id``.

    Every image of a patient lands on the same side (several sources hold
    follow-up films of one patient; splitting by file would leak them).  The
    patient groups are stratified by (label, source) of the patient's most
    common label, so the small hospitals and classes appear on both sides.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(records):
        groups[r.patient_id].append(i)
    strata: dict[tuple, list[str]] = defaultdict(list)
    for pid, idx in groups.items():
        label = Counter(records[i].label for i in idx).most_common(1)[0][0]
        strata[(label, records[idx[0]].source)].append(pid)
    rng = np.random.default_rng(seed)
    val_pids: set[str] = set()
    for key in sorted(strata):
        pids = sorted(strata[key])
        rng.shuffle(pids)
        n_val = int(round(len(pids) * val_fraction))
        if n_val == 0 and len(pids) >= 2 and rng.random() < len(pids) * val_fraction * 2:
            n_val = 1
        val_pids.update(pids[:n_val])
    train = [i for i, r in enumerate(records) if r.patient_id not in val_pids]
    val = [i for i, r in enumerate(records) if r.patient_id in val_pids]
    return train, val


def load_arrays(records: list[Record], size: int, cache_dir: str | os.PathLike | None = None,
                progress: bool = True) -> np.ndarray:
    """Decode and prepare every record: float16 array (N, size, size, 1).

    Decoding 9k JPEGs takes a minute on two cores, so the result is cached
    under ``cache_dir`` keyed by the file list, sizes/mtimes, the input size
    and the preprocessing version.  The cache is never part of the repo.
    """
    key = hashlib.sha256()
    key.update(f"{PREPROCESSING_VERSION}|{size}".encode())
    for r in records:
        try:
            st = r.path.stat()
            key.update(f"{r.path}|{st.st_size}|{int(st.st_mtime)}\n".encode())
        except OSError:
            key.update(f"{r.path}|missing\n".encode())
    cache_file = None
    if cache_dir:
        cache_file = Path(cache_dir) / f"cxr-{size}-{key.hexdigest()[:20]}.npy"
        if cache_file.exists():
            return np.load(cache_file)
    out = np.zeros((len(records), size, size, 1), dtype=np.float16)
    t0 = time.time()
    for i, r in enumerate(records):
        out[i] = prepare(load_image(r.path), size)
        if progress and (i + 1) % 1000 == 0:
            print(f"  decoded {i + 1}/{len(records)} images ({time.time() - t0:.0f}s)",
                  flush=True, file=sys.stderr)
    if cache_file is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(".tmp.npy")
        np.save(tmp, out)
        os.replace(tmp, cache_file)
    return out


def write_manifest(records: list[Record], path: str | os.PathLike) -> Path:
    """Write records as a manifest with absolute image paths."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(records[0].row) if records and records[0].row else list(REQUIRED_COLUMNS)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        for r in records:
            row = dict(r.row or {}, label=r.label, patient_id=r.patient_id, source=r.source)
            row["path"] = str(r.path)
            w.writerow(row)
    return path


def manifest_sha256(manifest: str | os.PathLike) -> str:
    return sha256_file(manifest)
