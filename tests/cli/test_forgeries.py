"""Forgeries an auditor must catch, on real boxes (bootstrap, real writer, real key commands), each checked
end to end through ``vvctl verify-logline``: a non-zero exit and the named reason code.

The attacker here holds a key that was retired or revoked (a leaked copy of it) and can write files; with
Ed25519 the box itself no longer has the private key after rotation, so the copy is taken before.
"""

from __future__ import annotations

import hashlib
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Invoke
from vvctl.core.canonical import canonicalize
from vvctl.core.keystore import load_keystore
from vvctl.core.logline import LogLineDraft, LogLineWriter, signed_bytes
from vvctl.core.settings import Settings, load_settings
from vvctl.core.signing import Signer, make_signer

ALGORITHMS = ["hmac-sha256", "ed25519"]


@dataclass
class Box:
    invoke: Invoke
    root: Path
    settings: Callable[[], Settings]

    @property
    def loglines(self) -> Path:
        return self.root / "loglines"

    def log(self, name: str) -> list[Path]:
        return sorted((self.loglines / name).glob("*.logline.json"))

    def append(self, count: int, log: str = "videos") -> None:
        writer = LogLineWriter(self.settings())
        for number in range(count):
            draft = LogLineDraft(
                "vvctl orchestrate", "analysed video", f"video {number}", "ok", {"type": "video", "id": "v"}
            )
            writer.append(log, draft, slug=f"video-{number}")

    def leak_active(self) -> Signer:
        """A copy of the active key, as a thief would have it."""
        active = load_keystore(self.settings().key_store).active
        assert active.secret is not None
        return make_signer(active.info.key_id, active.info.algorithm, active.secret)

    def box_id(self) -> str:
        box = load_keystore(self.settings().key_store).box
        assert box is not None
        return box

    def keys_args(self, tmp_path: Path) -> list[str]:
        """What an auditor verifies with: the exported public keys (Ed25519) or a copy of the key store."""
        settings = self.settings()
        if settings.signing_algorithm == "ed25519":
            out = tmp_path / f"public-{self.box_id()}.json"
            assert self.invoke("keys", "export-public", "--out", str(out)).exit_code == 0
            return ["--public-key", str(out)]
        return ["--key-store", str(settings.key_store)]

    def verify(self, *args: str, expect: int = 1) -> dict[str, Any]:
        return self.invoke.json("verify-logline", *args, expect=expect)


def make_box(tmp_path: Path, name: str, algorithm: str) -> Box:
    invoke = Invoke(tmp_path / f"{name}.toml")
    root = tmp_path / name
    invoke.config.write_text(f'storage_root = "{root}"\nsigning_algorithm = "{algorithm}"\n')
    assert invoke("bootstrap").exit_code == 0

    def settings() -> Settings:
        return load_settings(invoke.config, env={}).settings

    return Box(invoke, root, settings)


@pytest.fixture(params=ALGORITHMS)
def box(request: pytest.FixtureRequest, tmp_path: Path) -> Box:
    made = make_box(tmp_path, "A", request.param)
    made.append(3)
    return made


def forge(directory: Path, signer: Signer, *, seq: int, prev: str, box: str | None, when: str, this: str) -> Path:
    record: dict[str, Any] = {
        "schema_version": 1,
        "log": directory.name,
        "seq": seq,
        "who": "vvctl orchestrate",
        "did": "analysed video",
        "this": this,
        "when": when,
        "status": "ok",
        "source": {"type": "video", "id": "forged"},
        "prev": prev,
    }
    if box is not None:
        record["box"] = box
    record["signature_details"] = {
        "algorithm": signer.algorithm.value,
        "key_id": signer.key_id,
        "signature": signer.sign(signed_bytes(record)),
    }
    path = directory / f"{seq:08d}.forged.logline.json"
    path.write_bytes(canonicalize(record))
    return path


def file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def reasons(report: dict[str, Any]) -> dict[str, str | None]:
    return {Path(r["path"]).name: r["reason"] for r in report["results"]}


def test_an_untouched_box_verifies(box: Box, tmp_path: Path) -> None:
    report = box.verify(*box.keys_args(tmp_path), str(box.loglines), expect=0)
    assert report["invalid"] == 0 and report["box"] == box.box_id()


