"""Developer sessions: `nox -s tests lint typecheck docs`."""

from __future__ import annotations

import nox

nox.options.sessions = ["tests", "ray", "lint", "typecheck", "docs"]
nox.options.reuse_existing_virtualenvs = True


@nox.session
def tests(session: nox.Session) -> None:
    """The default test suite (slow tests too with `nox -s tests -- -m ''`)."""
    session.install(".[test]")
    session.run("pytest", *session.posargs)


@nox.session
def ray(session: nox.Session) -> None:
    """The tests marked `ray` (a local Ray cluster, slow): the ray extra installed."""
    session.install(".[test,ray]")
    session.run("pytest", "-m", "ray", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", "src", "tests", "benchmarks", "noxfile.py")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]", "mypy")
    session.run("mypy", "--strict", "src")


@nox.session
def docs(session: nox.Session) -> None:
    """Regenerate docs/cli.md and completions/ from the app, then check they are current."""
    session.install("-e", ".[test]")
    session.run("python", "-m", "vvctl.cli.docgen", "--write")
    session.run("pytest", "tests/cli/test_docs.py")
