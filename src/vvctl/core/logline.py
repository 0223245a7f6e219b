"""The LogLine writer: one signed, hash-chained audit record per processed video and per job run.

A log (``videos``, ``jobs``, ...) is a directory ``loglines/<log>/`` of files named
``<seq:08d>.<slug>.logline.json``. Each file holds exactly the RFC 8785 canonical bytes of its record,
signature included, so the SHA-256 of the file *is* the record's chain hash, and the next record's
``prev`` is that hash. The first record's ``prev`` is 64 zeros.

Appending (:meth:`LogLineWriter.append`) is serialised per log by an ``flock`` on
``state/logline-<log>.lock``, so any number of processes may append at once and the chain stays linear.
Under the lock the writer:

1. finds the head: the state store's ``chain_heads`` row and the head's file name (``chain_files``),
   checked against that one file, in O(1) however long the log is. A writer killed after its file was
   renamed into place but before the row was updated left a file one ahead of the row; it recorded that
   file's name (its *intent*, ``chain_files.next_name``) before the rename, so the next writer opens just
   that name: the file is the head, and its missing ``.md`` companion is rewritten. Only a log without
   a row (new, an older state store, a lost database) is listed, once;
2. builds the record, signs its canonical bytes without ``signature_details`` with the key store's
   active key, validates it against ``logline.schema.json``;
3. records the intent, writes the JSON atomically (temp file, fsync, rename, fsync of the directory),
   then the ``.md`` companion, then the new head row (which clears the intent).

A head file that is gone (LogLines deleted) or whose bytes no longer hash to the row's hash (a LogLine
altered), or an intended file that does not follow the head, is an :class:`IntegrityError`: the writer
refuses to extend a chain that was tampered with, and ``vvctl verify-logline`` names what is wrong.
Files the writer never looks at (a record planted beyond the head under another name) are
``verify-logline``'s to find: the writer checks the head, not the whole log.
"""

from __future__ import annotations

import os
import re
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vvctl.core.atomic import atomic_write_bytes, atomic_write_text
from vvctl.core.canonical import canonicalize
from vvctl.core.errors import IntegrityError, StorageError, UsageError
from vvctl.core.hashing import sha256_bytes
from vvctl.core.keystore import KeyStore, load_keystore
from vvctl.core.layout import StorageLayout
from vvctl.core.locks import exclusive_lock
from vvctl.core.schemas import validate
from vvctl.core.settings import Settings
from vvctl.core.state import connect, state_missing_problem, transaction
from vvctl.core.timeutil import Clock, rfc3339, utcnow

SCHEMA = "logline.schema.json"
CHECKPOINT_KIND = "vvctl-checkpoint"
ZERO_HASH = "0" * 64
SUFFIX = ".logline.json"
MD_SUFFIX = ".logline.md"
LOG_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")
FILE_NAME = re.compile(r"^(?P<seq>[0-9]{8,16})\.(?P<slug>[a-z0-9][a-z0-9_.-]{0,63})\.logline\.json$")
STATUSES = ("ok", "failed", "quarantined", "skipped", "warning")
_SLUG_BAD = re.compile(r"[^a-z0-9_-]+")


@dataclass(frozen=True)
class LogLineDraft:
    """What a job wants recorded; the writer adds ``log``, ``seq``, ``when``, ``prev`` and the signature."""

    who: str
    did: str
    this: str
    status: str
    source: Mapping[str, str]
    confirmed_by: str | None = None
    if_ok: str | None = None
    if_not: str | None = None
    key_event: Mapping[str, str] | None = None
    """A change of the signing keys (``key_event`` in the schema); only :mod:`vvctl.core.keyevents` sets it."""
    outputs: Sequence[Mapping[str, str]] = ()
    """Files the record vouches for: ``{"path": <relative to storage_root>, "sha256": ...}`` each."""


@dataclass(frozen=True)
class WrittenLogLine:
    log: str
    seq: int
    hash: str
    """SHA-256 of the file's bytes (the record's canonical bytes, signature included)."""
    path: Path
    md_path: Path
    record: dict[str, Any] = field(repr=False)


@dataclass(frozen=True)
class ChainHead:
    log: str
    seq: int
    hash: str


@dataclass(frozen=True)
class _HeadRow:
    """The head as the state store records it: the row, its file's name and a pending append's intent."""

    head: ChainHead
    name: str | None
    next_name: str | None


@dataclass(frozen=True)
class _Head:
    head: ChainHead
    name: str