def test_retired_key_cannot_append(box: Box, tmp_path: Path) -> None:
    thief = box.leak_active()
    assert box.invoke("keys", "rotate").exit_code == 0  # the retirement event lands in every log
    videos = box.log("videos")
    forged = forge(
        box.loglines / "videos",
        thief,
        seq=len(videos) + 1,
        prev=file_hash(videos[-1]),
        box=box.box_id(),
        when="2020-01-01T00:00:00Z",
        this="appended with the retired key",
    )
    report = box.verify(*box.keys_args(tmp_path), str(box.loglines))
    assert [name for name, reason in reasons(report).items() if reason] == [forged.name]
    assert reasons(report)[forged.name] == "key_retired"


def test_retired_key_cannot_rewrite_the_tail(box: Box, tmp_path: Path) -> None:
    thief = box.leak_active()
    assert box.invoke("keys", "rotate").exit_code == 0
    box.append(2)  # signed by the new key, after the retirement event
    directory = box.loglines / "videos"
    files = box.log("videos")
    for path in files[-2:]:
        path.unlink()
    prev = file_hash(files[-3])  # the retirement event stays: the chain up to it is intact
    rewritten = []
    for seq in (len(files) - 1, len(files)):
        path = forge(directory, thief, seq=seq, prev=prev, box=box.box_id(), when="2020-01-01T00:00:00Z", this="x")
        prev = file_hash(path)
        rewritten.append(path.name)
    report = box.verify(*box.keys_args(tmp_path), str(box.loglines))
    flagged = {name: reason for name, reason in reasons(report).items() if reason}
    assert flagged == dict.fromkeys(rewritten, "key_retired")


@pytest.mark.parametrize("backdated", [False, True])
def test_retired_key_cannot_rewrite_history(box: Box, tmp_path: Path, backdated: bool) -> None:
    thief = box.leak_active()
    assert box.invoke("keys", "rotate").exit_code == 0
    directory = box.loglines / "videos"
    count = len(box.log("videos"))
    shutil.rmtree(directory)
    directory.mkdir()
    # A whole new history without the retirement event, every record signed by the retired key; with
    # back-dated times it looks as old as the real one.
    prev = "0" * 64
    for seq in range(1, count + 1):
        when = f"2001-01-0{seq}T00:00:00Z" if backdated else "2030-01-01T00:00:00Z"
        prev = file_hash(forge(directory, thief, seq=seq, prev=prev, box=box.box_id(), when=when, this=f"v{seq}"))
    report = box.verify(*box.keys_args(tmp_path), str(box.loglines))
    flagged = {name for name, reason in reasons(report).items() if reason == "key_retired"}
    assert flagged == {p.name for p in directory.iterdir()}
    assert report["logs"]["jobs"]["invalid"] == 0


def test_revoked_key_after_revocation_with_an_older_key_export(tmp_path: Path) -> None:
    box = make_box(tmp_path, "A", "ed25519")
    box.append(2)
    old_export = box.keys_args(tmp_path)  # taken now: says the key is active
    thief = box.leak_active()
    assert box.invoke("keys", "revoke", thief.key_id, "--reason", "stolen").exit_code == 0
    videos = box.log("videos")
    forged = forge(
        box.loglines / "videos",
        thief,
        seq=len(videos) + 1,
        prev=file_hash(videos[-1]),
        box=box.box_id(),
        when="2020-01-01T00:00:00Z",
        this="after the revocation",
    )
    report = box.verify(*old_export, str(box.loglines))
    found = reasons(report)
    assert found[forged.name] == "revoked_key"
    # The revocation event itself is signed by a key the old export cannot know.
    assert {found[p.name] for p in box.log("videos") if "keys-revoke" in p.name} == {"unknown_key_id"}


