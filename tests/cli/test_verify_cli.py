"""``vvctl verify-logline`` and ``vvctl checkpoint``: verdicts, exit codes 0/1/2, JSON shape, no tracebacks."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.cli.conftest import Invoke


@pytest.fixture
def root(invoke: Invoke, tmp_path: Path) -> Path:
    """A bootstrapped storage root whose jobs log has five LogLines: the first key's ``created`` event,
    bootstrap twice, and one key rotation (its ``retired`` event, then the ``keys`` job's run record)."""
    root = tmp_path / "T"
    assert invoke("bootstrap", "--storage-root", str(root)).exit_code == 0
    assert invoke("bootstrap").exit_code == 0
    assert invoke("keys", "rotate").exit_code == 0
    return root


def jobs(root: Path) -> list[Path]:
    return sorted((root / "loglines" / "jobs").glob("*.logline.json"))


def test_valid_log_exits_0_with_the_json_report(invoke: Invoke, root: Path) -> None:
    report = invoke.json("verify-logline", str(root / "loglines"))
    assert report["kind"] == "verify-logline" and report["schema_version"] == 1
    assert (report["valid"], report["invalid"]) == (5, 0)
    assert [r["verdict"] for r in report["results"]] == ["VALID"] * 5
    fields = {"path", "log", "seq", "verdict", "reason", "detail", "hash", "prev", "key_id", "box", "key_event"}
    fields |= {"outputs", "outputs_checked"}
    assert set(report["results"][0]) == fields
    assert report["results"][0]["prev"] == "0" * 64
    assert report["results"][0]["key_event"]["event"] == "created"
    assert report["results"][3]["key_event"]["event"] == "retired"
    box = json.loads((root / "state" / "keystore.json").read_text())["box"]
    assert report["box"] == box and {r["box"] for r in report["results"]} == {box}
    assert report["problems"] == []
    summary = report["logs"]["jobs"]
    assert (summary["first_seq"], summary["last_seq"], summary["problems"]) == (1, 5, [])
    assert (summary["box"], summary["legacy"]) == (box, 0)
    assert summary["head_hash"] == hashlib.sha256(jobs(root)[-1].read_bytes()).hexdigest()


def test_invalid_files_exit_1_and_are_named(invoke: Invoke, root: Path) -> None:
    files = jobs(root)
    files[1].unlink()
    garbage = root / "loglines" / "jobs" / "00000009.garbage.logline.json"
    garbage.write_bytes(os.urandom(200) + b"\xff")
    report = invoke.json("verify-logline", str(root / "loglines"), expect=1)
    reasons = {Path(r["path"]).name: r["reason"] for r in report["results"]}
    assert reasons[files[2].name] == "gap"
    assert reasons[garbage.name] in {"not_utf8", "malformed_json"}
    assert reasons[files[0].name] is None

    human = invoke("verify-logline", str(root / "loglines"))
    assert human.exit_code == 1
    assert "gap" in human.stdout and "INVALID" in human.stdout and "Traceback" not in human.output


def test_expect_head_and_checkpoint_detect_a_cut_tail(invoke: Invoke, root: Path, tmp_path: Path) -> None:
    checkpoint = tmp_path / "cp.json"
    written = invoke.json("checkpoint", "--out", str(checkpoint))
    (only,) = written["heads"]  # every log by default; this box has one
    assert only["seq"] == 5 and only["log"] == "jobs"
    head = f"jobs:5:{only['hash']}"
    assert invoke("verify-logline", str(root / "loglines"), "--expect-head", head).exit_code == 0
    assert invoke("verify-logline", str(root / "loglines"), "--checkpoint", str(checkpoint)).exit_code == 0
    for cut in jobs(root)[-2:]:  # the keys run record and, before it, the retirement event
        cut.unlink()
    for option in (
        ["--expect-head", head],
        ["--expect-head", f"5:{only['hash']}"],
        ["--checkpoint", str(checkpoint)],
    ):
        report = invoke.json("verify-logline", str(root / "loglines"), *option, expect=1)
        # The cut-off record was the first key's retirement event: with the key store (which knows the
        # key is retired) its records are now flagged too, as a history rewritten without that event.
        assert [r["reason"] for r in report["results"]] == ["key_retired", "key_retired", "head_mismatch"]


@pytest.mark.parametrize(
    "args",
    [
        ["verify-logline", "/nonexistent/loglines"],
        ["verify-logline", "{root}", "--expect-head", "not-a-head"],
        ["verify-logline", "{root}", "--checkpoint", "/nonexistent/cp.json"],
        ["verify-logline"],
        ["checkpoint", "--log", "videos", "--out", "{root}/cp.json"],
    ],
)
def test_bad_arguments_exit_2(invoke: Invoke, root: Path, args: list[str]) -> None:
    result = invoke(*[a.replace("{root}", str(root)) for a in args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output


def test_public_keys_alone_verify_ed25519_records(invoke: Invoke, root: Path, tmp_path: Path) -> None:
    config = invoke.config.read_text() + '\nsigning_algorithm = "ed25519"\n'
    invoke.config.write_text(config)
    assert invoke("keys", "rotate").exit_code == 0  # seq 4, signed with the new Ed25519 key
    public = tmp_path / "public.json"
    assert invoke("keys", "export-public", "--out", str(public)).exit_code == 0
    newest = jobs(root)[-1]
    assert invoke("verify-logline", "--public-key", str(public), str(newest)).exit_code == 0
    report = invoke.json("verify-logline", "--public-key", str(public), str(root / "loglines"), expect=1)
    assert {r["reason"] for r in report["results"]} == {"unknown_key_id", None}  # HMAC records need the secret


def test_real_subprocess_on_garbage_gives_verdicts_not_tracebacks(root: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.logline.json").write_bytes(b"\x00\x01garbage\xfe")
    (bad / "b.logline.json").write_bytes(b'{"seq": 1e999}')
    (bad / "c.logline.json").write_bytes(b"[" * 50_000)
    key_store = root / "state" / "keystore.json"
    command = [sys.executable, "-m", "vvctl", "--json", "verify-logline", "--key-store", str(key_store)]
    result = subprocess.run([*command, str(bad), str(root / "loglines")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    report = json.loads(result.stdout)
    reasons = {Path(r["path"]).name: r["reason"] for r in report["results"]}
    assert reasons["a.logline.json"] == "not_utf8"
    assert reasons["b.logline.json"] == "schema_violation"
    assert reasons["c.logline.json"] == "malformed_json"
    assert report["valid"] == 5

    usage = subprocess.run([*command, str(tmp_path / "missing")], capture_output=True, text=True, timeout=60)
    assert usage.returncode == 2 and "does not exist" in usage.stderr and "Traceback" not in usage.stderr


def test_people_see_only_invalid_files_above_the_limit_unless_all(
    invoke: Invoke, root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vvctl.cli import verify_logline

    monkeypatch.setattr(verify_logline, "LIST_ALL_UP_TO", 2)
    files = jobs(root)
    files[1].write_bytes(files[1].read_bytes().replace(b"bootstrap", b"bootstrop"))
    wide = {"COLUMNS": "400"}  # whole paths on one line
    result = invoke("verify-logline", str(root / "loglines"), env=wide)
    assert result.exit_code == 1
    assert files[1].name in result.stdout and files[0].name not in result.stdout
    assert "4 valid not listed" in result.stdout
    everything = invoke("verify-logline", "--all", str(root / "loglines"), env=wide)
    assert all(f.name in everything.stdout for f in files)


def test_a_missing_path_is_a_usage_error_before_any_key_store_is_needed(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke("verify-logline", str(tmp_path / "nowhere"))
    assert result.exit_code == 2
    assert result.stderr.strip() == f"vvctl: error: {tmp_path / 'nowhere'} does not exist"