def slugify(text: str) -> str:
    """A file-name-safe tag: lowercase ASCII letters, digits, ``-`` and ``_``, at most 48 characters."""
    slug = _SLUG_BAD.sub("-", text.lower()).strip("-_")[:48].strip("-_")
    return slug or "record"


def check_log_name(log: str) -> str:
    if not LOG_NAME.fullmatch(log):
        raise UsageError(f"invalid log name {log!r}: use lowercase letters, digits, '-' and '_' (max 32)")
    return log


def log_directory(layout: StorageLayout, log: str) -> Path:
    return layout.loglines / check_log_name(log)


def signed_bytes(record: Mapping[str, Any]) -> bytes:
    """The bytes a signature covers: the canonical form of the record without ``signature_details``."""
    return canonicalize({k: v for k, v in record.items() if k != "signature_details"})


def sign_document(store: KeyStore, document: dict[str, Any]) -> dict[str, Any]:
    """Add ``signature_details`` (algorithm, key id, signature over :func:`signed_bytes`) with the active key.

    The one signing step for every signed document: LogLines, checkpoints and export manifests.
    """
    signer = store.signer()
    document["signature_details"] = {
        "algorithm": signer.algorithm.value,
        "key_id": signer.key_id,
        "signature": signer.sign(signed_bytes(document)),
    }
    return document


def chain_hash(file_bytes: bytes) -> str:
    return sha256_bytes(file_bytes)


def existing_logs(layout: StorageLayout) -> list[str]:
    """The logs that have a directory under ``loglines/`` (sorted)."""
    try:
        entries = list(os.scandir(layout.loglines))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise StorageError(f"cannot list {layout.loglines}: {exc.strerror or exc}") from None
    return sorted(e.name for e in entries if LOG_NAME.fullmatch(e.name) and e.is_dir(follow_symlinks=False))


def scan_log_files(directory: Path) -> dict[int, list[Path]]:
    """LogLine files in ``directory`` by the seq in their name (several paths for a duplicated seq)."""
    found: dict[int, list[Path]] = {}
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return found
    except OSError as exc:
        raise StorageError(f"cannot list {directory}: {exc.strerror or exc}") from None
    for entry in entries:
        match = FILE_NAME.fullmatch(entry.name)
        if match:
            found.setdefault(int(match["seq"]), []).append(Path(entry.path))
    return found


def render_markdown(record: Mapping[str, Any], file_name: str, digest: str) -> str:
    """The short human-readable companion of a LogLine. Not signed: the JSON file is authoritative."""
    source = record["source"]
    signature = record["signature_details"]
    lines = [
        f"# LogLine {record['log']} #{record['seq']}: {record['status']}",
        "",
        f"- **who**: {record['who']}",
        f"- **did**: {record['did']}",
        f"- **this**: {record['this']}",
        f"- **when**: {record['when']}",
        f"- **source**: {source['type']} `{source['id']}`" + (f" ({source['path']})" if "path" in source else ""),
    ]
    for key in ("confirmed_by", "if_ok", "if_not"):
        if key in record:
            lines.append(f"- **{key}**: {record[key]}")
    event = record.get("key_event")
    if event is not None:
        new = f" (new active key `{event['new_key_id']}`)" if "new_key_id" in event else ""
        lines.append(f"- **key event**: {event['event']} `{event['key_id']}`{new}")
    for output in record.get("outputs", ()):
        lines.append(f"- **output**: `{output['path']}` sha256 `{output['sha256']}`")
    if "box" in record:
        lines.append(f"- **box**: `{record['box']}`")
    lines += [
        f"- **prev**: `{record['prev']}`",
        f"- **signed**: {signature['algorithm']} with key `{signature['key_id']}`",
        "",
        f"Authoritative record: `{file_name}` (SHA-256 `{digest}`); "
        "check it with `vvctl verify-logline`. This summary is not signed.",
        "",
    ]
    return "\n".join(lines)


def _md_path(json_path: Path) -> Path:
    return json_path.with_name(json_path.name[: -len(SUFFIX)] + MD_SUFFIX)


def _read_record(path: Path) -> tuple[bytes, dict[str, Any]]:
    import json

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise StorageError(f"cannot read LogLine {path}: {exc.strerror or exc}") from None
    try:
        record = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise IntegrityError(f"LogLine {path} is not valid JSON; run 'vvctl verify-logline {path.parent}'") from None
    if not isinstance(record, dict):
        raise IntegrityError(f"LogLine {path} is not a JSON object; run 'vvctl verify-logline {path.parent}'")
    return data, record