def test_another_box_log_with_both_boxes_keys(tmp_path: Path) -> None:
    a, b = make_box(tmp_path, "A", "ed25519"), make_box(tmp_path, "B", "ed25519")
    a.append(2)
    b.append(2)
    both = [*a.keys_args(tmp_path), *b.keys_args(tmp_path)]
    checkpoint = tmp_path / "a-checkpoint.json"
    assert a.invoke("checkpoint", "--out", str(checkpoint)).exit_code == 0
    # B's videos log handed over as A's.
    shutil.rmtree(a.loglines / "videos")
    shutil.copytree(b.loglines / "videos", a.loglines / "videos")
    report = a.verify(*both, str(a.loglines))
    assert {r["reason"] for r in report["results"]} == {"box_mismatch"}
    # B's whole folder checked against A's checkpoint (or --box): every record names the wrong box.
    for pin in (["--checkpoint", str(checkpoint)], ["--box", a.box_id()]):
        report = b.verify(*both, *pin, str(b.loglines))
        found = [r["reason"] for r in report["results"]]
        assert report["valid"] == 0 and "box_mismatch" in found
        # The checkpoint's heads do not match B's logs either; the rest is named as the wrong box.
        assert set(found) <= {"box_mismatch", "head_mismatch"}
    # A record signed by one of B's keys but naming box A.
    thief = b.leak_active()
    jobs = a.log("jobs")
    forged = forge(
        a.loglines / "jobs",
        thief,
        seq=len(jobs) + 1,
        prev=file_hash(jobs[-1]),
        box=a.box_id(),
        when="2020-01-01T00:00:00Z",
        this="x",
    )
    report = a.verify(*both, str(a.loglines / "jobs"))
    assert reasons(report)[forged.name] == "box_mismatch"


def test_empty_folder_is_not_all_valid(box: Box, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    for directory in (empty, box.root / "input"):  # an empty folder, a wrong one
        report = box.verify(*box.keys_args(tmp_path), str(directory))
        assert [p["reason"] for p in report["problems"]] == ["no_loglines"]
    for path in (box.loglines / "videos").iterdir():  # every file deleted
        path.unlink()
    report = box.verify(*box.keys_args(tmp_path), str(box.loglines / "videos"))
    assert [p["reason"] for p in report["problems"]] == ["no_loglines"]
    human = box.invoke("verify-logline", *box.keys_args(tmp_path), str(empty))
    assert human.exit_code == 1 and "no_loglines" in human.stdout


def test_symlinked_record_directory_and_misnamed_files_are_reported(box: Box, tmp_path: Path) -> None:
    directory = box.loglines / "videos"
    files = box.log("videos")
    outside = tmp_path / "elsewhere.json"
    files[-1].rename(outside)
    files[-1].symlink_to(outside)
    (directory / "00000009.folder.logline.json").mkdir()
    (directory / ".00000001.hidden.logline.json").write_bytes(files[0].read_bytes())
    misnamed = directory / f"{files[1].name[:8]}.Upper.logline.json"
    files[1].rename(misnamed)
    report = box.verify(*box.keys_args(tmp_path), str(box.loglines))
    found = reasons(report)
    assert found[files[-1].name] == "symlink"
    assert found["00000009.folder.logline.json"] == "unreadable"
    assert found[".00000001.hidden.logline.json"] == "misnamed"
    assert found[misnamed.name] == "misnamed"


def test_duplicate_key_ids_are_an_error(tmp_path: Path) -> None:
    box = make_box(tmp_path, "A", "ed25519")
    public = box.keys_args(tmp_path)
    key_store = ["--key-store", str(box.settings().key_store)]
    for given in ([*public, *public], [*key_store, *public]):
        twice = box.invoke("verify-logline", *given, str(box.loglines))
        assert twice.exit_code == 2 and "given twice" in twice.stderr
    document = json.loads(Path(public[1]).read_text())
    document["keys"].append(document["keys"][0])
    Path(public[1]).write_text(json.dumps(document))
    inside = box.invoke("verify-logline", *public, str(box.loglines))
    assert inside.exit_code == 8 and "appears twice" in inside.stderr


def _limited() -> None:
    limit = 2 << 30  # 2 GiB of address space: far more than vvctl needs, far less than /dev/zero offers
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


@pytest.mark.parametrize("kind", ["dev-zero", "fifo"])
def test_checkpoint_from_a_device_or_fifo_fails_fast(box: Box, tmp_path: Path, kind: str) -> None:
    if kind == "fifo":
        source = tmp_path / "checkpoint.fifo"
        os.mkfifo(source)
    else:
        source = Path("/dev/zero")
        if not source.exists():
            pytest.skip("no /dev/zero here")
    command = [sys.executable, "-m", "vvctl", "--config", str(box.invoke.config), "verify-logline"]
    started = time.monotonic()
    result = subprocess.run(
        [*command, *box.keys_args(tmp_path), "--checkpoint", str(source), str(box.loglines)],
        capture_output=True,
        text=True,
        timeout=60,
        preexec_fn=_limited,
    )
    assert time.monotonic() - started < 30
    assert result.returncode == 8, result.stderr
    assert "not a regular file" in result.stderr and "Traceback" not in result.stderr
