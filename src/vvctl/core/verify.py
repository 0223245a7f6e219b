"""The LogLine verifier: a verdict per file, then the chain of every log.

Per file (:func:`check_file`): size limit, UTF-8, strict JSON, ``logline.schema.json``, canonical bytes
(the file must hold exactly the RFC 8785 form of its record, so no byte can change without notice), a
known and unrevoked key of the record's algorithm, and the signature over :func:`signed_bytes`.

Per log (records grouped by their ``log`` field): seq counts up from 1 without gaps (or from the seq after
one that a signed export manifest vouches for, when older records were exported and removed), every file sits
under the name of its own seq, no seq appears twice, each ``prev`` is the SHA-256 of the previous file's
bytes, and the head matches the expected head (``--expect-head`` or a signed checkpoint) when one is
given. A record is judged on its link to the previous record only when that record is itself valid, so
one tampered file yields one invalid verdict rather than a cascade.

Speed: a file that matches the canonical grammar of a schema-valid LogLine (one compiled regular
expression, :data:`_CANONICAL_RECORD`) is known to be canonical and schema-valid without parsing it, and its
signed bytes are the file minus its ``signature_details`` member; when its signature verifies it is VALID.
Anything else takes the reference path (parse, jsonschema, re-encode and compare, verify freshly
canonicalized bytes), which also names the reason. The tests check both paths give the same verdicts.

Nothing in a file's contents raises: every problem becomes a :class:`FileVerdict`. Bad arguments (a path
that does not exist, a malformed expected head or checkpoint) raise :class:`UsageError` or
:class:`InputError`; a checkpoint whose signature does not verify raises :class:`IntegrityError`.
"""

from __future__ import annotations

import errno
import gc
import hashlib
import json
import os
import re
import stat
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from operator import attrgetter
from pathlib import Path
from typing import Any

from vvctl.core.canonical import NotCanonicalizable, canonicalize, canonicalize_plain, is_plain
from vvctl.core.errors import InputError, IntegrityError, UsageError
from vvctl.core.export_manifest import Anchor, ChainAnchors
from vvctl.core.logline import CHECKPOINT_KIND, LOG_NAME, SUFFIX, ZERO_HASH, signed_bytes
from vvctl.core.schemas import SchemaViolation, validate
from vvctl.core.signing import KeyStatus, VerificationKeys, contract_problem

DEFAULT_MAX_BYTES = 1 << 20
SCHEMA = "logline.schema.json"
ANY_LOG = ""
"""The key under which :func:`verify_paths` takes an expected head for "the one log present"."""


class Reason(StrEnum):
    """Why a LogLine is INVALID. Stable names: scripts read them from ``--json``."""

    UNREADABLE = "unreadable"
    """The file cannot be opened or read, or is not a regular file."""
    OVERSIZED = "oversized"
    """Larger than the size limit (1 MiB by default): no LogLine is that big."""
    NOT_UTF8 = "not_utf8"
    """The bytes are not UTF-8."""
    MALFORMED_JSON = "malformed_json"
    """Not a JSON document (or uses NaN/Infinity, which JSON does not have)."""
    SCHEMA_VIOLATION = "schema_violation"
    """Valid JSON that breaks ``logline.schema.json`` (missing, unknown or ill-typed field)."""
    NOT_CANONICAL = "not_canonical"
    """The bytes are not the RFC 8785 canonical form of the record (whitespace, key order, escapes, ...)."""
    UNKNOWN_KEY_ID = "unknown_key_id"
    """No key with the record's ``key_id`` was given to the verifier."""
    REVOKED_KEY = "revoked_key"
    """The signing key was revoked: nothing it signed is trusted."""
    ALGORITHM_MISMATCH = "algorithm_mismatch"
    """The record names another algorithm than its key's (a downgrade attempt)."""
    BAD_SIGNATURE = "bad_signature"
    """The signature does not verify: the record was altered or forged."""
    REORDERED = "reordered"
    """The file name's seq is not the record's seq, or ``prev`` points at a later record."""
    DUPLICATE_SEQ = "duplicate_seq"
    """A byte-identical copy of a record that is already present."""
    FORK = "fork"
    """Another, different record claims the same seq or the same predecessor."""
    GAP = "gap"
    """LogLines before this one are missing (the detail lists their seqs)."""
    BROKEN_CHAIN = "broken_chain"
    """``prev`` is not the SHA-256 of the previous LogLine."""
    HEAD_MISMATCH = "head_mismatch"
    """The expected head (seq and hash) is not this log's: its tail was cut off or replaced."""
    KEY_RETIRED = "key_retired"
    """Signed by a key after that key's retirement record in the same log, or by a key the key files call
    retired in a log that holds no retirement record for it (its history was rewritten)."""
    BOX_MISMATCH = "box_mismatch"
    """The record names another box than its key, its log, the checkpoint or ``--box``; or it has no box
    id although records before it in its log have one."""
    SYMLINK = "symlink"
    """The record file is a symbolic link: LogLines are regular files, and a link can point anywhere."""
    MISNAMED = "misnamed"
    """The file name breaks the naming rule ``<seq, 8 digits at least>.<slug>.logline.json``."""
    NO_LOGLINES = "no_loglines"
    """No LogLine file at all under the paths given (an empty or wrong folder, or every file deleted)."""
    UNANCHORED_CUT = "unanchored_cut"
    """The log starts after seq 1 and no export manifest vouches for the record before its first one."""
    OUTPUT_ALTERED = "output_altered"
    """A file the record vouches for (``outputs``: analytic, summary, snapshot) has another SHA-256 now."""
    OUTPUT_MISSING = "output_missing"
    """A file the record vouches for is gone from the storage root (deleted, renamed, or past retention)."""


class Verdict(StrEnum):
    VALID = "VALID"
    INVALID = "INVALID"