def _read_head_file(path: Path, log: str, directory: Path) -> tuple[bytes, dict[str, Any]]:
    if not FILE_NAME.fullmatch(path.name) or not path.is_file():
        raise IntegrityError(
            f"log {log!r}: the head LogLine {path.name} recorded in the state store is gone: LogLines were "
            f"removed; run 'vvctl verify-logline {directory}'"
        )
    return _read_record(path)


class LogLineWriter:
    """Appends signed LogLines under ``<storage_root>/loglines``; one writer may serve many logs."""

    def __init__(self, settings: Settings, *, clock: Clock = utcnow, key_store: Path | None = None) -> None:
        self.layout = StorageLayout(settings.storage_root)
        self.key_store = key_store if key_store is not None else settings.key_store
        self.clock = clock

    # -- head ----------------------------------------------------------------------------------------

    def _db_head(self, conn: sqlite3.Connection, log: str) -> _HeadRow | None:
        row = conn.execute(
            "SELECT h.seq, h.hash, f.head_name, f.next_name FROM chain_heads h"
            " LEFT JOIN chain_files f ON f.log = h.log WHERE h.log = ?",
            (log,),
        ).fetchone()
        if row is None:
            return None
        return _HeadRow(ChainHead(log, int(row["seq"]), str(row["hash"])), row["head_name"], row["next_name"])

    def _store_head(self, conn: sqlite3.Connection, head: ChainHead, name: str) -> None:
        """The new head row and its file name; clears the intent in the same transaction."""
        with transaction(conn):
            conn.execute(
                "INSERT INTO chain_heads (log, seq, hash, updated_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(log) DO UPDATE SET seq = excluded.seq, hash = excluded.hash,"
                " updated_at = excluded.updated_at",
                (head.log, head.seq, head.hash, rfc3339(self.clock())),
            )
            conn.execute(
                "INSERT INTO chain_files (log, head_name, next_name) VALUES (?, ?, NULL)"
                " ON CONFLICT(log) DO UPDATE SET head_name = excluded.head_name, next_name = NULL",
                (head.log, name),
            )

    def _store_intent(self, conn: sqlite3.Connection, log: str, name: str) -> None:
        """Before the rename: the name the next head will have, so a writer killed after the rename is found
        by opening one file instead of listing the directory."""
        with transaction(conn):
            conn.execute(
                "INSERT INTO chain_files (log, next_name) VALUES (?, ?)"
                " ON CONFLICT(log) DO UPDATE SET next_name = excluded.next_name",
                (log, name),
            )

    def _reconcile(self, conn: sqlite3.Connection, log: str, directory: Path) -> _Head | None:
        """The true head of ``log`` (see the module docstring); repairs a head row left behind by a kill."""
        stored = self._db_head(conn, log)
        if stored is None or stored.name is None:
            return self._reconcile_by_listing(conn, log, directory, None if stored is None else stored.head)
        head = stored.head
        path = directory / stored.name
        data, record = _read_head_file(path, log, directory)
        if record.get("seq") != head.seq or record.get("log") != log:
            raise IntegrityError(
                f"LogLine {path} does not hold seq {head.seq} of log {log!r}; run 'vvctl verify-logline {directory}'"
            )
        if chain_hash(data) != head.hash:
            raise IntegrityError(
                f"LogLine {path} was changed after it was written (its hash no longer matches "
                f"the chain head); run 'vvctl verify-logline {directory}'"
            )
        if stored.next_name is not None and stored.next_name != stored.name:
            intended = directory / stored.next_name
            if intended.exists():
                # A writer died between the rename and the head row: its file is the head.
                return self._adopt(conn, log, directory, head, intended)
            # A writer died before the rename: nothing was written; the next intent replaces this one.
        return _Head(head, stored.name)

    def _adopt(
        self, conn: sqlite3.Connection, log: str, directory: Path, stored: ChainHead | None, path: Path
    ) -> _Head:
        """Make ``path``, one record ahead of ``stored``, the head (its ``.md`` rewritten if missing)."""
        data, record = _read_record(path)
        digest = chain_hash(data)
        seq = stored.seq + 1 if stored else 1
        if record.get("seq") != seq or record.get("log") != log:
            raise IntegrityError(
                f"LogLine {path} does not hold seq {seq} of log {log!r}; run 'vvctl verify-logline {directory}'"
            )
        if record.get("prev") != (stored.hash if stored else ZERO_HASH):
            raise IntegrityError(
                f"LogLine {path} does not follow the recorded head; run 'vvctl verify-logline {directory}'"
            )
        md = _md_path(path)
        if not md.exists():
            atomic_write_text(md, render_markdown(record, path.name, digest))
        head = ChainHead(log, seq, digest)
        self._store_head(conn, head, path.name)
        return _Head(head, path.name)

    def _reconcile_by_listing(
        self, conn: sqlite3.Connection, log: str, directory: Path, stored: ChainHead | None
    ) -> _Head | None:
        """The head of a log whose head file name is not recorded (a new log, a state store written by an
        older vvctl, a lost database): list the directory once; the name is recorded for the next append."""
        files = scan_log_files(directory)
        top = max(files, default=0)
        stored_seq = stored.seq if stored else 0
        if top < stored_seq:
            raise IntegrityError(
                f"log {log!r}: the state store's head is seq {stored_seq} but the newest LogLine file is seq "
                f"{top}: LogLines were removed; run 'vvctl verify-logline {directory}'"
            )
        if top == 0:
            return None
        if len(files[top]) > 1:
            raise IntegrityError(f"log {log!r}: seq {top} has {len(files[top])} files; run 'vvctl verify-logline'")
        path = files[top][0]
        if stored is not None and top == stored_seq:
            data, record = _read_record(path)
            if record.get("seq") != top or record.get("log") != log:
                raise IntegrityError(
                    f"LogLine {path} does not hold seq {top} of log {log!r}; run 'vvctl verify-logline'"
                )
            if chain_hash(data) != stored.hash:
                raise IntegrityError(
                    f"LogLine {path} was changed after it was written (its hash no longer matches "
                    f"the chain head); run 'vvctl verify-logline {directory}'"
                )
            self._store_head(conn, stored, path.name)
            return _Head(stored, path.name)
        # The files are ahead of the row: a writer died between the rename and the row update.
        if top - stored_seq > 1:
            raise IntegrityError(
                f"log {log!r}: {top - stored_seq} LogLine files lie beyond the recorded head seq {stored_seq}; "
                f"run 'vvctl verify-logline {directory}'"
            )
        return self._adopt(conn, log, directory, stored, path)

    def head(self, log: str) -> ChainHead | None:
        """The current head of ``log`` (None for an empty log), checked against the files."""
        directory = log_directory(self.layout, log)
        with exclusive_lock(self._lock_path(log), what=f"LogLine writer for log {log!r}", wait=True):
            conn = self._connect()
            try:
                found = self._reconcile(conn, log, directory)
                return None if found is None else found.head
            finally:
                conn.close()

    def _connect(self) -> sqlite3.Connection:
        # A lost state database is said plainly (with its recovery), not taken for a tampered chain.
        problem = state_missing_problem(self.layout.state_db, self.layout.loglines)
        if problem is not None:
            raise StorageError(problem)
        return connect(self.layout.state_db)

    def _lock_path(self, log: str) -> Path:
        return self.layout.state / f"logline-{log}.lock"

    # -- append --------------------------------------------------------------------------------------

    def _build(self, store: KeyStore, log: str, seq: int, prev: str, draft: LogLineDraft) -> dict[str, Any]:
        if draft.status not in STATUSES:
            raise UsageError(f"invalid LogLine status {draft.status!r} (one of: {', '.join(STATUSES)})")
        record: dict[str, Any] = {
            "schema_version": 1,
            "log": log,
            "seq": seq,
            "who": draft.who,
            "did": draft.did,
            "this": draft.this,
            "when": rfc3339(self.clock()),
            "status": draft.status,
            "source": dict(draft.source),
        }
        optional = {"confirmed_by": draft.confirmed_by, "if_ok": draft.if_ok, "if_not": draft.if_not}
        record.update({k: v for k, v in optional.items() if v is not None})
        if draft.key_event is not None:
            record["key_event"] = dict(draft.key_event)
        if draft.outputs:
            record["outputs"] = [{"path": o["path"], "sha256": o["sha256"]} for o in draft.outputs]
        if store.box is not None:  # a key store older than box ids writes records without one until bound
            record["box"] = store.box
        record["prev"] = prev
        sign_document(store, record)
        validate(record, SCHEMA)
        return record

    def append(self, log: str, draft: LogLineDraft, *, slug: str) -> WrittenLogLine:
        """Sign ``draft`` as the next record of ``log`` and write it durably. Safe across processes."""
        directory = log_directory(self.layout, log)
        try:
            directory.mkdir(parents=True, exist_ok=True)
            self.layout.state.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StorageError(f"cannot create {directory}: {exc.strerror or exc}") from None
        with exclusive_lock(self._lock_path(log), what=f"LogLine writer for log {log!r}", wait=True):
            # Read under the log's lock: a key rotation records its event in this log under the same lock
            # after changing the store, so no record signed by the retired key can land after that event.
            store = load_keystore(self.key_store)
            conn = self._connect()
            try:
                found = self._reconcile(conn, log, directory)
                head = None if found is None else found.head
                seq = head.seq + 1 if head else 1
                record = self._build(store, log, seq, head.hash if head else ZERO_HASH, draft)
                data = canonicalize(record)
                digest = chain_hash(data)
                path = directory / f"{seq:08d}.{slugify(slug)}{SUFFIX}"
                if head is not None:  # the first record is found by listing the (then tiny) directory
                    self._store_intent(conn, log, path.name)
                atomic_write_bytes(path, data)
                md = _md_path(path)
                atomic_write_text(md, render_markdown(record, path.name, digest))
                self._store_head(conn, ChainHead(log, seq, digest), path.name)
            finally:
                conn.close()
        return WrittenLogLine(log, seq, digest, path, md, record)


