"""The LogLine verifier: per-file verdicts, chain checks, expected heads and checkpoints."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vvctl.core import verify
from vvctl.core.canonical import canonicalize
from vvctl.core.errors import InputError, IntegrityError, UsageError
from vvctl.core.keystore import KeyStore, ensure_keystore, load_keystore, revoke_key, rotate_key
from vvctl.core.logline import ZERO_HASH, LogLineDraft, LogLineWriter, make_checkpoint, signed_bytes
from vvctl.core.settings import Settings, load_settings
from vvctl.core.signing import Signer, VerificationKeys
from vvctl.core.verify import (
    Reason,
    Verdict,
    check_bytes,
    load_checkpoint,
    parse_expect_head,
    resolve_expected_heads,
    verify_paths,
)

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


# -- records signed directly (per-file properties) --------------------------------------------------


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, KeyStore]:
    base = tmp_path_factory.mktemp("keys")
    result = {}
    for algorithm in ("hmac-sha256", "ed25519"):
        path = base / f"{algorithm}.json"
        ensure_keystore(path, algorithm)
        result[algorithm] = load_keystore(path)
    return result


def sign(record: dict[str, Any], signer: Signer) -> bytes:
    record = {k: v for k, v in record.items() if k != "signature_details"}
    record["signature_details"] = {
        "algorithm": signer.algorithm.value,
        "key_id": signer.key_id,
        "signature": signer.sign(signed_bytes(record)),
    }
    return canonicalize(record)


text = st.text(st.characters(exclude_categories=("Cs",)), min_size=1, max_size=40)
hex64 = st.text("0123456789abcdef", min_size=64, max_size=64)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    seq = draw(st.integers(1, 2**53 - 1))
    source: dict[str, Any] = {"type": draw(st.from_regex(r"[a-z][a-z0-9_-]{0,8}", fullmatch=True)), "id": draw(text)}
    if draw(st.booleans()):
        source["path"] = draw(text)
    if draw(st.booleans()):
        source["sha256"] = draw(hex64)
    record: dict[str, Any] = {
        "schema_version": 1,
        "log": draw(st.from_regex(r"[a-z][a-z0-9_-]{0,10}", fullmatch=True)),
        "seq": seq,
        "who": draw(text),
        "did": draw(text),
        "this": draw(text),
        "when": draw(st.sampled_from(["2026-11-25T10:00:00Z", "2026-01-31T23:59:60.123456789Z"])),
        "status": draw(st.sampled_from(["ok", "failed", "quarantined", "skipped", "warning"])),
        "source": source,
        "prev": ZERO_HASH if seq == 1 else draw(hex64),
    }
    for optional in ("confirmed_by", "if_ok", "if_not"):
        if draw(st.booleans()):
            record[optional] = draw(text)
    if draw(st.booleans()):
        output = st.fixed_dictionaries({"path": text, "sha256": hex64})
        record["outputs"] = draw(st.lists(output, min_size=1, max_size=3))
    return record


def both(data: bytes, keys: VerificationKeys) -> tuple[Verdict, Reason | None]:
    """The verdict of the fast path, after checking the reference path agrees."""
    fast = check_bytes("x.logline.json", data, keys)
    slow = check_bytes("x.logline.json", data, keys, fast=False)
    assert (fast.verdict, fast.reason) == (slow.verdict, slow.reason)
    assert fast.outputs == slow.outputs
    return fast.verdict, fast.reason


@FAST
@given(record=records(), algorithm=st.sampled_from(["hmac-sha256", "ed25519"]))
def test_any_record_signs_and_verifies(stores: dict[str, KeyStore], record: dict[str, Any], algorithm: str) -> None:
    store = stores[algorithm]
    data = sign(record, store.signer())
    assert both(data, store.verification_keys()) == (Verdict.VALID, None)
    # ... and through the fast path itself, not a fallback to the reference checks.
    digest = hashlib.sha256(data).hexdigest()
    table = verify._KeyTable.of(store.verification_keys())
    assert verify._fast_verdict("x", data, data.decode(), digest, table) is not None


def _paths(value: Any, prefix: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    for key, item in value.items():
        yield (*prefix, key)
        if isinstance(item, dict):
            yield from _paths(item, (*prefix, key))


def _set(record: dict[str, Any], path: tuple[str, ...], value: Any) -> dict[str, Any]:
    copy = json.loads(json.dumps(record))
    target = copy
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return copy


def _changed(value: Any, data: st.DataObject) -> Any:
    if isinstance(value, bool) or value is None:
        return data.draw(st.sampled_from([0, "x", not value]))
    if isinstance(value, int):
        return data.draw(st.integers(-(2**53) + 1, 2**53 - 1).filter(lambda v: v != value))
    if isinstance(value, str):
        return data.draw(
            st.one_of(text, hex64, st.just(value.upper()), st.just(value + "0")).filter(lambda v: v != value)
        )
    return data.draw(st.sampled_from([{}, [], "x", 1]))


@FAST
@given(record=records(), data=st.data())
def test_any_single_field_change_is_invalid(
    stores: dict[str, KeyStore], record: dict[str, Any], data: st.DataObject
) -> None:
    store = stores[data.draw(st.sampled_from(["hmac-sha256", "ed25519"]))]
    signed = json.loads(sign(record, store.signer()))
    path = data.draw(st.sampled_from(list(_paths(signed))))
    current = signed
    for key in path:
        current = current[key]
    tampered = canonicalize(_set(signed, path, _changed(current, data)))
    verdict, reason = both(tampered, store.verification_keys())
    assert verdict is Verdict.INVALID
    if path[0] != "signature_details":
        assert reason in {Reason.BAD_SIGNATURE, Reason.SCHEMA_VIOLATION}


@FAST
@given(record=records(), data=st.data())
def test_any_added_or_removed_field_is_invalid(
    stores: dict[str, KeyStore], record: dict[str, Any], data: st.DataObject
) -> None:
    store = stores["hmac-sha256"]
    signed = json.loads(sign(record, store.signer()))
    path = data.draw(st.sampled_from(list(_paths(signed))))
    target = signed
    for key in path[:-1]:
        target = target[key]
    if data.draw(st.booleans()):
        del target[path[-1]]
    else:
        target[data.draw(st.text(min_size=1, max_size=8).filter(lambda k: k not in target))] = data.draw(text)
    verdict, _ = both(canonicalize(signed), store.verification_keys())
    assert verdict is Verdict.INVALID


@FAST
@given(record=records(), data=st.data())
def test_any_flipped_byte_is_invalid(stores: dict[str, KeyStore], record: dict[str, Any], data: st.DataObject) -> None:
    store = stores[data.draw(st.sampled_from(["hmac-sha256", "ed25519"]))]
    original = bytearray(sign(record, store.signer()))
    position = data.draw(st.integers(0, len(original) - 1))
    original[position] ^= data.draw(st.integers(1, 255))
    verdict, _ = both(bytes(original), store.verification_keys())
    assert verdict is Verdict.INVALID


@FAST
@given(record=records(), data=st.data())
def test_any_inserted_or_deleted_byte_is_invalid(
    stores: dict[str, KeyStore], record: dict[str, Any], data: st.DataObject
) -> None:
    store = stores["hmac-sha256"]
    original = bytearray(sign(record, store.signer()))
    position = data.draw(st.integers(0, len(original) - 1))
    if data.draw(st.booleans()):
        del original[position]
    else:
        original.insert(position, data.draw(st.sampled_from(b' \n\t,0a\\"}')))
    verdict, _ = both(bytes(original), store.verification_keys())
    assert verdict is Verdict.INVALID


def _sample(**changes: Any) -> dict[str, Any]:
    record = {
        "schema_version": 1,
        "log": "videos",
        "seq": 2,
        "who": "vvctl orchestrate",
        "did": "analysed video",
        "this": "2 persons",
        "when": "2026-11-25T10:00:00Z",
        "status": "ok",
        "source": {"type": "video", "id": "a.mp4"},
        "prev": "ab" * 32,
    }
    record.update(changes)
    return record


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"\xff\xfe{}", Reason.NOT_UTF8),
        (b"", Reason.MALFORMED_JSON),
        (b'{"seq": NaN}', Reason.MALFORMED_JSON),
        (b"[" * 100_000, Reason.MALFORMED_JSON),
        (os.urandom(64) + b"\x00", None),
        (b"[]", Reason.SCHEMA_VIOLATION),
        (b'{"log":"videos"}', Reason.SCHEMA_VIOLATION),
    ],
)
def test_garbage_gets_a_verdict(stores: dict[str, KeyStore], data: bytes, reason: Reason | None) -> None:
    verdict, got = both(data, stores["hmac-sha256"].verification_keys())
    assert verdict is Verdict.INVALID
    if reason is not None:
        assert got is reason


def test_whitespace_or_key_order_is_not_canonical(stores: dict[str, KeyStore]) -> None:
    store = stores["hmac-sha256"]
    record = json.loads(sign(_sample(), store.signer()))
    keys = store.verification_keys()
    assert both(json.dumps(record, sort_keys=True).encode(), keys) == (Verdict.INVALID, Reason.NOT_CANONICAL)
    reordered = dict(reversed(list(record.items())))
    compact = json.dumps(reordered, separators=(",", ":"), ensure_ascii=False).encode()
    assert both(compact, keys) == (Verdict.INVALID, Reason.NOT_CANONICAL)
    assert both(canonicalize(record) + b"\n", keys) == (Verdict.INVALID, Reason.NOT_CANONICAL)


def test_unknown_revoked_and_downgraded_keys(stores: dict[str, KeyStore], tmp_path: Path) -> None:
    hmac_store, ed_store = stores["hmac-sha256"], stores["ed25519"]
    record = _sample()
    assert both(sign(record, ed_store.signer()), hmac_store.verification_keys())[1] is Reason.UNKNOWN_KEY_ID

    # Downgrade: the key is Ed25519, the record claims HMAC (signed with the public key as HMAC secret).
    ed_key = ed_store.active.info
    forged = Signer(
        ed_key.key_id,
        hmac_store.signer().algorithm,
        lambda message: hmac.digest(bytes.fromhex(ed_key.public_key or ""), message, hashlib.sha256),
    )
    assert both(sign(record, forged), ed_store.verification_keys())[1] is Reason.ALGORITHM_MISMATCH

    path = tmp_path / "store.json"
    ensure_keystore(path, "hmac-sha256")
    data = sign(record, load_keystore(path).signer())
    assert both(data, load_keystore(path).verification_keys()) == (Verdict.VALID, None)
    revoke_key(path, load_keystore(path).active.info.key_id, algorithm="hmac-sha256", reason="leaked")
    assert both(data, load_keystore(path).verification_keys())[1] is Reason.REVOKED_KEY


def test_retired_key_still_verifies(tmp_path: Path) -> None:
    path = tmp_path / "store.json"
    ensure_keystore(path, "ed25519")
    data = sign(_sample(), load_keystore(path).signer())
    rotate_key(path, "hmac-sha256")
    assert both(data, load_keystore(path).verification_keys()) == (Verdict.VALID, None)


def test_oversized_unreadable_and_missing(stores: dict[str, KeyStore], tmp_path: Path) -> None:
    keys = stores["hmac-sha256"].verification_keys()
    big = tmp_path / "big.logline.json"
    big.write_bytes(b" " * 2000)
    fifo = tmp_path / "pipe.logline.json"
    os.mkfifo(fifo)
    report = verify_paths([big, fifo], keys, max_bytes=1000)
    reasons = {Path(r.path).name: r.reason for r in report.results}
    assert reasons == {"big.logline.json": Reason.OVERSIZED, "pipe.logline.json": Reason.UNREADABLE}
    assert not report.ok
    with pytest.raises(UsageError, match="does not exist"):
        verify_paths([tmp_path / "nope"], keys)
    with pytest.raises(UsageError):
        verify_paths([], keys)


# -- real chains (written by the real writer) -------------------------------------------------------

CHAIN = 6


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, Path]:
    root = tmp_path_factory.mktemp("chain")
    loaded = load_settings(root / "config.toml", env={}, flags={"storage_root": str(root / "storage")})
    ensure_keystore(loaded.settings.key_store, "hmac-sha256")
    writer = LogLineWriter(loaded.settings)
    for number in range(CHAIN):
        draft = LogLineDraft(
            "vvctl test", "analysed video", f"video {number}", "ok", {"type": "video", "id": f"v{number}"}
        )
        writer.append("videos", draft, slug=f"video-{number}")
    return loaded.settings, root / "storage" / "loglines" / "videos"


@pytest.fixture
def copy_chain(chain: tuple[Settings, Path]) -> Iterator[Callable[[], tuple[Path, list[Path], VerificationKeys]]]:
    """A fresh copy of the chain per call (hypothesis runs many examples in one test)."""
    settings_, source = chain
    keys = load_keystore(settings_.key_store).verification_keys()
    made: list[str] = []

    def make() -> tuple[Path, list[Path], VerificationKeys]:
        work = Path(tempfile.mkdtemp())
        made.append(str(work))
        target = work / "videos"
        shutil.copytree(source, target)
        return target, sorted(target.glob("*.logline.json")), keys

    yield make
    for path in made:
        shutil.rmtree(path, ignore_errors=True)


def by_seq(report: Any) -> dict[int | None, tuple[Verdict, Reason | None]]:
    return {r.seq: (r.verdict, r.reason) for r in report.results}


def test_intact_chain_is_valid(copy_chain: Any) -> None:
    directory, files, keys = copy_chain()
    report = verify_paths([directory.parent], keys)
    assert report.ok and report.valid == CHAIN and report.invalid == 0
    summary = report.logs["videos"]
    assert (summary.first_seq, summary.last_seq) == (1, CHAIN)
    assert summary.head_hash == hashlib.sha256(files[-1].read_bytes()).hexdigest()


@FAST
@given(index=st.integers(0, CHAIN - 2), count=st.integers(1, 2))
def test_deleting_records_is_a_gap_naming_them(copy_chain: Any, index: int, count: int) -> None:
    directory, files, keys = copy_chain()
    count = min(count, CHAIN - 1 - index)
    for path in files[index : index + count]:
        path.unlink()
    report = verify_paths([directory], keys)
    after = index + count + 1
    missing = str(index + 1) if count == 1 else f"{index + 1}-{index + count}"
    flagged = [r for r in report.results if not r.valid]
    # Records missing at the start are a cut that no export manifest vouches for (none was given).
    reason = Reason.UNANCHORED_CUT if index == 0 else Reason.GAP
    assert [(r.seq, r.reason) for r in flagged] == [(after, reason)]
    assert f"seq {missing}" in flagged[0].detail


@FAST
@given(index=st.integers(0, CHAIN - 1))
def test_duplicating_a_record_is_named(copy_chain: Any, index: int) -> None:
    directory, files, keys = copy_chain()
    shutil.copy(files[index], directory / f"{index + 1:08d}.zz-copy.logline.json")
    report = verify_paths([directory], keys)
    assert [(r.seq, r.reason) for r in report.results if not r.valid] == [(index + 1, Reason.DUPLICATE_SEQ)]


@FAST
@given(pair=st.lists(st.integers(0, CHAIN - 1), min_size=2, max_size=2, unique=True))
def test_swapping_records_is_reordered(copy_chain: Any, pair: list[int]) -> None:
    directory, files, keys = copy_chain()
    first, second = (files[i] for i in pair)
    a, b = first.read_bytes(), second.read_bytes()
    first.write_bytes(b)
    second.write_bytes(a)
    report = verify_paths([directory], keys)
    flagged = {Path(r.path).name: r.reason for r in report.results if not r.valid}
    assert flagged == {first.name: Reason.REORDERED, second.name: Reason.REORDERED}


@FAST
@given(index=st.integers(0, CHAIN - 1))
def test_renumbering_to_insert_a_slot_is_reordered(copy_chain: Any, index: int) -> None:
    directory, files, keys = copy_chain()
    for path in reversed(files[index:]):
        seq = int(path.name[:8])
        path.rename(path.with_name(f"{seq + 1:08d}{path.name[8:]}"))
    report = verify_paths([directory], keys)
    assert not report.ok
    assert {r.reason for r in report.results if not r.valid} <= {Reason.REORDERED, Reason.GAP}
    assert any(r.reason is Reason.REORDERED for r in report.results)


@FAST
@given(index=st.integers(0, CHAIN - 1))
def test_inserting_a_signed_record_is_a_fork(chain: tuple[Settings, Path], copy_chain: Any, index: int) -> None:
    directory, files, keys = copy_chain()
    prev = ZERO_HASH if index == 0 else hashlib.sha256(files[index - 1].read_bytes()).hexdigest()
    record = _sample(seq=index + 1, prev=prev, this="inserted later")
    (directory / f"{index + 1:08d}.inserted.logline.json").write_bytes(
        sign(record, load_keystore(chain[0].key_store).signer())
    )
    report = verify_paths([directory], keys)
    flagged = {Path(r.path).name: r.reason for r in report.results if not r.valid}
    assert flagged.get(f"{index + 1:08d}.inserted.logline.json") is Reason.FORK
    assert set(flagged.values()) == {Reason.FORK}


@FAST
@given(cut=st.integers(1, CHAIN - 1))
def test_cut_tail_is_head_mismatch_when_the_head_is_known(copy_chain: Any, cut: int) -> None:
    directory, files, keys = copy_chain()
    head = (CHAIN, hashlib.sha256(files[-1].read_bytes()).hexdigest())
    for path in files[-cut:]:
        path.unlink()
    assert verify_paths([directory], keys).ok  # without the head a cut tail cannot be seen
    report = verify_paths([directory], keys, expect_heads={"videos": head})
    assert not report.ok
    assert [(r.seq, r.reason) for r in report.results if not r.valid] == [(CHAIN - cut, Reason.HEAD_MISMATCH)]
    assert report.logs["videos"].problems


def test_replaced_head_hash_and_missing_log(copy_chain: Any) -> None:
    directory, _files, keys = copy_chain()
    report = verify_paths([directory], keys, expect_heads={"videos": (CHAIN, "0" * 64)})
    assert by_seq(report)[CHAIN] == (Verdict.INVALID, Reason.HEAD_MISMATCH)
    report = verify_paths([directory], keys, expect_heads={"jobs": (3, "0" * 64)})
    assert report.invalid == 0 and not report.ok
    assert report.logs["jobs"].problems


def test_tampered_record_is_reported_once(copy_chain: Any) -> None:
    directory, files, keys = copy_chain()
    files[2].write_bytes(files[2].read_bytes().replace(b"video 2", b"video 9"))
    report = verify_paths([directory], keys)
    assert [(r.seq, r.reason) for r in report.results if not r.valid] == [(3, Reason.BAD_SIGNATURE)]


def test_garbage_in_the_chain_keeps_its_place(copy_chain: Any) -> None:
    directory, files, keys = copy_chain()
    files[1].write_bytes(os.urandom(300))
    report = verify_paths([directory], keys)
    flagged = [(r.seq, r.reason) for r in report.results if not r.valid]
    assert len(flagged) == 1 and flagged[0][0] == 2
    assert flagged[0][1] in {Reason.NOT_UTF8, Reason.MALFORMED_JSON}


def test_single_file_needs_no_predecessors(copy_chain: Any) -> None:
    _directory, files, keys = copy_chain()
    assert verify_paths([files[3]], keys).ok
    assert by_seq(verify_paths([files[3], files[1]], keys))[4] == (Verdict.INVALID, Reason.GAP)


def test_expect_head_parsing_and_any_log(copy_chain: Any) -> None:
    directory, files, keys = copy_chain()
    digest = hashlib.sha256(files[-1].read_bytes()).hexdigest()
    assert parse_expect_head(f"videos:{CHAIN}:{digest.upper()}") == ("videos", CHAIN, digest)
    assert parse_expect_head(f"{CHAIN}:{digest}") == (None, CHAIN, digest)
    for bad in ("", "6", f"0:{digest}", f"x:{digest}", f"Videos:1:{digest}", f"1:{digest[:-1]}"):
        with pytest.raises(UsageError):
            parse_expect_head(bad)
    heads = resolve_expected_heads([f"{CHAIN}:{digest}"], [], keys)
    assert verify_paths([directory], keys, expect_heads=heads).ok
    with pytest.raises(UsageError, match="contradicts"):
        resolve_expected_heads([f"videos:{CHAIN}:{digest}", f"videos:1:{digest}"], [], keys)


def test_checkpoint_round_trip_and_tampering(chain: tuple[Settings, Path], copy_chain: Any, tmp_path: Path) -> None:
    settings_, _ = chain
    directory, files, keys = copy_chain()
    writer = LogLineWriter(settings_)
    head = writer.head("videos")
    assert head is not None
    store = load_keystore(settings_.key_store)
    document = make_checkpoint(store, [head])
    path = tmp_path / "checkpoint.json"
    path.write_bytes(canonicalize(document))
    assert load_checkpoint(path, keys) == verify.Checkpoint(store.box, {"videos": (CHAIN, head.hash)})
    files[-1].unlink()
    report = verify_paths([directory], keys, expect_heads=resolve_expected_heads([], [path], keys))
    assert by_seq(report)[CHAIN - 1] == (Verdict.INVALID, Reason.HEAD_MISMATCH)

    path.write_bytes(canonicalize({**document, "heads": [{"log": "videos", "seq": CHAIN + 5, "hash": head.hash}]}))
    with pytest.raises(IntegrityError, match="does not verify"):
        load_checkpoint(path, keys)
    path.write_bytes(b"not json")
    with pytest.raises(InputError):
        load_checkpoint(path, keys)
    with pytest.raises(IntegrityError, match="not given"):
        path.write_bytes(canonicalize(document))
        load_checkpoint(path, VerificationKeys())
    with pytest.raises(UsageError):
        load_checkpoint(tmp_path / "missing.json", keys)


@pytest.mark.parametrize(
    ("changes", "valid"),
    [
        ({"who": "w" * 256}, True),
        ({"who": "w" * 257}, False),
        ({"did": "\n" * 256}, True),  # 512 raw characters, 256 decoded: the reference path counts exactly
        ({"did": "\u0001" * 257}, False),
        ({"this": "é" * 8192}, True),
        ({"this": "t" * 8193}, False),
        ({"source": {"type": "video", "id": "i" * 1024, "path": "p" * 4096}}, True),
        ({"source": {"type": "video", "id": "i" * 1025}}, False),
        ({"confirmed_by": "c" * 2048, "if_ok": "o" * 2048, "if_not": "n" * 2048}, True),
        ({"if_not": "n" * 2049}, False),
        ({"seq": 2**53 - 1}, True),
        ({"seq": 1}, False),  # seq 1 must have 64 zeros as prev
        ({"seq": 1, "prev": ZERO_HASH}, True),
        ({"log": "a" * 32}, True),
        ({"log": "a" * 33}, False),
        # Python's re lets "$" match before a final newline; the schemas' patterns must not.
        ({"log": "videos\n"}, False),
        ({"source": {"type": "video\n", "id": "x"}}, False),
        ({"prev": "ab" * 32 + "\n"}, False),
        ({"when": "2026-02-30T24:00:00Z"}, False),
        ({"source": {"type": "video", "id": "x", "sha256": "A" * 64}}, False),
    ],
)
def test_schema_limits_agree_between_fast_and_reference_paths(
    stores: dict[str, KeyStore], changes: dict[str, Any], valid: bool
) -> None:
    store = stores["ed25519"]
    verdict, reason = both(sign(_sample(**changes), store.signer()), store.verification_keys())
    assert (verdict is Verdict.VALID) is valid
    if not valid:
        assert reason is Reason.SCHEMA_VIOLATION


def test_signature_with_a_trailing_newline_is_refused(stores: dict[str, KeyStore]) -> None:
    store = stores["hmac-sha256"]
    record = json.loads(sign(_sample(), store.signer()))
    record["signature_details"]["signature"] += "\n"  # bytes.fromhex would ignore it
    assert both(canonicalize(record), store.verification_keys()) == (Verdict.INVALID, Reason.SCHEMA_VIOLATION)


@pytest.mark.parametrize(
    "slug",
    ["a", "-a", "", "A", "a.b-c_d", "a" * 64, "a" * 65, "a b", "é", "0", "_x", "x\n", "x.logline.json"],
)
def test_the_name_check_agrees_with_the_documented_rule(slug: str) -> None:
    from vvctl.core.logline import FILE_NAME

    name = f"00000001.{slug}.logline.json"
    item = verify.FileVerdict(f"/d/videos/{name}", "videos", 1, Verdict.VALID, None, "")
    verify._check_names([item])
    assert item.valid is bool(FILE_NAME.fullmatch(name))
    assert item.valid or item.reason is Reason.MISNAMED


def test_outputs_beyond_the_schema_limits_are_invalid_on_both_paths(stores: dict[str, KeyStore]) -> None:
    store = stores["ed25519"]
    keys = store.verification_keys()
    good = _sample(outputs=[{"path": "summaries/a.summary.json", "sha256": "0" * 64}])
    assert both(sign(good, store.signer()), keys) == (Verdict.VALID, None)
    long_path = _sample(outputs=[{"path": "p" * 1025, "sha256": "0" * 64}])
    assert both(sign(long_path, store.signer()), keys) == (Verdict.INVALID, Reason.SCHEMA_VIOLATION)
    many = _sample(outputs=[{"path": f"s/{n}.jpg", "sha256": "0" * 64} for n in range(65)])
    assert both(sign(many, store.signer()), keys) == (Verdict.INVALID, Reason.SCHEMA_VIOLATION)