@dataclass(slots=True)
class FileVerdict:
    path: str
    log: str | None
    seq: int | None
    verdict: Verdict
    reason: Reason | None
    detail: str
    hash: str | None = None
    """SHA-256 of the file's bytes (the chain hash); None when the file could not be read."""
    prev: str | None = None
    """The record's ``prev`` (the hash it links to), when the record is schema-valid."""
    key_id: str | None = None
    """The signing key's id, when the record is schema-valid."""
    box: str | None = None
    """The box the record names; None for a record older than box ids (or not schema-valid)."""
    key_event: dict[str, str] | None = None
    """The record's key event, if it records a change of the signing keys."""
    outputs: list[tuple[str, str]] | None = None
    """The files the record vouches for, (path relative to storage_root, SHA-256), when it names any."""
    outputs_checked: bool = False
    """The outputs were compared with the files under the storage root."""

    @property
    def valid(self) -> bool:
        return self.verdict is Verdict.VALID


@dataclass(slots=True)
class LogSummary:
    log: str
    records: int
    valid: int
    invalid: int
    first_seq: int | None
    last_seq: int | None
    head_hash: str | None
    """Hash of the record at ``last_seq`` (what a checkpoint or ``--expect-head`` would hold)."""
    expected_head: tuple[int, str] | None = None
    problems: list[str] = field(default_factory=list)
    """Chain problems that no single file carries (an expected log with no LogLine at all)."""
    box: str | None = None
    """The box the log's records name (the most common one, if they disagree)."""
    legacy: int = 0
    """Records without a box id (written before box ids existed): checked as before, see docs/loglines.md."""
    anchor: Anchor | None = None
    """The export manifest's anchor the log starts from, when its older LogLines were exported and removed."""

    @property
    def intact(self) -> bool:
        return self.invalid == 0 and not self.problems


@dataclass(slots=True)
class Problem:
    """A finding that belongs to no single file (no LogLines found at all)."""

    reason: Reason
    detail: str


@dataclass(slots=True)
class VerifyReport:
    results: list[FileVerdict]
    logs: dict[str, LogSummary]
    valid: int
    invalid: int
    problems: list[Problem] = field(default_factory=list)
    box: str | None = None
    """The box the records were checked against (``--box``, a checkpoint's, or the one box of the keys)."""

    @property
    def ok(self) -> bool:
        return self.invalid == 0 and not self.problems and all(summary.intact for summary in self.logs.values())


# -- per file ------------------------------------------------------------------------------------------

_SIGNATURE_HEX = {"hmac-sha256": 64, "ed25519": 128}
_MAX_SEQ = 9007199254740991


# A JSON string as RFC 8785 writes it: literal characters except '"', '\' and controls; the two-character
# escapes for those that have one; \u00xx (lowercase) for the other controls. Never empty (minLength 1).
# Written as an unrolled loop: one character class run between escapes, so matching is linear and fast.
_JCS_STRING = r'(?!")[^"\\\x00-\x1f]*(?:\\(?:["\\bfnrt]|u00(?:0[0-7bef]|1[0-9a-f]))[^"\\\x00-\x1f]*)*'
_WHEN_RE = (
    r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])T(?:[01][0-9]|2[0-3]):[0-5][0-9]:(?:[0-5][0-9]|60)"
    r"(?:\.[0-9]{1,9})?Z"
)
_OUTPUT = rf'\{{"path":"{_JCS_STRING}","sha256":"[0-9a-f]{{64}}"\}}'
_MAX_OUTPUT_PATH = 1024
# The canonical bytes of a schema-valid record: keys in RFC 8785 order, optional ones where they sort.
_CANONICAL_RECORD = re.compile(
    "".join(
        [
            r"\{",
            r'(?:"box":"(?P<box>b-[0-9a-f]{16})",)?',
            rf'(?:"confirmed_by":"(?P<confirmed_by>{_JCS_STRING})",)?',
            rf'"did":"(?P<did>{_JCS_STRING})",',
            rf'(?:"if_not":"(?P<if_not>{_JCS_STRING})",)?',
            rf'(?:"if_ok":"(?P<if_ok>{_JCS_STRING})",)?',
            r'"log":"(?P<log>[a-z][a-z0-9_-]{0,31})",',
            rf'(?:"outputs":(?P<outputs>\[{_OUTPUT}(?:,{_OUTPUT}){{0,63}}\]),)?',
            r'"prev":"(?P<prev>[0-9a-f]{64})",',
            r'"schema_version":1,',
            r'"seq":(?P<seq>[1-9][0-9]{0,15}),',
            r'(?P<details>"signature_details":\{"algorithm":"(?P<algorithm>hmac-sha256|ed25519)",',
            r'"key_id":"(?P<key_id>[A-Za-z0-9][A-Za-z0-9._-]{0,63})","signature":"(?P<signature>[0-9a-f]+)"\}),',
            rf'"source":\{{"id":"(?P<source_id>{_JCS_STRING})",',
            rf'(?:"path":"(?P<source_path>{_JCS_STRING})",)?',
            r'(?:"sha256":"[0-9a-f]{64}",)?',
            r'"type":"[a-z][a-z0-9_-]{0,31}"\},',
            r'"status":"(?:ok|failed|quarantined|skipped|warning)",',
            rf'"this":"(?P<this>{_JCS_STRING})",',
            rf'"when":"{_WHEN_RE}",',
            rf'"who":"(?P<who>{_JCS_STRING})"',
            r"\}",
        ]
    )
)
# Upper bounds on the decoded length of each string. Escapes and UTF-8 only make the raw text longer than
# the decoded string, so a raw text within the bound is a decoded string within it; a longer one goes to the
# reference checks, which count exactly. A record shorter than the bound cannot hold a longer string.
_SHORT_LIMITS = (("who", 256), ("did", 256))
_LONG_LIMITS = (
    ("source_id", 1024),
    ("confirmed_by", 2048),
    ("if_ok", 2048),
    ("if_not", 2048),
    ("source_path", 4096),
    ("this", 8192),
)
_LONG_FROM = min(limit for _, limit in _LONG_LIMITS)
_FIELDS = ("log", "seq", "prev", "algorithm", "key_id", "signature", "box", "outputs")


def _within_long_limits(match: re.Match[str]) -> bool:
    for name, limit in _LONG_LIMITS:
        start = match.start(name)
        if start >= 0 and match.end(name) - start > limit:
            return False
    return True


