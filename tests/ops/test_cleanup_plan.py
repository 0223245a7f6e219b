"""The cleanup planner on generated trees of real files: what it may select, and how much for the floor."""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vvctl.ops.cleanup import DirPolicy, DiskSpace, Plan, Policy, plan, snapshot

NOW = datetime(2030, 1, 1, tzinfo=UTC)
DAY = 86_400
LIMITS = {"processed": 30.0, "logs": 7.0, "input": 0.0}
AGES = st.sampled_from([0.0001, 0.005, 1.0, 6.9, 7.1, 29.9, 30.1, 45.0, 400.0])
EXCLUDE = ("*.keep", "hold")


@dataclass
class File:
    age_days: float
    size: int
    kept: bool


@dataclass
class Link:
    target: str
    """outside-dir, outside-file, inside-dir, inside-file, dangling"""


@dataclass
class Dir:
    children: dict[str, File | Link | Dir] = field(default_factory=dict)
    age_days: float = 1.0


NAMES = st.sampled_from(["a", "b", "c.mp4", "d.txt", "e.keep", "hold", "f.MP4", "g"])
files = st.builds(File, AGES, st.integers(0, 20_000), st.sampled_from([False, False, False, True]))
links = st.builds(Link, st.sampled_from(["outside-dir", "outside-file", "inside-dir", "inside-file", "dangling"]))


def _dirs(children: st.SearchStrategy[dict[str, File | Link | Dir]]) -> st.SearchStrategy[Dir]:
    return st.builds(Dir, children, AGES)


nodes = st.recursive(
    st.one_of(files, files, files, links),
    lambda inner: _dirs(st.dictionaries(NAMES, inner, max_size=4)),
    max_leaves=14,
)
trees = st.fixed_dictionaries(
    {name: _dirs(st.dictionaries(NAMES, nodes, min_size=2, max_size=6)) for name in ("processed", "logs", "input")}
)


@dataclass
class Built:
    storage: Path
    outside: Path
    real_files: dict[str, File]
    """Absolute path -> the file, for every regular file reachable without passing a symlink."""
    protected: set[str]


def _set_age(path: Path, age_days: float) -> None:
    moment = int((NOW.timestamp() - age_days * DAY) * 1e9)
    os.utime(path, ns=(moment, moment), follow_symlinks=False)


def build(base: Path, tree: dict[str, Dir]) -> Built:
    storage = base / "root"
    outside = base / "outside"
    (outside / "dir").mkdir(parents=True)
    for name in ("x", "y"):  # old enough for any limit: a symlink that leads here must never be followed
        (outside / "dir" / name).write_bytes(b"o" * 5000)
        _set_age(outside / "dir" / name, 400)
    (outside / "file").write_bytes(b"o" * 5000)
    _set_age(outside / "file", 400)
    built = Built(storage, outside, {}, set())

    def make(path: Path, node: File | Link | Dir, top: str) -> None:
        if isinstance(node, File):
            path.write_bytes(b"v" * node.size)
            _set_age(path, node.age_days)
            built.real_files[str(path)] = node
            parts = path.relative_to(storage / top).parts
            excluded = any(part.endswith(".keep") or part == "hold" for part in parts)
            video_in_input = top == "input" and path.suffix.lower() == ".mp4"
            if node.kept or excluded or video_in_input:
                built.protected.add(str(path))
        elif isinstance(node, Link):
            target = {
                "outside-dir": outside / "dir",
                "outside-file": outside / "file",
                "inside-dir": storage / top,
                "inside-file": storage / top / "zz-target",
                "dangling": base / "nowhere",
            }[node.target]
            path.symlink_to(target)
        else:
            path.mkdir()
            for name, child in node.children.items():
                make(path / name, child, top)
            _set_age(path, node.age_days)

    storage.mkdir()
    for top, node in tree.items():
        (storage / top).mkdir()
        for name, child in node.children.items():
            make(storage / top / name, child, top)
        make(storage / top / "zz-target", File(0.0001, 1, kept=False), top)
    return built


def make_policy(built: Built, tree: dict[str, Dir], floor: int) -> Policy:
    kept = {p: "kept" for p, f in built.real_files.items() if f.kept}
    return Policy(
        dirs=tuple(DirPolicy(name, built.storage / name, LIMITS[name]) for name in tree),
        floor=floor,
        excludes=EXCLUDE,
        keep=kept,
        keep_dirs=frozenset(str(built.storage / name) for name in tree),
        input_dir=built.storage / "input",
        video_extensions=frozenset({".mp4"}),
        grace_s=600.0,
    )


def _age_days(path: str) -> float:
    return (NOW.timestamp() - os.stat(path, follow_symlinks=False).st_mtime_ns / 1e9) / DAY


def _frees(path: str) -> int:
    info = os.stat(path, follow_symlinks=False)
    return info.st_blocks * 512 if info.st_nlink == 1 else 0


