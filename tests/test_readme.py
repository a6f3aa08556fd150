"""The `yuqing` command lines in README.md and docs/*.md are real: each one in a fenced code block
parses against the CLI (command, options, their values), placeholders given sample values; each
`yuqing …` in inline code names a real command and only its options. Parsing only (click's
make_context): nothing runs, nothing is reached. And the README gives the addresses the web app
serves, the OpenAPI document's among them."""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import pytest
import typer

from config.settings import Settings
from plan.roster import Roster
from starter.cli import app
from starter.web.app import create_app

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = [README, *sorted((ROOT / "docs").glob("*.md"))]
# Recent typer carries its own copy of click (typer._click), whose errors are TyperExceptions;
# older typer raised click's.
USAGE_ERRORS: tuple[type[Exception], ...] = (
    click.ClickException,
    getattr(typer, "TyperException", click.ClickException),
)
PROGRAMS = {"yuqing", "yuqing-admin"}  # yuqing-admin: docs/DEPLOY.md's wrapper, `yuqing "$@"`

# Placeholders the docs write for values, and a sample of each that the CLI accepts.
SAMPLES = [
    (re.compile(r"^(YQ-.*…|事件编号|<id>|<incident-id>|INCIDENT_ID|ID)$"), "YQ-20261130-0001"),
    (re.compile(r"^(人员编号|PERSON_ID|<person>)$"), "liu.yang"),
    (re.compile(r"^(KEY_ID)$"), "2026-11"),
    (re.compile(r"^(N)$"), "30"),
]


def sample(word: str) -> str:
    for pattern, value in SAMPLES:
        if pattern.match(word):
            return value
    return word


def cli() -> Any:
    return typer.main.get_command(app)


def is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


# ---------------------------------------------------------------- finding the command lines


def fenced_lines(path: Path) -> Iterator[tuple[int, str]]:
    """The lines of the file's fenced code blocks, backslash continuations joined, each with the
    number of its first line."""
    fence: str | None = None
    pending: tuple[int, str] | None = None
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        m = re.match(r"^\s*(`{3,}|~{3,})", line)
        if m and (fence is None or m[1].startswith(fence)):
            fence = None if fence else m[1]
            continue
        if fence is None:
            continue
        start, text = pending or (number, "")
        text += line.removesuffix("\\")
        pending = (start, text + " ") if line.endswith("\\") else None
        if pending is None:
            yield start, text


