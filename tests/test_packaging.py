"""The packaging: the licence pyproject.toml names is in LICENSE, every install pins every package
to constraints.txt (`make lock` writes it), and nothing caps a dependency for no reason.
Fast: reads files only, installs nothing."""

from __future__ import annotations

import hashlib
import re
import shlex
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import NormalizedName, canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"
CONSTRAINTS = ROOT / "constraints.txt"
MAKEFILE = ROOT / "Makefile"
LICENSE = ROOT / "LICENSE"

# https://www.apache.org/licenses/LICENSE-2.0.txt, byte for byte, has this MD5 (the well-known
# one); LICENSE is that text with the appendix's copyright line filled in.
APACHE_2_MD5 = "3b83ef96387f14655fc854ddc3c6bd57"
COPYRIGHT = re.compile(r"^   Copyright (\d{4}(?:-\d{4})?) yuqing contributors$", re.MULTILINE)
PLACEHOLDER = "   Copyright [yyyy] [name of copyright owner]"


def project() -> dict:
    with PYPROJECT.open("rb") as f:
        return tomllib.load(f)["project"]


def requirements() -> list[tuple[str, Requirement]]:
    """Every requirement pyproject.toml states, with where: dependencies and each extra."""
    found = [("dependencies", Requirement(r)) for r in project()["dependencies"]]
    for extra, reqs in project()["optional-dependencies"].items():
        found += [(f"[{extra}]", Requirement(r)) for r in reqs]
    return found


def own(req: Requirement) -> bool:
    """`yuqing[dev]` in an extra: the project's own other extra, not a package to pin."""
    return canonicalize_name(req.name) == canonicalize_name(project()["name"])


def pins() -> dict[NormalizedName, Version]:
    found: dict[NormalizedName, Version] = {}
    for number, raw in enumerate(CONSTRAINTS.read_text().splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        m = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        assert m, f"constraints.txt:{number}: {raw!r} is not NAME==VERSION"
        name = canonicalize_name(m[1])
        assert name not in found, f"constraints.txt:{number}: {m[1]} pinned twice"
        found[name] = Version(m[2])
    return found


# ---------------------------------------------------------------- the licence


def test_license_is_the_apache_2_text_pyproject_names() -> None:
    assert project()["license"] == "Apache-2.0"
    assert LICENSE.is_file(), "LICENSE is missing (pyproject.toml says Apache-2.0)"
    text = LICENSE.read_text(encoding="utf-8")
    assert len(COPYRIGHT.findall(text)) == 1, "LICENSE: no `Copyright YEAR yuqing contributors`"
    canonical = COPYRIGHT.sub(PLACEHOLDER, text)
    assert hashlib.md5(canonical.encode()).hexdigest() == APACHE_2_MD5, (
        "LICENSE is not the Apache License 2.0 text (only the copyright line may differ)"
    )


def test_the_wheel_ships_the_license() -> None:
    """setuptools >= 77 puts LICEN[CS]E* in the wheel unless license-files says otherwise."""
    files = project().get("license-files")
    assert files is None or "LICENSE" in files


# ---------------------------------------------------------------- constraints.txt


def test_constraints_file_says_how_to_regenerate_it() -> None:
    assert "make lock" in CONSTRAINTS.read_text().splitlines()[0]
    assert re.search(r"^lock:", MAKEFILE.read_text(), re.MULTILINE), "Makefile has no lock target"


@pytest.mark.parametrize(
    ("where", "req"),
    [(w, r) for w, r in requirements() if not own(r)],
    ids=lambda v: str(v),
)
def test_every_requirement_is_pinned_within_its_range(where: str, req: Requirement) -> None:
    pinned = pins().get(canonicalize_name(req.name))
    assert pinned is not None, f"{where} {req}: not in constraints.txt (run `make lock`)"
    assert req.specifier.contains(pinned, prereleases=True), (
        f"{where} {req}: constraints.txt pins {pinned}, outside the range (run `make lock`)"
    )
    try:
        needs = metadata.requires(req.name) or []
    except metadata.PackageNotFoundError:
        needs = []  # not installed here: its extras' packages cannot be read
    for extra in req.extras:  # psycopg[binary] -> psycopg-binary: the extra's packages too
        for dep in needs:
            sub = Requirement(dep)
            if sub.marker and sub.marker.evaluate({"extra": extra}):
                assert canonicalize_name(sub.name) in pins(), (
                    f"{req}: {sub.name} (extra {extra}) is not in constraints.txt"
                )


def test_every_own_extra_named_exists() -> None:
    extras = set(project()["optional-dependencies"])
    for where, req in requirements():
        if own(req):
            assert req.extras <= extras, f"{where} {req}: no such extra"


def test_constraints_close_over_what_the_pins_require() -> None:
    """Every package a pinned package needs (as installed here, for the extras asked for) is
    pinned too, so a fresh install resolves nothing on its own."""
    pinned = pins()
    todo = [r for _, r in requirements()]
    seen: set[tuple[str, frozenset[str]]] = set()
    missing: list[str] = []
    while todo:
        req = todo.pop()
        name = canonicalize_name(req.name)
        if name == canonicalize_name(project()["name"]):
            for extra in req.extras:
                todo += [Requirement(r) for r in project()["optional-dependencies"][extra]]
            continue
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        if name not in pinned:
            missing.append(str(req))
            continue
        try:
            dist = metadata.distribution(req.name)
        except metadata.PackageNotFoundError:
            continue  # not installed here: its own needs cannot be read
        for dep in dist.requires or []:
            sub = Requirement(dep)
            wanted = ["", *sorted(req.extras)]
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in wanted):
                todo.append(sub)
    assert not missing, f"not pinned in constraints.txt (run `make lock`): {missing}"


