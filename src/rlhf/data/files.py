"""Readers and writers for the record files of shared/formats.md.

A source is a JSONL/JSON file, a Parquet file, a `.txt` file (pretraining text,
one document a line), a folder written by `datasets.save_to_disk`, or a hub
dataset name (`name` or `name:split`). Every record is validated; the first bad
one stops the read with the file, line and field, unless `skip_bad_records`.

Text files are read as bytes and decoded line by line, so a byte that is not
UTF-8 is an error on its own line (skippable like any bad record), not a
UnicodeDecodeError for the whole file that names neither.
"""

from __future__ import annotations

import codecs
import json
import logging
from pathlib import Path
from typing import Any, Iterator

from rlhf.core.io import atomic_write_jsonl
from rlhf.data.records import NORMALIZERS, RECORD_KINDS, FieldError, RecordError, check_unicode

log = logging.getLogger(__name__)


def _decoded_lines(path: Path) -> Iterator[tuple[int, str | RecordError]]:
    """(line number, text) for each line of a UTF-8 file; a RecordError in place of a line that is not UTF-8."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, start=1):
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]  # written by some Windows editors; not part of the text
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield lineno, RecordError(str(path), lineno, "<encoding>", f"not valid UTF-8: byte 0x{raw[e.start]:02x} "
                                          f"at byte {e.start + 1} of the line (save the file as UTF-8)")


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    for lineno, line in _decoded_lines(path):
        if isinstance(line, RecordError):
            yield lineno, line
            continue
        if not line.strip():
            continue
        try:
            yield lineno, json.loads(line)
        except json.JSONDecodeError as e:
            yield lineno, RecordError(str(path), lineno, "<json>", f"not valid JSON: {e.msg} at column {e.colno}")


def _iter_json(path: Path) -> Iterator[tuple[int, Any]]:
    # One document: a byte that is not UTF-8 becomes a lone surrogate in its string, and the
    # record holding it fails check_unicode alone, so skip_bad_records can still skip just it.
    text = path.read_bytes().decode("utf-8", errors="surrogateescape").removeprefix("\ufeff")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        yield from _iter_jsonl(path)  # many ".json" files are really JSON lines
        return
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise RecordError(str(path), 1, "<json>", "a .json file must hold an object or a list of objects")
    for i, row in enumerate(data, start=1):
        yield i, row


def _iter_txt(path: Path) -> Iterator[tuple[int, Any]]:
    for lineno, line in _decoded_lines(path):
        if isinstance(line, RecordError):
            yield lineno, line
            continue
        line = line.rstrip("\r\n")
        if line.strip():
            yield lineno, {"text": line}


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    # Batches keep memory bounded on large files; row numbers stay 1-based over the whole file.
    i = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for row in batch.to_pylist():
            i += 1
            yield i, row


def _iter_dataset(source: str, split: str) -> Iterator[tuple[int, Any]]:
    import datasets

    path = Path(source)
    if path.is_dir():
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise RecordError(source, 0, "<split>", f"no split '{split}' (has {list(ds)})")
            ds = ds[split]
    else:
        name, _, named_split = source.partition(":")
        ds = datasets.load_dataset(name, split=named_split or split)
    for i, row in enumerate(ds, start=1):
        yield i, row


def _rows(source: str | Path, split: str) -> Iterator[tuple[int, Any]]:
    path = Path(source)
    suffix = path.suffix.lower()
    if path.is_file():
        if suffix == ".jsonl":
            return _iter_jsonl(path)
        if suffix == ".json":
            return _iter_json(path)
        if suffix == ".parquet":
            return _iter_parquet(path)
        if suffix == ".txt":
            return _iter_txt(path)
        raise RecordError(str(path), 0, "<file>", "unknown file type: use .jsonl, .json, .parquet or .txt")
    if path.is_dir():
        return _iter_dataset(str(path), split)
    if suffix in (".jsonl", ".json", ".parquet", ".txt") or str(source).startswith((".", "/")):
        raise FileNotFoundError(f"data file {source} does not exist")
    return _iter_dataset(str(source), split)


def iter_raw(source: str | Path, split: str = "train") -> Iterator[tuple[int, Any]]:
    """(line or row number, decoded record) before validation; an undecodable JSON line, or a
    record with text that is not valid Unicode (a byte that is not UTF-8 in a .json document, a
    "\\ud800" escape), comes as a RecordError in place of the record. For tools that report their
    own errors by line (the labeling app's importer, eval generate and score)."""
    for lineno, raw in _rows(source, split):
        if not isinstance(raw, RecordError):
            try:
                check_unicode(raw)
            except FieldError as e:
                raw = RecordError(str(source), lineno, e.field, e.message)
        yield lineno, raw


def iter_records(
    source: str | Path, kind: str, skip_bad_records: bool = False, split: str = "train", stats: dict | None = None
) -> Iterator[dict]:
    """Yield canonical records of `kind` from `source`, validating each.

    `stats`, when given, receives `read` and `skipped` counts."""
    for _, record in iter_numbered_records(source, kind, skip_bad_records, split, stats):
        yield record


def iter_numbered_records(
    source: str | Path, kind: str, skip_bad_records: bool = False, split: str = "train", stats: dict | None = None
) -> Iterator[tuple[int, dict]]:
    """(line or row number, canonical record) of `kind` from `source`, as iter_records, for checks that
    report a record's line after validation (rlhf/inputs.py)."""
    if kind not in RECORD_KINDS:
        raise ValueError(f"unknown record kind {kind!r}; one of {RECORD_KINDS}")
    normalize = NORMALIZERS[kind]
    read = skipped = 0
    for lineno, raw in _rows(source, split):
        try:
            if isinstance(raw, RecordError):
                raise raw
            if kind == "pretrain" and isinstance(raw, str):
                raw = {"text": raw}
            if not isinstance(raw, dict):
                raise RecordError(str(source), lineno, "<record>", "each record must be a JSON object")
            check_unicode(raw)
            record = normalize(raw)
        except FieldError as e:
            if not skip_bad_records:
                raise RecordError(str(source), lineno, e.field, e.message) from None
            skipped += 1
            continue
        except RecordError:
            if not skip_bad_records:
                raise
            skipped += 1
            continue
        read += 1
        yield lineno, record
    if skipped:
        log.warning("%s: skipped %d bad %s record(s) (skip_bad_records=true)", source, skipped, kind)
    if stats is not None:
        stats["read"] = stats.get("read", 0) + read
        stats["skipped"] = stats.get("skipped", 0) + skipped


def read_records(
    source: str | Path, kind: str, skip_bad_records: bool = False, split: str = "train", stats: dict | None = None
) -> list[dict]:
    """All records of `kind` from `source` (see iter_records)."""
    records = list(iter_records(source, kind, skip_bad_records=skip_bad_records, split=split, stats=stats))
    if not records:
        raise RecordError(str(source), 0, "<file>", f"holds no valid {kind} records")
    return records


def write_records(path: str | Path, records: list[dict]) -> int:
    """Write records as JSONL (atomically) or Parquet, by the file's suffix."""
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        pq.write_table(pa.Table.from_pylist(list(records)), tmp)
        tmp.replace(path)
        return len(records)
    return atomic_write_jsonl(path, records)