@dataclass(frozen=True, slots=True)
class _KeyTable:
    """The verification keys, plus a plain dict of the usable ones for the fast path (built once per run)."""

    keys: VerificationKeys
    usable: Mapping[str, tuple[str, Callable[[bytes, bytes], bool], str | None]]

    @classmethod
    def of(cls, keys: VerificationKeys) -> _KeyTable:
        usable = {
            k.key_id: (k.algorithm.value, k.verify, k.box) for k in keys.values() if k.status is not KeyStatus.REVOKED
        }
        return cls(keys, usable)


def _fast_verdict(path: str, data: bytes, text: str, digest: str, table: _KeyTable) -> FileVerdict | None:
    """VALID, without parsing, for a file that is the canonical form of a schema-valid record with a good
    signature; None sends the file to the reference checks, which name the reason.

    The file matches the canonical grammar of a LogLine, so it parses to a schema-valid record and is that
    record's RFC 8785 form; cutting the ``signature_details`` member (never first, always right before
    ``source``) with its comma leaves exactly the signed bytes.
    """
    match = _CANONICAL_RECORD.fullmatch(text)
    if match is None:
        return None
    for name, limit in _SHORT_LIMITS:
        if match.end(name) - match.start(name) > limit:
            return None
    if len(text) > _LONG_FROM and not _within_long_limits(match):
        return None
    log, seq_text, prev, algorithm, key_id, signature, box, outputs_text = match.group(*_FIELDS)
    seq = int(seq_text)
    if seq > _MAX_SEQ or (seq == 1 and prev != ZERO_HASH) or len(signature) != _SIGNATURE_HEX[algorithm]:
        return None
    usable = table.usable.get(key_id)
    if usable is None or usable[0] != algorithm or (box is not None and usable[2] not in (None, box)):
        return None
    start, end = match.span("details")
    if len(data) == len(text):  # ASCII: character offsets are byte offsets
        signed = data[: start - 1] + data[end:]
    else:
        signed = (text[: start - 1] + text[end:]).encode("utf-8")
    outputs = None
    if outputs_text is not None:
        outputs = _output_list(json.loads(outputs_text))
        if any(len(name) > _MAX_OUTPUT_PATH for name, _ in outputs):
            return None
    if not usable[1](signed, bytes.fromhex(signature)):
        return None
    return FileVerdict(path, log, seq, Verdict.VALID, None, "", digest, prev, key_id, box, None, outputs)


def _output_list(items: Any) -> list[tuple[str, str]]:
    return [(str(item["path"]), str(item["sha256"])) for item in items]


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


_DECODER = json.JSONDecoder(parse_constant=_no_constants)


# O_NOFOLLOW: a record that is a symbolic link is reported (``symlink``), never followed.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOFOLLOW", 0)
_CHUNK = 1 << 16


def _read(path: str, max_bytes: int) -> bytes | tuple[Reason, str]:
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except OSError as exc:
        if exc.errno == errno.ELOOP and os.path.islink(path):  # noqa: PTH114 - plain strings, like the rest
            return Reason.SYMLINK, "a symbolic link, not a LogLine file"
        return Reason.UNREADABLE, f"cannot open: {exc.strerror or type(exc).__name__}"
    try:
        # No fstat on the way: one read gets a whole LogLine. Only an empty read needs to know whether it
        # was a regular file (a FIFO or socket reads empty under O_NONBLOCK).
        data = os.read(fd, min(_CHUNK, max_bytes + 1))
        if not data:
            return data if stat.S_ISREG(os.fstat(fd).st_mode) else (Reason.UNREADABLE, "not a regular file")
        if len(data) == _CHUNK:
            chunks = [data]
            size = len(data)
            while size <= max_bytes and (chunk := os.read(fd, min(_CHUNK, max_bytes + 1 - size))):
                chunks.append(chunk)
                size += len(chunk)
            data = b"".join(chunks)
        if len(data) > max_bytes:
            return Reason.OVERSIZED, f"more than the limit of {max_bytes} bytes"
        return data
    except OSError as exc:
        return Reason.UNREADABLE, f"cannot read: {exc.strerror or type(exc).__name__}"
    finally:
        os.close(fd)


def _name_seq(path: str) -> int | None:
    """The seq a file's name claims (``<seq>.<slug>.logline.json``: its leading digits), or None."""
    name = path[path.rfind(os.sep) + 1 :]
    digits = name[: name.find(".")]
    if 8 <= len(digits) <= 16 and digits.isdigit() and digits.isascii():
        return int(digits)
    return None


def _claimed_log(path: str) -> str | None:
    """The log a file's directory claims (for a file whose content cannot say)."""
    log = os.path.basename(os.path.dirname(path))  # noqa: PTH119, PTH120 - plain strings, like the rest
    return log if LOG_NAME.fullmatch(log) else None


