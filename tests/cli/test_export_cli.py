"""``vvctl export-logs`` and ``vvctl verify-logline --anchor`` from the command line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.cli.conftest import Invoke
from vvctl.core.logline import LogLineDraft, LogLineWriter
from vvctl.core.settings import load_settings


@pytest.fixture
def box(invoke: Invoke, tmp_path: Path) -> Invoke:
    invoke.config.write_text(f'storage_root = "{tmp_path / "root"}"\nsigning_algorithm = "ed25519"\n')
    assert invoke("bootstrap").exit_code == 0
    settings = load_settings(invoke.config, env={}).settings
    writer = LogLineWriter(settings)
    draft = LogLineDraft(
        who="vvctl test", did="analysed video", this="ok", status="ok", source={"type": "video", "id": "v"}
    )
    for n in range(5):
        writer.append("videos", draft, slug=f"clip-{n}")
    return invoke


def test_export_then_verify(box: Invoke) -> None:
    document = box.json("export-logs")
    assert document["kind"] == "export-logs" and document["scope"] == "since-last"
    archive = Path(document["archive"])
    assert archive.is_file() and Path(document["manifest"]).is_file()
    assert {r["log"]: r["count"] for r in document["loglines"]}["videos"] == 5
    verified = box.json("export-logs", "--verify", str(archive))
    assert verified["kind"] == "export-logs-verify" and verified["findings"] == []
    human = box("export-logs", "--verify", str(archive))
    assert human.exit_code == 0 and "the export is intact" in human.stdout


def test_verify_names_findings_and_exits_1(box: Invoke) -> None:
    archive = Path(box.json("export-logs")["archive"])
    manifest = archive.with_name(archive.name.replace(".tar.gz", ".manifest.json"))
    document = json.loads(manifest.read_text())
    document["members"] = document["members"][1:]
    manifest.write_text(json.dumps(document))
    result = box.json("export-logs", "--verify", str(archive), expect=1)
    reasons = {(f["reason"], f["member"]) for f in result["findings"]}
    assert ("bad_signature", None) in reasons and any(r == "extra_member" for r, _ in reasons)
    human = box("export-logs", "--verify", str(archive))
    assert human.exit_code == 1 and "NOT intact" in human.stdout and "extra_member" in human.stdout


@pytest.mark.parametrize(
    "args",
    [
        ("export-logs", "--date", "2026-13-01"),
        ("export-logs", "--date", "2026-11-20", "--all"),
        ("export-logs", "--manifest", "m.json"),
        ("export-logs", "--keep-days", "0"),
        ("export-logs", "--verify", "no-such.tar.gz"),
    ],
)
def test_bad_arguments_exit_2(box: Invoke, args: tuple[str, ...]) -> None:
    result = box(*args)
    assert result.exit_code == 2, result.output


def test_verify_logline_after_prune_uses_the_exports_on_the_box(box: Invoke, tmp_path: Path) -> None:
    box.json("export-logs", "--prune-loglines")
    root = tmp_path / "root"
    assert not (root / "loglines" / "videos" / "00000001.clip-0.logline.json").exists()
    on_box = box.json("verify-logline", str(root / "loglines"))
    assert on_box["logs"]["videos"]["anchor"]["seq"] == 4

    public = tmp_path / "public.json"
    assert box("keys", "export-public", "--out", str(public)).exit_code == 0
    without = box.json("verify-logline", "--public-key", str(public), str(root / "loglines" / "videos"), expect=1)
    assert [r["reason"] for r in without["results"] if r["verdict"] == "INVALID"] == ["unanchored_cut"]
    anchored = box(
        "verify-logline", "--public-key", str(public), "--anchor", str(root / "exports"), str(root / "loglines")
    )
    assert anchored.exit_code == 0, anchored.output
    assert "vouched for by export manifest" in anchored.stdout


def test_a_bad_explicit_anchor_exits_5(box: Invoke, tmp_path: Path) -> None:
    document: dict[str, Any] = box.json("export-logs")
    manifest = Path(document["manifest"])
    data = json.loads(manifest.read_text())
    data["created"] = "2020-01-01T00:00:00Z"
    manifest.write_text(json.dumps(data))
    result = box("verify-logline", "--anchor", str(manifest), str(tmp_path / "root" / "loglines"))
    assert result.exit_code == 5 and "bad_signature" in result.stderr


def test_the_installed_entry_point_verifies_an_export(box: Invoke) -> None:
    archive = Path(box.json("export-logs")["archive"])
    vvctl = Path(sys.executable).with_name("vvctl")
    run = subprocess.run(
        [str(vvctl), "--config", str(box.config), "export-logs", "--verify", str(archive)],
        capture_output=True,
        text=True,
        env={**os.environ, "NO_COLOR": "1"},
    )
    assert run.returncode == 0 and "intact" in run.stdout
    archive.write_bytes(archive.read_bytes()[:-20])
    run = subprocess.run(
        [str(vvctl), "--config", str(box.config), "--json", "export-logs", "--verify", str(archive)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 1
    assert {f["reason"] for f in json.loads(run.stdout)["findings"]} >= {"archive_mismatch", "archive_unreadable"}
