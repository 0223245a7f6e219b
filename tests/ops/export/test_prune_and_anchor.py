"""LogLines survive retention: removed only once an export that verifies holds them, and the chain left on
the box still verifies, anchored by the export manifest; a cut no manifest vouches for is reported."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.ops.export.conftest import Box, MakeBox, clock
from vvctl.core.errors import IntegrityError
from vvctl.core.export_manifest import load_anchors
from vvctl.core.keystore import export_public_keys, load_public_keys, load_verification_keys
from vvctl.core.logline import LogLineWriter
from vvctl.core.verify import Reason, verify_paths
from vvctl.ops.export import export_logs, prune_loglines, removable_loglines


def names(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def test_nothing_is_removable_before_an_export(box: Box) -> None:
    box.append(4)
    assert removable_loglines(box.settings) == []


def test_exported_loglines_are_removable_oldest_first_but_never_the_newest(box: Box) -> None:
    written = box.append(4)
    export_logs(box.settings, clock=clock)
    removable = removable_loglines(box.settings)
    videos = [p for p in removable if p.parent.name == "videos"]
    expected = [p for r in written[:3] for p in (r.path, r.md_path)]  # seq 4 is the newest: kept
    assert videos == expected
    # jobs: the export's own run record came after the export, so it is not in it.
    assert all(p.parent.name in ("videos", "jobs") for p in removable)


def test_an_export_whose_archive_does_not_verify_covers_nothing(box: Box) -> None:
    box.append(4)
    report = export_logs(box.settings, clock=clock).report
    assert report.archive is not None
    data = bytearray(report.archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    report.archive.write_bytes(bytes(data))
    assert removable_loglines(box.settings) == []
    report.archive.unlink()
    assert removable_loglines(box.settings) == []


def test_a_logline_changed_after_export_is_not_removed(box: Box) -> None:
    written = box.append(4)
    export_logs(box.settings, clock=clock)
    # seq 2 now differs from its exported copy: seq 1 may go, nothing from seq 2 on.
    written[1].path.write_bytes(written[1].path.read_bytes().replace(b'"ok"', b'"OK"', 1))
    videos = [p for p in removable_loglines(box.settings) if p.parent.name == "videos"]
    assert videos == [written[0].path, written[0].md_path]


def test_removal_stops_at_a_gap(box: Box) -> None:
    written = box.append(5)
    export_logs(box.settings, clock=clock)
    written[2].path.unlink()
    videos = [p for p in removable_loglines(box.settings) if p.parent.name == "videos"]
    assert videos == [p for r in written[:2] for p in (r.path, r.md_path)]


def test_export_prune_then_verify_logline_passes_with_the_anchor(box: Box, tmp_path: Path) -> None:
    written = box.append(6)
    result = export_logs(box.settings, clock=clock, prune=True)
    assert result.report.pruned_loglines >= 5
    assert names(box.loglines()) == [written[-1].path.name]
    keys = load_verification_keys(box.settings.key_store)
    exports = box.layout.exports

    anchored = verify_paths([box.layout.loglines], keys, anchors=load_anchors([exports], keys))
    assert anchored.ok, [(r.path, r.reason, r.detail) for r in anchored.results if not r.valid]
    summary = anchored.logs["videos"]
    assert summary.first_seq == 6 and summary.anchor is not None and summary.anchor.seq == 5
    assert summary.anchor.manifest == "vv_logs_20261201.manifest.json"

    # The writer goes on appending to the shortened chain, and it still verifies.
    box.append(2)
    assert verify_paths([box.layout.loglines], keys, anchors=load_anchors([exports], keys)).ok

    # An auditor with only the public key (Ed25519) and a copy of the manifest:
    export_public_keys(box.settings.key_store, tmp_path / "public.json")
    public = load_public_keys(tmp_path / "public.json")
    assert verify_paths([box.layout.loglines], public, anchors=load_anchors([exports], public)).ok


def test_without_the_anchor_the_cut_is_unanchored(box: Box) -> None:
    box.append(6)
    export_logs(box.settings, clock=clock, prune=True)
    keys = load_verification_keys(box.settings.key_store)
    shutil.rmtree(box.layout.exports)
    for anchors in (None, load_anchors([], keys)):
        report = verify_paths([box.layout.loglines / "videos"], keys, anchors=anchors)
        assert not report.ok
        bad = [(r.seq, r.reason) for r in report.results if not r.valid]
        assert bad == [(6, Reason.UNANCHORED_CUT)]
        assert "seq 1-5" in report.results[0].detail


def test_a_record_deleted_after_the_anchor_is_a_gap(box: Box) -> None:
    box.append(6)
    export_logs(box.settings, clock=clock, prune=True)
    later = box.append(3)  # seq 7-9, in no export
    later[0].path.unlink()  # seq 7: right after the live chain's start (seq 6)
    keys = load_verification_keys(box.settings.key_store)
    report = verify_paths([box.layout.loglines / "videos"], keys, anchors=load_anchors([box.layout.exports], keys))
    assert [(r.seq, r.reason) for r in report.results if not r.valid] == [(8, Reason.GAP)]


def test_deleting_the_first_live_record_beyond_what_the_export_holds_is_a_gap(box: Box) -> None:
    written = box.append(6)
    export_logs(box.settings, clock=clock, prune=True)  # the export holds seq 1-6, seq 6 stays
    box.append(2)  # seq 7, 8
    # Remove seq 6 (held by the export: fine) and seq 7 (held by none): the chain starts at 8.
    written[-1].path.unlink()
    next(p for p in box.loglines() if p.name.startswith("00000007.")).unlink()
    keys = load_verification_keys(box.settings.key_store)
    report = verify_paths([box.layout.loglines / "videos"], keys, anchors=load_anchors([box.layout.exports], keys))
    flagged = [(r.seq, r.reason, r.detail) for r in report.results if not r.valid]
    assert [(s, r) for s, r, _ in flagged] == [(8, Reason.GAP)]
    assert "seq 7" in flagged[0][2] and "vouches up to seq 6" in flagged[0][2]


def test_a_first_record_that_does_not_link_to_the_anchor_is_a_broken_chain(box: Box) -> None:
    box.append(4)
    export_logs(box.settings, clock=clock, prune=True)
    keys = load_verification_keys(box.settings.key_store)
    manifest_path = box.layout.exports / "vv_logs_20261201.manifest.json"
    document = json.loads(manifest_path.read_text())
    # A manifest from this box (re-signed with its key) that vouches for another seq 3.
    from vvctl.core.keystore import load_keystore
    from vvctl.core.logline import sign_document

    for member in document["members"]:
        if member["path"].startswith("loglines/videos/00000003."):
            member["sha256"] = "ab" * 32
    del document["signature_details"]
    sign_document(load_keystore(box.settings.key_store), document)
    manifest_path.write_text(json.dumps(document))
    report = verify_paths([box.layout.loglines / "videos"], keys, anchors=load_anchors([manifest_path], keys))
    assert [(r.seq, r.reason) for r in report.results if not r.valid] == [(4, Reason.BROKEN_CHAIN)]


def test_a_forged_manifest_is_refused_as_an_explicit_anchor_and_skipped_when_found(box: Box) -> None:
    box.append(4)
    export_logs(box.settings, clock=clock, prune=True)
    manifest_path = box.layout.exports / "vv_logs_20261201.manifest.json"
    document = json.loads(manifest_path.read_text())
    document["created"] = "2026-12-01T11:00:00Z"  # changed after signing
    manifest_path.write_text(json.dumps(document))
    keys = load_verification_keys(box.settings.key_store)
    with pytest.raises(IntegrityError, match="bad_signature"):
        load_anchors([manifest_path], keys)
    found = load_anchors([box.layout.exports], keys, strict=False)
    assert found.sources == [] and len(found.skipped) == 1
    report = verify_paths([box.layout.loglines / "videos"], keys, anchors=found)
    assert [(r.seq, r.reason) for r in report.results if not r.valid] == [(4, Reason.UNANCHORED_CUT)]


def test_the_writer_still_appends_after_pruning(box: Box) -> None:
    box.append(3)
    export_logs(box.settings, clock=clock, prune=True)
    head = LogLineWriter(box.settings).head("videos")
    assert head is not None and head.seq == 3
    assert box.append(1)[0].seq == 4


def test_prune_loglines_removes_exactly_the_removable_ones(box: Box) -> None:
    box.append(5)
    export_logs(box.settings, clock=clock)
    expected = removable_loglines(box.settings)
    result = prune_loglines(box.settings)
    assert list(result.removed) == expected and not any(p.exists() for p in expected)
    assert result.loglines == sum(1 for p in expected if p.name.endswith(".logline.json"))
    assert removable_loglines(box.settings) == []


def test_end_to_end_exported_plus_live_chain_verifies_from_seq_1(box: Box, tmp_path: Path) -> None:
    """What the auditor does: extract every export, lay the live LogLines over them, verify from seq 1."""
    import tarfile

    box.append(4)
    export_logs(box.settings, clock=clock, prune=True)
    box.append(3)
    export_logs(box.settings, clock=clock, prune=True)
    box.append(2)
    audit = tmp_path / "audit"
    audit.mkdir()
    for archive in sorted(box.layout.exports.glob("*.tar.gz")):
        with tarfile.open(archive, "r:gz") as tar:
            tar.extractall(audit, filter="data")
    shutil.copytree(box.layout.loglines, audit / "loglines", dirs_exist_ok=True)
    keys = load_verification_keys(box.settings.key_store)
    report = verify_paths([audit / "loglines"], keys)
    assert report.ok and report.logs["videos"].first_seq == 1 and report.logs["videos"].last_seq == 9


def test_cleanup_removes_exported_loglines_past_their_retention_and_the_rest_still_verifies(
    make_box: MakeBox,
) -> None:
    """cleanup removes LogLines only once a verified export holds them and retention_days.loglines passed."""
    import os

    from vvctl.ops.cleanup import cleanup

    box = make_box(extra="[retention_days]\nloglines = 30\n")
    written = box.append(4)
    old = clock().timestamp() - 40 * 86400
    for record in written[:2]:
        os.utime(record.path, (old, old))

    assert cleanup(box.settings).report.loglines_removed == 0  # nothing exported yet: nothing goes
    assert all(r.path.exists() for r in written)

    export_logs(box.settings, clock=clock)
    report = cleanup(box.settings).report
    assert report.loglines_removed == 2 and "2 exported LogLines removed" in report.summary
    assert [r.path.exists() for r in written] == [False, False, True, True]  # seq 3 is exported but young
    keys = load_verification_keys(box.settings.key_store)
    anchors = load_anchors([box.layout.exports], keys)
    assert verify_paths([box.layout.loglines / "videos"], keys, anchors=anchors).ok


def test_cleanup_never_removes_loglines_without_a_loglines_retention(box: Box) -> None:
    from vvctl.ops.cleanup import cleanup

    written = box.append(3)
    export_logs(box.settings, clock=clock)
    assert removable_loglines(box.settings)  # they could go...
    assert cleanup(box.settings).report.loglines_removed == 0  # ...but the policy does not say so
    assert all(r.path.exists() for r in written)