def _judge(path: str, data: bytes, table: _KeyTable, *, fast: bool) -> FileVerdict:
    """A file's own verdict; ``log``, ``seq`` and ``prev`` are set when it holds a schema-valid record."""
    digest = hashlib.sha256(data).hexdigest()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return FileVerdict(
            path, None, None, Verdict.INVALID, Reason.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}", digest
        )
    if fast:
        checked = _fast_verdict(path, data, text, digest, table)
        if checked is not None:
            return checked
    try:
        record = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        # Position only: the parser's own message may quote the file, and the file may hold anything.
        where = f" at line {exc.lineno} column {exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        return FileVerdict(
            path, None, None, Verdict.INVALID, Reason.MALFORMED_JSON, f"not a JSON document{where}", digest
        )
    try:
        validate(record, SCHEMA)
    except SchemaViolation as exc:
        return FileVerdict(
            path, None, None, Verdict.INVALID, Reason.SCHEMA_VIOLATION, f"{exc.field}: {exc.reason}", digest
        )
    except RecursionError:
        return FileVerdict(path, None, None, Verdict.INVALID, Reason.SCHEMA_VIOLATION, "nested too deeply", digest)
    log: str = record["log"]
    seq: int = record["seq"]
    details: dict[str, str] = record["signature_details"]

    box: str | None = record.get("box")

    def verdict(reason: Reason | None, detail: str = "") -> FileVerdict:
        outcome = Verdict.INVALID if reason else Verdict.VALID
        return FileVerdict(
            path,
            log,
            seq,
            outcome,
            reason,
            detail,
            digest,
            record["prev"],
            details["key_id"],
            box,
            record.get("key_event"),
            _output_list(record["outputs"]) if "outputs" in record else None,
        )

    try:
        canonical = canonicalize_plain(record) if is_plain(record) else canonicalize(record)
    except NotCanonicalizable:
        return verdict(Reason.NOT_CANONICAL, "a string is not valid Unicode (lone surrogate)")
    if canonical != data:
        return verdict(Reason.NOT_CANONICAL, "the bytes are not the RFC 8785 canonical form of the record")
    key = table.keys.get(details["key_id"])
    if key is None:
        return verdict(Reason.UNKNOWN_KEY_ID, f"no key {details['key_id']} among the verification keys")
    if key.status is KeyStatus.REVOKED:
        return verdict(Reason.REVOKED_KEY, f"signed with revoked key {key.key_id}")
    if key.algorithm.value != details["algorithm"]:
        return verdict(
            Reason.ALGORITHM_MISMATCH,
            f"record says {details['algorithm']} but key {key.key_id} is {key.algorithm.value}",
        )
    if not key.verify(signed_bytes(record), bytes.fromhex(details["signature"])):
        return verdict(Reason.BAD_SIGNATURE, f"signature does not verify with key {key.key_id}")
    if box is not None and key.box is not None and key.box != box:
        return verdict(Reason.BOX_MISMATCH, f"the record names box {box} but key {key.key_id} is box {key.box}'s")
    return verdict(None)


def check_bytes(path: str, data: bytes, keys: VerificationKeys, *, fast: bool = True) -> FileVerdict:
    """The verdict of one file's bytes on their own (no chain checks).

    ``fast=False`` sends every file through the reference checks (parse, jsonschema, re-encode and compare,
    signature over freshly canonicalized bytes); the fast path must give the same verdicts (tested).
    """
    return _judge(path, data, _KeyTable.of(keys), fast=fast)


def check_file(path: Path, keys: VerificationKeys, *, max_bytes: int = DEFAULT_MAX_BYTES) -> FileVerdict:
    """The per-file verdict of one LogLine file (no chain checks)."""
    return _check(os.fspath(path), _KeyTable.of(keys), max_bytes)


def _check(path: str, table: _KeyTable, max_bytes: int) -> FileVerdict:
    """One file's own verdict. A file whose content cannot say which log and seq it is still holds the
    place its directory and name claim, so the record after it is not reported as a gap."""
    read = _read(path, max_bytes)
    if isinstance(read, tuple):
        return FileVerdict(path, _claimed_log(path), _name_seq(path), Verdict.INVALID, read[0], read[1])
    verdict = _judge(path, read, table, fast=True)
    if verdict.log is None:
        verdict.log, verdict.seq = _claimed_log(path), _name_seq(path)
    return verdict


# -- outputs -------------------------------------------------------------------------------------------


def storage_root_of(path: str) -> Path | None:
    """The storage root a LogLine file lies in (``<root>/loglines/<log>/<file>``), else None."""
    logs = Path(path).parent.parent
    return logs.parent if logs.name == "loglines" else None


def _file_sha256(path: Path) -> str | None:
    digest = hashlib.sha256()
    try:
        with path.open("rb") as fh:
            while chunk := fh.read(1 << 20):
                digest.update(chunk)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ENOENT, errno.ENOTDIR):
            return None
        return f"unreadable: {exc.strerror or exc}"
    return digest.hexdigest()


def _check_all_outputs(results: list[FileVerdict], outputs_root: Path | None) -> None:
    """Check each record's outputs, except files a later record of the same log vouches for again (a
    ``--reprocess`` rewrote them: the newer signed record speaks for them now)."""
    rooted: list[tuple[FileVerdict, Path]] = []
    latest: dict[tuple[Path, str | None, str], int] = {}
    for item in results:
        if item.outputs is None or item.verdict is not Verdict.VALID or item.seq is None:
            continue
        root = outputs_root if outputs_root is not None else storage_root_of(item.path)
        if root is None:
            continue  # a LogLine outside a storage root: its record alone is checked
        rooted.append((item, root))
        for name, _ in item.outputs:
            key = (root, item.log, name)
            latest[key] = max(latest.get(key, 0), item.seq)
    for item, root in rooted:
        assert item.seq is not None
        superseded = {name for name, _ in item.outputs or () if latest[(root, item.log, name)] > item.seq}
        check_outputs(item, root, superseded=superseded)


def check_outputs(item: FileVerdict, root: Path, *, superseded: set[str] | frozenset[str] = frozenset()) -> None:
    """Compare the files a valid record vouches for with what is under ``root`` now; name each that differs.

    The reason is ``output_altered`` when any file changed, else ``output_missing``; the detail names every
    file with its own finding. A path that would leave ``root`` counts as missing (never read)."""
    if item.outputs is None or item.verdict is not Verdict.VALID:
        return
    findings: list[tuple[Reason, str]] = []
    base = os.path.realpath(root)
    for name, expected in item.outputs:
        if name in superseded:
            continue
        target = Path(root, name)
        if Path(name).is_absolute() or not os.path.realpath(target).startswith(base + os.sep):
            findings.append((Reason.OUTPUT_MISSING, f"{name}: outside the storage root"))
            continue
        if target.is_symlink():
            findings.append((Reason.OUTPUT_ALTERED, f"{name}: replaced by a symbolic link"))
            continue
        actual = _file_sha256(target)
        if actual is None:
            findings.append((Reason.OUTPUT_MISSING, f"{name}: missing"))
        elif actual != expected:
            findings.append((Reason.OUTPUT_ALTERED, f"{name}: sha256 {actual[:16]}... is not the recorded {expected}"))
    item.outputs_checked = True
    if findings:
        reasons = {reason for reason, _ in findings}
        item.verdict = Verdict.INVALID
        item.reason = Reason.OUTPUT_ALTERED if Reason.OUTPUT_ALTERED in reasons else Reason.OUTPUT_MISSING
        item.detail = "; ".join(f"{reason.value}: {text}" for reason, text in findings)