def _no_symlink_on_the_way(root: Path, path: str) -> bool:
    current = root
    for part in Path(path).relative_to(root).parts:
        current = current / part
        if current.is_symlink():
            return False
    return True


def selected(result: Plan) -> dict[str, str]:
    return {f"{result.roots[d.root].path}/{d.entry.rel}": d.why for d in result.deletions}


def check_common(built: Built, result: Plan) -> dict[str, str]:
    chosen = selected(result)
    limits = {d.name: (d.path, d.max_age_days) for d in result.policy.dirs}
    for path, why in chosen.items():
        assert path in built.real_files, f"{path} is not a real file inside the directories (symlink, outside)"
        assert not path.startswith(str(built.outside))
        assert path not in built.protected, f"{path} is protected"
        root = next(r for r in result.roots if path.startswith(f"{r.path}/"))
        assert _no_symlink_on_the_way(root.path, path)
        if why == "age":
            assert _age_days(path) > limits[root.name][1]
        else:
            assert why == "floor" and _age_days(path) * DAY >= 600
    for index, entry in result.removals:
        path = result.roots[index].path / entry.rel
        assert entry.rel and str(path) not in result.policy.keep_dirs
        left = [p for p in built.real_files if p.startswith(f"{path}/") and p not in chosen]
        assert not left, f"{path} would be removed but still holds {left}"
    return chosen


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees)
def test_without_a_floor_exactly_the_unprotected_files_past_their_limit_go(tree: dict[str, Dir]) -> None:
    base = Path(tempfile.mkdtemp(prefix="vv-plan-"))
    try:
        built = build(base, tree)
        policy = make_policy(built, tree, floor=0)
        roots = snapshot(policy.dirs, storage_root=built.storage)
        result = plan(roots, policy, now=NOW, space=DiskSpace(free=10**12, total=10**13))
        chosen = check_common(built, result)
        assert set(chosen.values()) <= {"age"}
        wanted = set()
        for path in built.real_files:
            name = Path(path).relative_to(built.storage).parts[0]
            if path not in built.protected and _age_days(path) > LIMITS[name]:
                wanted.add(path)
        assert set(chosen) == wanted
    finally:
        _rmtree(base)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=trees, free=st.integers(0, 40_000), percent=st.integers(0, 130))
def test_with_a_floor_the_oldest_eligible_go_first_and_no_more_than_needed(
    tree: dict[str, Dir], free: int, percent: int
) -> None:
    base = Path(tempfile.mkdtemp(prefix="vv-plan-"))
    try:
        built = build(base, tree)
        roots = snapshot(make_policy(built, tree, floor=0).dirs, storage_root=built.storage)
        # A floor between "met by the age limits alone" and "not reachable at all".
        by_age_only = plan(roots, make_policy(built, tree, floor=0), now=NOW, space=DiskSpace(free, 10**9))
        spare = sum(_frees(p) for p in built.real_files if p not in built.protected and p not in selected(by_age_only))
        floor = free + by_age_only.frees + spare * percent // 100
        policy = make_policy(built, tree, floor=floor)
        result = plan(roots, policy, now=NOW, space=DiskSpace(free=free, total=10**9))
        chosen = check_common(built, result)
        by_age = [p for p, why in chosen.items() if why == "age"]
        by_floor = sorted((p for p, why in chosen.items() if why == "floor"), key=lambda p: (-_age_days(p), p))
        # Eligible for the floor: not protected, not taken for its age, frees space, older than the grace.
        eligible = [
            p
            for p in built.real_files
            if p not in built.protected and p not in by_age and _frees(p) > 0 and _age_days(p) * DAY >= 600
        ]
        left = [p for p in eligible if p not in chosen]
        if by_floor:
            youngest_taken = min(_age_days(p) for p in by_floor)
            assert all(_age_days(p) <= youngest_taken for p in left), "a younger file went before an older one"
        freed = sum(_frees(p) for p in chosen)
        assert result.frees == freed
        if by_floor:  # no more than needed: without the last (youngest) floor file the floor was not met
            youngest = [p for p in by_floor if _age_days(p) == _age_days(by_floor[-1])]
            assert free + freed - max(_frees(p) for p in youngest) < floor
        # The same choice made from the real files: oldest first (ties by directory, then path) until met.
        order = list(tree)
        expected: list[str] = []
        short = floor - free - sum(_frees(p) for p in by_age)
        for path in sorted(eligible, key=lambda p: (os.stat(p).st_mtime_ns, order.index(_top(built, p)), p)):
            if short <= 0:
                break
            expected.append(path)
            short -= _frees(path)
        assert sorted(by_floor) == sorted(expected)
        if free + freed < floor:
            assert not left, "the floor is not met although eligible files are left"
            assert not result.floor_reachable
        else:
            assert result.floor_reachable
    finally:
        _rmtree(base)


def _top(built: Built, path: str) -> str:
    return Path(path).relative_to(built.storage).parts[0]


def _rmtree(base: Path) -> None:
    shutil.rmtree(base)