# ---------------------------------------------------------------- every install uses it


def logical_lines(path: Path) -> list[tuple[int, str]]:
    """The file's lines with backslash continuations joined, each with its first line's number."""
    lines: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        start, text = pending or (number, "")
        text += line.removesuffix("\\")
        pending = (start, text + " ") if line.endswith("\\") else None
        if pending is None:
            lines.append((start, text))
    return lines


def pip_installs(path: Path) -> list[tuple[int, str, list[str]]]:
    """The `pip install …` / `pip wheel …` commands in a file (shell, Makefile, or Markdown code
    and prose): line number, the line, and the command's words up to the end of the command."""
    found = []
    for number, line in logical_lines(path):
        for m in re.finditer(r"\bpip (install|wheel)\b([^;&|`\n]*)", line):
            command = m[0].replace("$(CONSTRAINTS)", "constraints.txt")
            try:
                argv = shlex.split(command)
            except ValueError:  # a quote closed after the match: words will do
                argv = command.split()
            found.append((number, line, argv))
    return found


def installs_only_pip(argv: list[str]) -> bool:
    return [a for a in argv[2:] if not a.startswith("-")] == ["pip"]


def uses_constraints(argv: list[str]) -> bool:
    for i, arg in enumerate(argv):
        if arg in ("-c", "--constraint") and i + 1 < len(argv):
            return argv[i + 1].endswith("constraints.txt")
        if arg.startswith("--constraint="):
            return arg.endswith("constraints.txt")
    return False


def makefile_recipes() -> dict[str, str]:
    recipes: dict[str, str] = {}
    target = None
    for line in MAKEFILE.read_text().splitlines():
        if line.startswith("\t") and target:
            recipes[target] += line + "\n"
        elif m := re.match(r"^([^\s:=#][^:=]*):(?!=)", line):
            target = m[1].strip()
            recipes[target] = ""
        elif line and not line.startswith("#"):
            target = None
    return recipes


def test_makefile_venvs_install_from_the_constraints() -> None:
    assert re.search(r"^CONSTRAINTS\s*:=\s*constraints\.txt$", MAKEFILE.read_text(), re.MULTILINE)
    recipes = makefile_recipes()
    for target in ("$(VENV)/.installed", "$(VENV)/.test-installed"):
        assert "-c $(CONSTRAINTS)" in recipes[target], f"Makefile {target}: no -c $(CONSTRAINTS)"
    # `make up`, `make test`, `make lint` (and so .ci/run) go through those two targets.
    for target, venv in (
        ("up", ".installed"),
        ("test", ".test-installed"),
        ("lint", ".test-installed"),
    ):
        rule = next(
            line for line in MAKEFILE.read_text().splitlines() if line.startswith(target + ":")
        )
        assert f"$(VENV)/{venv}" in rule, f"make {target} does not install through {venv}"


@pytest.mark.parametrize(
    "path",
    [
        MAKEFILE,
        ROOT / ".ci" / "run",
        *sorted((ROOT / "scripts").glob("*.sh")),
        ROOT / "docs" / "DEPLOY.md",
        ROOT / "README.md",
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_install_line_uses_the_constraints(path: Path) -> None:
    for number, line, argv in pip_installs(path):
        if installs_only_pip(argv) or "$(LOCK_VENV)/bin/pip" in line:
            continue  # pip itself; `make lock` resolves afresh on purpose
        assert uses_constraints(argv), (
            f"{path.relative_to(ROOT)}:{number}: `{shlex.join(argv)}` without -c constraints.txt"
        )


def test_ci_installs_through_make() -> None:
    """.ci/run installs nothing itself: `make test` does, from the constraints."""
    run = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^make test$", run, re.MULTILINE)


# ---------------------------------------------------------------- the requirements themselves


def test_cryptography_is_not_capped() -> None:
    """The codec uses AESGCM and the TLS test x509: stable APIs. The pin in constraints.txt
    chooses the version; a cap in pyproject would only keep fixes out of deployments."""
    (req,) = [r for _, r in requirements() if canonicalize_name(r.name) == "cryptography"]
    caps = [s for s in req.specifier if s.operator in ("<", "<=", "==", "~=", "===")]
    assert not caps, f"cryptography is capped: {req}"
    assert pins()["cryptography"] >= Version("47"), "constraints.txt keeps cryptography below 47"


def test_linters_are_the_dev_extra_and_the_test_venv_has_them() -> None:
    extras = project()["optional-dependencies"]
    dev = {canonicalize_name(Requirement(r).name) for r in extras["dev"]}
    assert {"ruff", "mypy"} <= dev
    test = [Requirement(r) for r in extras["test"]]
    assert any(own(r) and "dev" in r.extras for r in test) or {"ruff", "mypy"} <= {
        canonicalize_name(r.name) for r in test
    }, "the test extra lacks the linters: `make lint` runs from the test venv"
    lint = makefile_recipes()["lint"]
    assert "$(BIN)/ruff check ." in lint and "$(BIN)/mypy " in lint