def simple_commands(line: str) -> Iterator[list[str]]:
    """A shell line's simple commands (split at | ; & && ( ) $( > …), comments left out."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words: list[str] = []
    try:
        tokens = list(lexer)
    except ValueError:  # not shell (TOML, an unbalanced quote in prose): no command here
        return
    for token in tokens:
        if re.fullmatch(r"[();<>|&]+", token):
            yield words
            words = []
        else:
            words.append(token)
    yield words


def yuqing_argv(words: list[str]) -> list[str] | None:
    """The arguments of a `yuqing` (or `.venv/bin/yuqing`, `yuqing-admin`) command, after any
    VAR=value prefixes and `export`; None for another program."""
    while words and (words[0] == "export" or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])):
        words = words[1:]
    if not words or Path(words[0]).name not in PROGRAMS:
        return None
    return words[1:]


def fenced_commands() -> list[tuple[str, list[str]]]:
    found = []
    for path in DOCS:
        for number, line in fenced_lines(path):
            for words in simple_commands(line):
                argv = yuqing_argv(words)
                # `yuqing-admin() {` defines the wrapper; its body passes "$@" through.
                if argv and "$@" not in argv:
                    found.append((f"{path.relative_to(ROOT)}:{number}", argv))
    return found


def inline_commands() -> list[tuple[str, list[str]]]:
    """`yuqing COMMAND …` in inline code of the prose (outside fenced blocks)."""
    found = []
    for path in DOCS:
        fence: str | None = None
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            m = re.match(r"^\s*(`{3,}|~{3,})", line)
            if m and (fence is None or m[1].startswith(fence)):
                fence = None if fence else m[1]
                continue
            if fence is not None:
                continue
            for span in re.findall(r"(?<!`)`([^`]+)`(?!`)", line):
                words = span.split()
                if Path(words[0]).name in PROGRAMS and len(words) > 1 and words[1][0].islower():
                    found.append((f"{path.relative_to(ROOT)}:{number}", words[1:]))
    return found


# ---------------------------------------------------------------- checking them


def resolve(argv: list[str]) -> tuple[str, Any, list[str]]:
    """Walks the command groups: (the command's name, the command, its own arguments)."""
    command, name, rest = cli(), "yuqing", list(argv)
    while is_group(command):
        assert rest, f"`yuqing {name}` needs a subcommand"
        sub = command.commands.get(rest[0])
        assert sub is not None, f"`{rest[0]}` is not a command of `{name}`"
        command, name, rest = sub, rest[0], rest[1:]
    return name, command, rest


def parse(argv: list[str]) -> None:
    """Parses like the real command line, unknown options and missing ones failing, and runs
    nothing (make_context stops before the callback)."""
    name, command, rest = resolve([sample(w) for w in argv])
    try:
        command.make_context(name, rest, resilient_parsing=False)
    except USAGE_ERRORS as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        pytest.fail(f"`yuqing {shlex.join(argv)}`: {message}")


@pytest.mark.parametrize(
    ("where", "argv"), fenced_commands(), ids=[w for w, _ in fenced_commands()]
)
def test_fenced_command_line_parses(where: str, argv: list[str]) -> None:
    parse(argv)


@pytest.mark.parametrize(
    ("where", "argv"), inline_commands(), ids=[w for w, _ in inline_commands()]
)
def test_inline_command_names_a_command_and_its_options(where: str, argv: list[str]) -> None:
    """Inline mentions may leave arguments out (`yuqing show`), never name what is not there."""
    command: Any = cli()
    words = [w.rstrip("…,.;:") for w in argv]
    while is_group(command) and words and words[0] in command.commands:
        command, words = command.commands[words[0]], words[1:]
    assert not (is_group(command) and words and not words[0].startswith("-")), (
        f"`yuqing {' '.join(argv)}`: `{words[0]}` is not a command"
    )
    options = {opt for p in getattr(command, "params", []) for opt in (*p.opts, *p.secondary_opts)}
    for word in words:
        option = word.split("=", 1)[0]
        if option.startswith("--"):
            assert option in options, f"`yuqing {' '.join(argv)}`: no option {option}"


def test_the_extraction_finds_the_documented_lines() -> None:
    """The test's own control: the lines it is about are found, and a wrong one fails."""
    commands = [argv[0] for _, argv in fenced_commands()]
    assert {"triage", "draft-reply", "token", "export-history", "worker", "codec-key"} <= set(
        commands
    )
    with pytest.raises(pytest.fail.Exception, match="No such option: --unit"):
        parse(["triage", "YQ-…", "--severity", "urgent", "--category", "inquiry", "--unit", "cjb"])
    with pytest.raises(pytest.fail.Exception, match="Missing option"):
        parse(["draft-reply", "YQ-…"])
    with pytest.raises(AssertionError, match="not a command"):
        parse(["no-such-command"])


def test_readme_gives_the_openapi_document_the_app_serves(
    settings: Settings, roster: Roster
) -> None:
    url = create_app(settings, roster=roster).openapi_url
    assert url, "the web app serves no OpenAPI document"
    assert f"http://localhost:8000{url}" in README.read_text(encoding="utf-8"), (
        f"README does not say where the OpenAPI document is ({url})"
    )


def test_readme_sets_up_with_two_commands() -> None:
    """A fresh machine needs `make up` and `make test`, and the README says nothing more."""
    text = README.read_text(encoding="utf-8")
    section = text.split("## Set up", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.DOTALL)
    assert block is not None
    commands = [line.split("#", 1)[0].strip() for line in block[1].splitlines()]
    assert [c for c in commands if c] == ["make up", "make test"]
