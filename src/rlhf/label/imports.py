"""Importing tasks: prompts -> demonstration tasks, model samples -> ranking tasks,
and screening items with reference answers.

Every import is all-or-nothing: the whole file is read and validated first, and
the first bad record stops it with the file, line and field, before anything is
written (unless `skip_bad_records`). Importing the same task twice adds nothing:
items are keyed by a digest of their content. A prompt id may appear once in a
prompts or screening file: two records under one id would export as one prompt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import select

# The K check of grouped samples needs line numbers before validation: iter_raw gives
# the same numbered rows that rlhf.data validates.
from rlhf.data.io import iter_raw
from rlhf.data.records import NORMALIZERS, FieldError, RecordError
from rlhf.label.db import SETTINGS, Database
from rlhf.label.models import Item


@dataclass
class ImportReport:
    added: int = 0
    duplicates: int = 0  # already in the database (or twice in the file)
    skipped: int = 0  # bad records left out because skip_bad_records was set

    def __str__(self) -> str:
        text = f"added {self.added} task(s)"
        if self.duplicates:
            text += f", {self.duplicates} already present"
        if self.skipped:
            text += f", skipped {self.skipped} bad record(s)"
        return text


def _numbered(path: str | Path, kind: str, skip_bad_records: bool, report: ImportReport):
    """(line, canonical record) for each good record; bad ones raise or are counted."""
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: no such file")
    normalize = NORMALIZERS[kind]
    try:
        for line, raw in iter_raw(path):
            try:
                if isinstance(raw, RecordError):
                    raise raw
                if not isinstance(raw, dict):
                    raise RecordError(str(path), line, "<record>", "each record must be a JSON object")
                try:
                    record = normalize(raw)
                except FieldError as e:
                    raise RecordError(str(path), line, e.field, e.message) from None
                _check_prompt_id(path, line, record)
                yield line, record
            except RecordError:
                if not skip_bad_records:
                    raise
                report.skipped += 1
    except UnicodeDecodeError:
        # The reader decodes the whole stream, so its error names no line: find it.
        # (A reader that yields the bad line as a RecordError would let skip_bad_records skip it.)
        raise _first_bad_utf8_line(path) from None


def _first_bad_utf8_line(path) -> RecordError:
    with open(path, "rb") as f:
        for line, raw in enumerate(f, start=1):
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as e:
                return RecordError(str(path), line, "<encoding>",
                                   f"not UTF-8: byte 0x{raw[e.start]:02x} at column {e.start + 1} (save the file as UTF-8)")
    return RecordError(str(path), 0, "<encoding>", "not UTF-8 (save the file as UTF-8)")


def _check_prompt_id(path, line: int, record: dict) -> None:
    pid = _prompt_id(record)
    if pid is not None and ("\x00" in pid or len(pid) > 255):
        raise RecordError(str(path), line, _id_field(record), "must be at most 255 characters, none of them NUL")


def _id_field(record: dict) -> str:
    return "prompt_id" if record.get("prompt_id") is not None else "id"


def _unique_ids(path, rows, skip_bad_records: bool, report: ImportReport):
    """The rows whose prompt id (if any) no earlier row of the file has."""
    first: dict[str, int] = {}
    for line, record in rows:
        pid = _prompt_id(record)
        if pid is not None and pid in first:
            error = RecordError(str(path), line, _id_field(record), f"{pid!r} is also the id of line {first[pid]}")
            if not skip_bad_records:
                raise error
            report.skipped += 1
            continue
        if pid is not None:
            first[pid] = line
        yield line, record


def _check_overlap(overlap: int | None) -> None:
    _, low, high, _ = SETTINGS["overlap"]
    if overlap is not None and not low <= overlap <= high:
        raise ValueError(f"--overlap {overlap}: {low} to {high} labelers per item (items with fewer are never handed out)")


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _prompt_id(record: dict) -> str | None:
    value = record.get("prompt_id", record.get("id"))
    return None if value is None else str(value)


def _extra(record: dict, used: tuple[str, ...]) -> dict:
    return {k: v for k, v in record.items() if k not in used}


def _store(db: Database, path, items: list[Item], report: ImportReport) -> ImportReport:
    if not items and not report.skipped:
        raise RecordError(str(path), 0, "<file>", "holds no records to import")
    with db.transaction() as s:
        digests = [item.digest for item in items]
        present: set[str] = set()
        for start in range(0, len(digests), 500):
            present.update(s.scalars(select(Item.digest).where(Item.digest.in_(digests[start : start + 500]))))
        for item in items:
            if item.digest in present:
                report.duplicates += 1
                continue
            present.add(item.digest)
            s.add(item)
            report.added += 1
    return report


def import_prompts(db: Database, path, overlap: int | None = None, skip_bad_records: bool = False) -> ImportReport:
    """Prompts records -> demonstration tasks."""
    _check_overlap(overlap)
    report = ImportReport()
    items = []
    for _, r in _unique_ids(path, _numbered(path, "prompt", skip_bad_records, report), skip_bad_records, report):
        pid = _prompt_id(r)
        items.append(Item(
            kind="demonstration", screening=False, prompt=r["prompt"], prompt_id=pid, overlap=overlap,
            extra=_extra(r, ("prompt", "id", "prompt_id")), digest=_digest("demonstration", False, r["prompt"], pid),
        ))
    return _store(db, path, items, report)


def _group_samples(path, k: int, skip_bad_records: bool, report: ImportReport) -> list[list[tuple[int, dict]]]:
    """Samples grouped by prompt (prompt_id, else the prompt itself), in file order."""
    groups: dict[str, list[tuple[int, dict]]] = {}
    for line, r in _numbered(path, "sample", skip_bad_records, report):
        key = _prompt_id(r) or _digest(r["prompt"])
        group = groups.setdefault(key, [])
        if group and group[0][1]["prompt"] != r["prompt"]:
            error = RecordError(str(path), line, "prompt", f"differs from the prompt of line {group[0][0]}, which has the same prompt_id")
            if not skip_bad_records:
                raise error
            report.skipped += 1
            continue
        group.append((line, r))
    good = []
    for group in groups.values():
        n, first = len(group), group[0][0]
        if n < 2 or n % k:
            what = "a ranking needs K >= 2 responses" if n < 2 else f"it cannot be split into tasks of K = {k}"
            error = RecordError(str(path), first, "prompt", f"this prompt has {n} response(s) in the file; {what} (pass --k to match)")
            if not skip_bad_records:
                raise error
            report.skipped += n
            continue
        good.append(group)
    return good


def import_samples(db: Database, path, k: int, overlap: int | None = None, skip_bad_records: bool = False) -> ImportReport:
    """Samples records -> ranking tasks of K responses to the same prompt."""
    if k < 2:
        raise ValueError(f"--k {k}: a ranking needs K >= 2 responses (the paper used 4 to 9)")
    _check_overlap(overlap)
    report = ImportReport()
    items = []
    for group in _group_samples(path, k, skip_bad_records, report):
        for start in range(0, len(group), k):
            chunk = [r for _, r in group[start : start + k]]
            prompt, pid = chunk[0]["prompt"], _prompt_id(chunk[0])
            responses = [r["response"] for r in chunk]
            models = [r.get("model") for r in chunk]
            items.append(Item(
                kind="ranking", screening=False, prompt=prompt, prompt_id=pid, responses=responses,
                models=models if any(m is not None for m in models) else None, overlap=overlap, extra={},
                digest=_digest("ranking", False, prompt, pid, responses),
            ))
    return _store(db, path, items, report)


def import_screening(db: Database, path, task: str, skip_bad_records: bool = False) -> ImportReport:
    """Screening items with known answers: comparisons (the reference ranking and
    flags) for task="ranking", demonstrations (a reference response) otherwise."""
    report = ImportReport()
    items = []
    kind = "comparison" if task == "ranking" else "demonstration"
    for _, r in _unique_ids(path, _numbered(path, kind, skip_bad_records, report), skip_bad_records, report):
        pid = _prompt_id(r)
        if task == "ranking":
            reference = {"ranking": r["ranking"], "flags": r.get("flags"), "likert": r.get("likert")}
            responses = r["responses"]
        else:
            reference, responses = {"response": r["response"]}, None
        items.append(Item(
            kind=task, screening=True, prompt=r["prompt"], prompt_id=pid, responses=responses, reference=reference,
            extra={}, digest=_digest(task, True, r["prompt"], pid, responses),
        ))
    return _store(db, path, items, report)