# -- checkpoints ---------------------------------------------------------------------------------------


CHECKPOINT_VERSION = 2
MAX_CHECKPOINT_HEADS = 1000


def make_checkpoint(store: KeyStore, heads: Sequence[ChainHead], *, clock: Clock = utcnow) -> dict[str, Any]:
    """Signed chain heads (``$defs/checkpoint`` of the signature contract, version 2) for an auditor to keep."""
    from vvctl.core.signing import contract_problem

    if store.box is None:
        raise UsageError(f"key store {store.path} has no box id yet: run 'vvctl bootstrap' once to give it one")
    document: dict[str, Any] = {
        "schema_version": CHECKPOINT_VERSION,
        "kind": CHECKPOINT_KIND,
        "box": store.box,
        "heads": [{"log": h.log, "seq": h.seq, "hash": h.hash} for h in sorted(heads, key=lambda h: h.log)],
        "when": rfc3339(clock()),
    }
    sign_document(store, document)
    problem = contract_problem(document, "checkpoint")
    if problem is not None:  # pragma: no cover - a bug here, never user input
        raise IntegrityError(f"refusing to write an invalid checkpoint: {problem}")
    return document


def export_checkpoint(
    settings: Settings, logs: Sequence[str] | None, out: Path, *, clock: Clock = utcnow
) -> dict[str, Any]:
    """Write the signed heads of ``logs`` (default: every log with LogLines) to ``out`` (atomically)."""
    writer = LogLineWriter(settings, clock=clock)
    chosen = [check_log_name(log) for log in logs] if logs else existing_logs(writer.layout)
    heads: list[ChainHead] = []
    for log in dict.fromkeys(chosen):
        head = writer.head(log)
        if head is None:
            if logs:
                raise UsageError(f"log {log!r} has no LogLines yet; nothing to checkpoint")
            continue
        heads.append(head)
    if not heads:
        raise UsageError(f"no log under {writer.layout.loglines} has LogLines yet; nothing to checkpoint")
    if len(heads) > MAX_CHECKPOINT_HEADS:
        raise UsageError(f"{len(heads)} logs: a checkpoint holds at most {MAX_CHECKPOINT_HEADS}; choose with --log")
    document = make_checkpoint(load_keystore(writer.key_store), heads, clock=clock)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"cannot create {out.parent}: {exc.strerror or exc}") from None
    atomic_write_bytes(out, canonicalize(document))
    return document


__all__ = [
    "CHECKPOINT_KIND",
    "CHECKPOINT_VERSION",
    "MAX_CHECKPOINT_HEADS",
    "MD_SUFFIX",
    "SUFFIX",
    "ZERO_HASH",
    "ChainHead",
    "LogLineDraft",
    "LogLineWriter",
    "WrittenLogLine",
    "chain_hash",
    "check_log_name",
    "existing_logs",
    "export_checkpoint",
    "log_directory",
    "make_checkpoint",
    "render_markdown",
    "scan_log_files",
    "sign_document",
    "signed_bytes",
    "slugify",
]