# -- inputs --------------------------------------------------------------------------------------------


def _walk(directory: str) -> Iterator[str]:
    stack = [directory]
    while stack:
        current = stack.pop()
        try:
            # Directory order, not sorted: reading files in the order the file system lists them is a
            # quarter faster on ext4 (inode locality); the report is sorted afterwards.
            with os.scandir(current) as entries:
                found = list(entries)
        except OSError:
            continue
        subdirectories = []
        for entry in found:
            try:
                is_dir = entry.is_dir(follow_symlinks=False)
            except OSError:
                is_dir = False
            if is_dir:
                subdirectories.append(entry.path)
            # Hidden names too, and a directory named like a record: both are reported, never passed over.
            if entry.name.endswith(SUFFIX):
                yield entry.path
        stack.extend(sorted(subdirectories, reverse=True))


def check_paths(paths: Sequence[Path]) -> None:
    """:class:`UsageError` unless ``paths`` is non-empty and each exists (a dangling link counts: it gets a
    verdict). Cheap, so a command can call it before it looks for keys."""
    if not paths:
        raise UsageError("give at least one LogLine file or directory")
    for given in paths:
        if not os.path.lexists(given):
            raise UsageError(f"{given} does not exist")


def collect(paths: Sequence[Path]) -> list[tuple[str, bool]]:
    """Every LogLine file under ``paths``: (path, found by scanning a directory). Duplicates removed."""
    check_paths(paths)
    found: list[tuple[str, bool]] = []
    for given in paths:
        text = os.fspath(given)
        if Path(text).is_dir():
            found.extend((p, True) for p in _walk(text))
        else:
            found.append((text, False))
    if len(paths) == 1:
        return found
    # Overlapping arguments (a directory and a file in it) must not make a record its own duplicate.
    seen: set[str] = set()
    files: list[tuple[str, bool]] = []
    for path, from_directory in found:
        key = os.path.abspath(path)  # noqa: PTH100 - hot path; symlinks are not resolved on purpose
        if key not in seen:
            seen.add(key)
            files.append((path, from_directory))
    return files


_HEAD = re.compile(r"^(?:(?P<log>[a-z][a-z0-9_-]{0,31}):)?(?P<seq>[0-9]{1,16}):(?P<hash>[0-9a-fA-F]{64})$")


def parse_expect_head(text: str) -> tuple[str | None, int, str]:
    """``LOG:SEQ:HASH`` or ``SEQ:HASH`` → (log or None, seq, hash). Raises :class:`UsageError`."""
    match = _HEAD.fullmatch(text.strip())
    if match is None or int(match["seq"]) < 1:
        raise UsageError(f"--expect-head {text!r} is not LOG:SEQ:HASH or SEQ:HASH (seq from 1, hash = 64 hex digits)")
    return match["log"], int(match["seq"]), match["hash"].lower()


MAX_CHECKPOINT_BYTES = DEFAULT_MAX_BYTES


@dataclass(frozen=True, slots=True)
class Checkpoint:
    box: str | None
    """None for a checkpoint written before box ids (schema_version 1)."""
    heads: dict[str, tuple[int, str]]


def _read_checkpoint(path: Path) -> bytes:
    """At most :data:`MAX_CHECKPOINT_BYTES` of a regular file (a device or FIFO is refused at once)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise UsageError(f"checkpoint {path} does not exist") from None
    except OSError as exc:
        raise UsageError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise InputError(f"checkpoint {path} is not a regular file")
        chunks: list[bytes] = []
        size = 0
        while size <= MAX_CHECKPOINT_BYTES and (chunk := os.read(fd, MAX_CHECKPOINT_BYTES + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise UsageError(f"cannot read checkpoint {path}: {exc.strerror or exc}") from None
    finally:
        os.close(fd)
    if size > MAX_CHECKPOINT_BYTES:
        raise InputError(f"checkpoint {path} is larger than {MAX_CHECKPOINT_BYTES} bytes")
    return b"".join(chunks)


def load_checkpoint(path: Path, keys: VerificationKeys) -> Checkpoint:
    """The box and heads of a signed checkpoint file, after checking its form and its signature."""
    data = _read_checkpoint(path)
    try:
        document = _DECODER.decode(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise InputError(f"checkpoint {path} is not UTF-8 JSON") from None
    problem = contract_problem(document, "checkpoint")
    if problem is not None:
        raise InputError(f"checkpoint {path} is malformed: {problem}")
    if document["kind"] != CHECKPOINT_KIND:  # pragma: no cover - the contract pins it
        raise InputError(f"checkpoint {path} is not a vvctl checkpoint")
    details = document["signature_details"]
    key = keys.get(details["key_id"])
    if key is None:
        raise IntegrityError(f"checkpoint {path} is signed with key {details['key_id']}, which was not given")
    if key.status is KeyStatus.REVOKED:
        raise IntegrityError(f"checkpoint {path} is signed with revoked key {key.key_id}")
    if key.algorithm.value != details["algorithm"]:
        raise IntegrityError(f"checkpoint {path} names {details['algorithm']} but key {key.key_id} is {key.algorithm}")
    try:
        signed = canonicalize({k: v for k, v in document.items() if k != "signature_details"})
    except NotCanonicalizable:
        raise InputError(f"checkpoint {path} has no canonical form") from None
    if not key.verify(signed, bytes.fromhex(details["signature"])):
        raise IntegrityError(f"checkpoint {path}: the signature does not verify (altered or forged)")
    box = document.get("box")
    if box is not None and key.box is not None and box != key.box:
        raise IntegrityError(f"checkpoint {path} names box {box} but is signed by key {key.key_id} of box {key.box}")
    if document["schema_version"] == 1:
        return Checkpoint(None, {document["log"]: (document["seq"], document["hash"])})
    heads: dict[str, tuple[int, str]] = {}
    for head in document["heads"]:
        if heads.setdefault(head["log"], (head["seq"], head["hash"])) != (head["seq"], head["hash"]):
            raise InputError(f"checkpoint {path} is malformed: two heads for log {head['log']!r}")
    return Checkpoint(box, heads)


# -- chains --------------------------------------------------------------------------------------------


def _base(path: str) -> str:
    return path[path.rfind(os.sep) + 1 :]


def _seq(item: FileVerdict) -> int:
    assert item.seq is not None, "chain items always have a seq"
    return item.seq


def _fail(item: FileVerdict, reason: Reason, detail: str) -> None:
    """Mark a record invalid for a chain reason, unless it already is for a reason of its own."""
    if item.verdict is Verdict.VALID:
        item.verdict = Verdict.INVALID
        item.reason = reason
        item.detail = detail


def _missing(low: int, high: int) -> str:
    """Seqs ``low``..``high`` (inclusive) as text."""
    return str(low) if low == high else f"{low}-{high}"


def _settle_duplicates(items: list[FileVerdict], chosen: dict[int, FileVerdict], extra: list[FileVerdict]) -> None:
    """Several records claim one seq: keep the one its successor points at (else the first valid one) in
    ``chosen``; mark the others as copies or forks."""
    referenced = {item.prev for item in items if item.prev is not None}
    groups: dict[int, list[FileVerdict]] = {}
    for item in extra:
        groups.setdefault(_seq(item), [chosen[_seq(item)]]).append(item)
    for seq, group in groups.items():
        group.sort(key=lambda item: item.path)
        pick = next((i for i in group if i.hash in referenced and i.valid), None)
        pick = pick or next((i for i in group if i.valid), group[0])
        chosen[seq] = pick
        for other in group:
            if other is pick:
                continue
            if other.hash is not None and other.hash == pick.hash:
                _fail(other, Reason.DUPLICATE_SEQ, f"a copy of {_base(pick.path)} (seq {seq})")
            else:
                _fail(other, Reason.FORK, f"another record, {_base(pick.path)}, also claims seq {seq}")
                if pick.hash not in referenced:
                    # Nothing tells which of the two is the real one: both are suspect.
                    _fail(pick, Reason.FORK, f"another record, {_base(other.path)}, also claims seq {seq}")


@dataclass(slots=True)
class _LinkIndex:
    """Built on the first broken link only: which record has a hash, how many records share a prev."""

    by_hash: dict[str, FileVerdict]
    children: dict[str, int]

    @classmethod
    def of(cls, chosen: dict[int, FileVerdict]) -> _LinkIndex:
        children: dict[str, int] = {}
        for item in chosen.values():
            if item.prev is not None:
                children[item.prev] = children.get(item.prev, 0) + 1
        return cls({item.hash: item for item in chosen.values() if item.hash is not None}, children)


def _judge_link(item: FileVerdict, before: FileVerdict, index: _LinkIndex) -> None:
    """``item.prev`` is not the hash of ``before`` (a valid record): say how the chain is broken."""
    assert item.prev is not None
    target = index.by_hash.get(item.prev)
    if target is not None and _seq(target) >= _seq(item):
        _fail(item, Reason.REORDERED, f"prev points at seq {target.seq}, not at seq {before.seq}")
    elif index.children.get(item.prev, 0) > 1 or target is not None:
        _fail(item, Reason.FORK, f"prev points at another branch, not at seq {before.seq}")
    else:
        _fail(item, Reason.BROKEN_CHAIN, f"prev is not the SHA-256 of seq {before.seq}")


@dataclass(frozen=True, slots=True)
class _RunContext:
    """What the chain checks of every log need to know about the whole run."""

    revoked: Mapping[str, str]
    """Key id -> where a ``revoked`` key event names it (any log): nothing that key signed is trusted."""
    bound_retired: frozenset[str]
    """Keys a key file with box ids calls retired: each log they signed in must record their retirement."""
    box: str | None
    """The box every record must name (``--box``, a checkpoint's box, or the one box of the keys)."""
    several_boxes: tuple[str, ...]
    """With no expected box: the boxes the records name, when there is more than one."""


_SLUG_CHARS = "abcdefghijklmnopqrstuvwxyz0123456789_.-"
_SLUG_MAX = 64


def _check_names(items: list[FileVerdict]) -> None:
    """Each file is named ``<seq:08d>.<slug>.logline.json`` after its own record's seq (``FILE_NAME``)."""
    suffix = len(SUFFIX)
    for item in items:
        seq = _seq(item)
        path = item.path
        name = path[path.rfind(os.sep) + 1 :]
        prefix = f"{seq:08d}."
        if name.startswith(prefix) and name.endswith(SUFFIX):
            # The slug rule of FILE_NAME, with string methods: this runs once per record.
            slug = name[len(prefix) : -suffix]
            if 0 < len(slug) <= _SLUG_MAX and slug[0] not in "_.-" and not slug.strip(_SLUG_CHARS):
                continue
        name_seq = _name_seq(path)
        if name_seq is not None and name_seq != seq:
            _fail(item, Reason.REORDERED, f"file name says seq {name_seq} but the record is seq {seq}")
        else:
            _fail(item, Reason.MISNAMED, f"the file name must be {seq:08d}.<slug>.logline.json (slug: a-z 0-9 . _ -)")


def _check_lifetimes(
    seqs: list[int], chosen: dict[int, FileVerdict], items: list[FileVerdict], run: _RunContext, *, complete: bool
) -> None:
    """A record signed by a revoked key, or by a key after its retirement record in this log, is invalid."""
    retired_at: dict[str, int] = {}
    for seq in seqs:
        event = chosen[seq].key_event
        if event is not None and event["event"] == "retired":
            retired_at.setdefault(event["key_id"], seq)
    if not retired_at and not run.revoked and not run.bound_retired:
        return
    for item in items:
        key_id = item.key_id
        if item.verdict is not Verdict.VALID or key_id is None:
            continue
        where = run.revoked.get(key_id)
        if where is not None:
            _fail(item, Reason.REVOKED_KEY, f"key {key_id} was revoked ({where}): nothing it signed is trusted")
            continue
        point = retired_at.get(key_id)
        if point is not None:
            if _seq(item) > point:
                _fail(item, Reason.KEY_RETIRED, f"signed by key {key_id} after its retirement record (seq {point})")
        elif key_id in run.bound_retired:
            scope = "this log" if complete else "the files given"
            _fail(
                item,
                Reason.KEY_RETIRED,
                f"the key files say key {key_id} is retired, but {scope} hold no record of its retirement",
            )


def _check_boxes(
    seqs: list[int], chosen: dict[int, FileVerdict], items: list[FileVerdict], run: _RunContext
) -> tuple[str | None, int]:
    """Every record of a log names the same box (the expected one, when known); records without a box id
    (older than box ids) may only come before the first one that has one. Returns (box, legacy count)."""
    counts = Counter(item.box for item in items if item.box is not None)
    own = counts.most_common(1)[0][0] if counts else None
    legacy = sum(1 for item in items if item.box is None and item.key_id is not None)
    if not counts:
        return None, legacy
    wanted = run.box or own
    first_boxed = next((seq for seq in seqs if chosen[seq].box is not None), None)
    for item in items:
        if item.box is None:
            if item.key_id is not None and first_boxed is not None and _seq(item) > first_boxed:
                _fail(item, Reason.BOX_MISMATCH, f"no box id, but the record at seq {first_boxed} has one")
        elif run.several_boxes:
            _fail(
                item,
                Reason.BOX_MISMATCH,
                f"records of {len(run.several_boxes)} boxes in one run ({', '.join(run.several_boxes)}): "
                "verify one box at a time, or choose one with --box",
            )
        elif item.box != wanted:
            whose = "the expected box" if run.box else "the other records of this log"
            _fail(item, Reason.BOX_MISMATCH, f"names box {item.box}, but {whose} name {wanted}")
    return own, legacy


def _check_start(log: str, item: FileVerdict, anchors: ChainAnchors | None) -> Anchor | None:
    """The first record present has a seq above 1: an export manifest must vouch for the one before it."""
    seq = _seq(item)
    anchor = anchors.at(log, seq - 1) if anchors is not None else None
    if anchor is not None:
        if item.prev is not None and item.prev != anchor.hash:
            _fail(item, Reason.BROKEN_CHAIN, f"prev is not the hash {anchor.manifest} vouches for at seq {seq - 1}")
        return anchor
    lower = anchors.below(log, seq - 1) if anchors is not None else None
    if lower is not None:
        _fail(
            item,
            Reason.GAP,
            f"LogLines missing before it: seq {_missing(lower.seq + 1, seq - 1)} "
            f"(export manifest {lower.manifest} vouches up to seq {lower.seq})",
        )
    else:
        _fail(
            item,
            Reason.UNANCHORED_CUT,
            f"LogLines missing before it: seq {_missing(1, seq - 1)}, and no export manifest vouches for seq {seq - 1}",
        )
    return None


def _check_chain(
    log: str,
    items: list[FileVerdict],
    expected: tuple[int, str] | None,
    run: _RunContext,
    *,
    complete: bool,
    anchors: Callable[[], ChainAnchors | None] = lambda: None,
) -> LogSummary:
    """Check the chain of one log. Every item has ``log`` and ``seq`` set. ``complete``: a directory was
    scanned, so records missing before the first one present are a cut, which only an export manifest's
    anchor (``anchors``, loaded when first needed) may vouch for."""
    _check_names(items)
    chosen: dict[int, FileVerdict] = {}
    extra: list[FileVerdict] = []
    for item in items:
        if chosen.setdefault(_seq(item), item) is not item:
            extra.append(item)
    if extra:
        _settle_duplicates(items, chosen, extra)

    seqs = sorted(chosen)
    previous: int | None = None
    before: FileVerdict | None = None
    index: _LinkIndex | None = None
    start: Anchor | None = None
    for seq in seqs:
        item = chosen[seq]
        low = 1 if previous is None else previous + 1
        if previous is None and seq > 1 and complete:
            start = _check_start(log, item, anchors())
        elif seq > low and previous is not None:
            _fail(item, Reason.GAP, f"LogLines missing before it: seq {_missing(low, seq - 1)}")
        elif (
            before is not None
            and item.prev is not None
            and item.prev != before.hash
            and before.verdict is Verdict.VALID
        ):
            index = index or _LinkIndex.of(chosen)
            _judge_link(item, before, index)
        previous, before = seq, item

    problems: list[str] = []
    if expected is not None:
        expected_seq, expected_hash = expected
        last = seqs[-1] if seqs else None
        if last is None:
            problems.append(f"expected head seq {expected_seq} but the log has no LogLines here")
        elif last < expected_seq:
            _fail(
                chosen[last],
                Reason.HEAD_MISMATCH,
                f"the log ends at seq {last} but the expected head is seq {expected_seq}: "
                f"seq {_missing(last + 1, expected_seq)} cut off",
            )
            problems.append(f"truncated: seq {_missing(last + 1, expected_seq)} missing at the end")
        elif expected_seq in chosen and chosen[expected_seq].hash != expected_hash:
            _fail(chosen[expected_seq], Reason.HEAD_MISMATCH, "its hash is not the expected head's hash")
            problems.append(f"seq {expected_seq} is not the expected head")

    _check_lifetimes(seqs, chosen, items, run, complete=complete)
    box, legacy = _check_boxes(seqs, chosen, items, run)

    valid = sum(1 for item in items if item.valid)
    last_seq = seqs[-1] if seqs else None
    return LogSummary(
        log=log,
        records=len(items),
        valid=valid,
        invalid=len(items) - valid,
        first_seq=seqs[0] if seqs else None,
        last_seq=last_seq,
        head_hash=chosen[last_seq].hash if last_seq is not None else None,
        expected_head=expected,
        problems=problems,
        box=box,
        legacy=legacy,
        anchor=start,
    )


def _run_context(results: list[FileVerdict], keys: VerificationKeys, expect_box: str | None) -> _RunContext:
    box = expect_box
    if box is None and len(keys.boxes) == 1:
        (box,) = keys.boxes
    revoked: dict[str, str] = {}
    boxes: set[str] = set()
    for item in results:
        if item.box is not None:
            boxes.add(item.box)
        event = item.key_event
        # Honoured whatever the record's own verdict: a revocation only ever takes trust away, and an
        # auditor whose key export predates the new key cannot check the event's signature.
        if event is not None and event["event"] == "revoked":
            revoked.setdefault(event["key_id"], f"log {item.log} seq {item.seq}")
    bound_retired = frozenset(k.key_id for k in keys.values() if k.status is KeyStatus.RETIRED and k.box is not None)
    several = tuple(sorted(boxes)) if box is None and len(boxes) > 1 else ()
    return _RunContext(revoked, bound_retired, box, several)


def verify_paths(
    paths: Sequence[Path],
    keys: VerificationKeys,
    *,
    expect_heads: Mapping[str, tuple[int, str]] | None = None,
    expect_box: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    anchors: ChainAnchors | Callable[[], ChainAnchors] | None = None,
    outputs: bool = True,
    outputs_root: Path | None = None,
) -> VerifyReport:
    """Verify every LogLine under ``paths`` (files or directories, recursively) and the chain of each log.

    With ``outputs`` (the default), a valid record that vouches for files (``outputs``: analytic, summary,
    snapshots) is also checked against them, under ``outputs_root`` or else the storage root the LogLine
    lies in (``<root>/loglines/<log>/``); records outside a storage root are checked alone.

    ``anchors`` (or a function that loads them, called only when a log starts after seq 1): what export
    manifests vouch for, so a log whose older LogLines were exported and removed still verifies.
    """
    if max_bytes < 1:
        raise UsageError("the size limit must be at least one byte")
    files = collect(paths)
    results: list[FileVerdict] = []
    chains: defaultdict[str, list[FileVerdict]] = defaultdict(list)
    complete: set[str] = set()
    table = _KeyTable.of(keys)
    # One object per file and no cycles among them: the cyclic collector would only rescan the growing
    # result list again and again.
    collecting = gc.isenabled()
    gc.disable()
    try:
        for path, from_directory in files:
            verdict = _check(path, table, max_bytes)
            results.append(verdict)
            log = verdict.log
            if log is not None and verdict.seq is not None:
                chains[log].append(verdict)
                if from_directory:
                    complete.add(log)
    finally:
        if collecting:
            gc.enable()
    if outputs:
        _check_all_outputs(results, outputs_root)
    expected = dict(expect_heads or {})
    if ANY_LOG in expected:
        head = expected.pop(ANY_LOG)
        others = sorted({*chains, *expected})
        if len(others) != 1:
            raise UsageError(
                f"an expected head without a log name needs exactly one log, but {len(others)} are present"
                + (f" ({', '.join(others)})" if others else "")
                + ": use LOG:SEQ:HASH"
            )
        if expected.get(others[0], head) != head:
            raise UsageError(f"two different expected heads for log {others[0]!r}")
        expected[others[0]] = head
    run = _run_context(results, keys, expect_box)
    loaded: list[ChainAnchors | None] = [] if callable(anchors) else [anchors]

    def anchor_source() -> ChainAnchors | None:
        if not loaded:
            assert callable(anchors)
            loaded.append(anchors())
        return loaded[0]

    logs: dict[str, LogSummary] = {}
    for log in sorted({*chains, *expected}):
        logs[log] = _check_chain(
            log, chains.get(log, []), expected.get(log), run, complete=log in complete, anchors=anchor_source
        )
    problems: list[Problem] = []
    if not results:
        where = ", ".join(os.fspath(p) for p in paths)
        problems.append(Problem(Reason.NO_LOGLINES, f"no LogLine file (*{SUFFIX}) under {where}"))
    results.sort(key=attrgetter("path"))
    valid = sum(1 for r in results if r.verdict is Verdict.VALID)
    return VerifyReport(results, logs, valid, len(results) - valid, problems, run.box)


@dataclass(frozen=True, slots=True)
class Expectations:
    heads: dict[str, tuple[int, str]]
    box: str | None


_BOX = re.compile(r"^b-[0-9a-f]{16}$")


def resolve_expectations(
    heads: Sequence[str], checkpoints: Sequence[Path], keys: VerificationKeys, *, box: str | None = None
) -> Expectations:
    """Turn ``--expect-head`` texts, ``--checkpoint`` files and ``--box`` into expected heads and box.

    ``SEQ:HASH`` without a log is filed under the log name ``""``: :func:`verify_paths` applies it to the
    one log present, and refuses it when there are several.
    """
    if box is not None and not _BOX.fullmatch(box):
        raise UsageError(f"--box {box!r} is not a box id (b- and 16 hex digits; see 'vvctl keys list')")
    expected: dict[str, tuple[int, str]] = {}

    def put(log: str, seq: int, digest: str, origin: str) -> None:
        known = expected.get(log)
        if known is not None and known != (seq, digest):
            raise UsageError(f"{origin} contradicts another expected head for log {log!r}")
        expected[log] = (seq, digest)

    for text in heads:
        log, seq, digest = parse_expect_head(text)
        put(log or ANY_LOG, seq, digest, f"--expect-head {text!r}")
    for path in checkpoints:
        checkpoint = load_checkpoint(path, keys)
        if checkpoint.box is not None:
            if box is not None and box != checkpoint.box:
                raise UsageError(f"checkpoint {path} is of box {checkpoint.box}, not {box}")
            box = checkpoint.box
        for log, (seq, digest) in checkpoint.heads.items():
            put(log, seq, digest, f"checkpoint {path}")
    return Expectations(expected, box)


def resolve_expected_heads(
    heads: Sequence[str], checkpoints: Sequence[Path], keys: VerificationKeys
) -> dict[str, tuple[int, str]]:
    """The expected heads alone (see :func:`resolve_expectations`)."""
    return resolve_expectations(heads, checkpoints, keys).heads


__all__ = [
    "ANY_LOG",
    "DEFAULT_MAX_BYTES",
    "MAX_CHECKPOINT_BYTES",
    "Checkpoint",
    "Expectations",
    "FileVerdict",
    "LogSummary",
    "Problem",
    "Reason",
    "Verdict",
    "VerifyReport",
    "check_bytes",
    "check_file",
    "check_paths",
    "collect",
    "load_checkpoint",
    "parse_expect_head",
    "resolve_expectations",
    "resolve_expected_heads",
    "verify_paths",
]
