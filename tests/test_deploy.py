"""The deployment files (deploy/, docs/DEPLOY.md) agree with the code: every YUQING_* name is a
setting, every command a unit starts exists, the compose file is well formed with pinned images,
and the guide covers every file. Fast: no network, no Docker, no systemd."""

from __future__ import annotations

import json
import os
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import pytest
import typer
from pydantic import ValidationError

from config.settings import Settings
from starter.cli import app
from workflows.search_attributes import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
ENV_EXAMPLE = DEPLOY / "yuqing.env.example"
COMPOSE = DEPLOY / "docker-compose.yml"
WORKER_UNIT = DEPLOY / "systemd" / "yuqing-worker@.service"
WEB_UNIT = DEPLOY / "systemd" / "yuqing-web.service"
UNITS = (WORKER_UNIT, WEB_UNIT)
GUIDE = ROOT / "docs" / "DEPLOY.md"
INSTALL_ROOT = "/opt/yuqing"

FIELDS = {f"YUQING_{name.upper()}" for name in Settings.model_fields}
NAME = re.compile(r"\bYUQING_[A-Z0-9_]*[A-Z0-9]")
# `KEY=VALUE` lines of the env example; a commented one documents a default or an option.
ASSIGNMENT = re.compile(r"^(#\s*)?(YUQING_[A-Z0-9_]+)=(.*)$")


def cli() -> Any:
    """The `yuqing` command group (typer's own click: checked by shape, not by class)."""
    group = typer.main.get_command(app)
    assert isinstance(getattr(group, "commands", None), dict)
    return group


def is_group(command: Any) -> bool:
    return isinstance(getattr(command, "commands", None), dict)


def cli_envvars() -> set[str]:
    """Environment variables the CLI's own options read (YUQING_TOKEN), not settings."""
    found: set[str] = set()

    def walk(command: Any) -> None:
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            found.update([envvar] if isinstance(envvar, str) else envvar or [])
        if is_group(command):
            for sub in command.commands.values():
                walk(sub)

    walk(cli())
    return found


# ------------------------------------------------------------------ settings names


@pytest.mark.parametrize("path", [ENV_EXAMPLE, COMPOSE, *UNITS], ids=lambda p: p.name)
def test_every_yuqing_name_is_a_setting(path: Path) -> None:
    names = set(NAME.findall(path.read_text(encoding="utf-8")))
    if path in (ENV_EXAMPLE, WORKER_UNIT):
        assert names, f"{path.name} names no setting at all"
    assert names <= FIELDS, f"{path.name}: not settings: {sorted(names - FIELDS)}"


def test_guide_names_only_settings_and_cli_variables() -> None:
    names = set(NAME.findall(GUIDE.read_text(encoding="utf-8")))
    assert {"YUQING_DATABASE_URL", "YUQING_CODEC_KEYS", "YUQING_METRICS_BIND"} <= names
    unknown = names - FIELDS - cli_envvars()
    assert not unknown, f"docs/DEPLOY.md names unknown settings: {sorted(unknown)}"


# ------------------------------------------------------------------ the env example


def env_assignments() -> list[tuple[int, bool, str, str]]:
    """(line number, active, name, value) of every assignment, active or commented out."""
    found = []
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        m = ASSIGNMENT.match(line.strip())
        if m:
            found.append((number, m.group(1) is None, m.group(2), m.group(3)))
    return found


def unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def test_env_example_documents_every_setting() -> None:
    documented = {name for _, _, name, _ in env_assignments()}
    missing = FIELDS - documented
    assert not missing, (
        f"deploy/yuqing.env.example does not document {sorted(missing)}: add each, commented out "
        "with its default if production keeps it"
    )


def test_env_example_lines_are_comments_or_plain_assignments() -> None:
    """Usable as a systemd EnvironmentFile and with `set -a; . file`: no stray text, no empty
    values (an empty path setting would mean the current directory), no unquoted spaces."""
    active = 0
    for number, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = ASSIGNMENT.match(stripped)
        assert m and m.group(1) is None, f"line {number}: not KEY=VALUE: {line!r}"
        value = m.group(3)
        assert value, f"line {number}: {m.group(2)} is empty; comment it out instead"
        assert unquote(value) != value or not re.search(r"\s", value), (
            f"line {number}: {m.group(2)} has unquoted whitespace"
        )
        active += 1
    assert active >= 10


def test_env_example_values_are_valid_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each value shown, active or commented, is accepted by Settings on its own; the active ones
    are also accepted together (the production configuration as shipped)."""
    for name in list(os.environ):
        if name.startswith("YUQING_"):
            monkeypatch.delenv(name)
    assignments = env_assignments()
    for number, _, name, value in assignments:
        with monkeypatch.context() as m:
            m.setenv(name, unquote(value))
            try:
                Settings(_env_file=None)  # type: ignore[call-arg]
            except ValidationError as exc:
                pytest.fail(f"line {number}: {name}={value}: {exc}")
    for _, active, name, value in assignments:
        if active:
            monkeypatch.setenv(name, unquote(value))
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url.startswith("postgresql://")
    assert settings.log_format == "json"
    assert settings.public_url.startswith("https://")
    assert settings.codec_keys_file is not None


def test_env_example_leaves_per_worker_ports_to_the_instance_files() -> None:
    """Two workers reading the same port from the shared file could not both start."""
    per_instance = {"YUQING_METRICS_BIND", "YUQING_WORKER_HEALTH_BIND"}
    active = {name for _, is_active, name, _ in env_assignments() if is_active}
    commented = {name for _, is_active, name, _ in env_assignments() if not is_active}
    assert not per_instance & active
    assert per_instance <= commented


# ------------------------------------------------------------------ systemd units


def unit_entries(path: Path) -> list[tuple[str, str, str]]:
    """(section, key, value) in order; keys may repeat (EnvironmentFile=, SystemCallFilter=)."""
    entries = []
    section = ""
    lines = path.read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, 1):
        stripped = line.strip()
        if not stripped or stripped.startswith(("#", ";")):
            continue
        if stripped.startswith("[") and stripped.endswith("]"):
            section = stripped[1:-1]
            continue
        key, sep, value = stripped.partition("=")
        assert sep and key.strip() and section, f"{path.name}:{number}: not key=value: {line!r}"
        assert not stripped.endswith("\\"), f"{path.name}:{number}: no line continuations"
        entries.append((section, key.strip(), value.strip()))
    return entries


def unit_values(path: Path, section: str, key: str) -> list[str]:
    return [v for s, k, v in unit_entries(path) if s == section and k == key]


def unit_value(path: Path, section: str, key: str) -> str:
    values = unit_values(path, section, key)
    assert len(values) == 1, f"{path.name}: [{section}] {key}= given {len(values)} times"
    return values[0]


def console_scripts() -> set[str]:
    with (ROOT / "pyproject.toml").open("rb") as f:
        return set(tomllib.load(f)["project"]["scripts"])


def repo_path(path: str) -> Path:
    assert path.startswith(INSTALL_ROOT + "/"), f"{path} is outside {INSTALL_ROOT}"
    return ROOT / path.removeprefix(INSTALL_ROOT + "/")


def check_cli_args(args: list[str]) -> str:
    """The arguments parse as a `yuqing` command line (options and all); returns the command."""
    assert args, "yuqing started without a command"
    command = cli().commands.get(args[0])
    assert command is not None, f"`yuqing {args[0]}` is not a command"
    # Parsing only: make_context checks the options and arguments without running anything.
    command.make_context(args[0], list(args[1:]))
    return args[0]


@pytest.mark.parametrize(
    ("path", "command"), [(WORKER_UNIT, "worker"), (WEB_UNIT, "web")], ids=["worker", "web"]
)
def test_unit_starts_an_existing_command(path: Path, command: str) -> None:
    argv = shlex.split(unit_value(path, "Service", "ExecStart").lstrip("-@:+!"))
    executable = argv[0]
    venv_bin = f"{INSTALL_ROOT}/.venv/bin/"
    if executable.startswith(venv_bin):
        name = executable.removeprefix(venv_bin)
        assert name in console_scripts() | {"python", "python3"}, (
            f"{executable}: neither python nor a console script of pyproject.toml"
        )
    else:
        assert repo_path(executable).is_file(), f"{executable} is not in the repository"
    if executable.endswith("/yuqing"):
        assert check_cli_args(argv[1:]) == command
    else:  # python /opt/yuqing/worker.py
        script = repo_path(argv[1])
        assert script.is_file(), f"{argv[1]} is not in the repository"
        assert script.stem == command
    for arg in argv[1:]:
        if arg.startswith(INSTALL_ROOT + "/"):
            assert repo_path(arg).exists(), f"{arg} is not in the repository"


def test_web_unit_port_is_the_one_the_compose_ui_decodes_through() -> None:
    argv = shlex.split(unit_value(WEB_UNIT, "Service", "ExecStart"))
    port = argv[argv.index("--port") + 1]
    host = argv[argv.index("--host") + 1]
    assert host == "127.0.0.1", "the web app listens behind the reverse proxy only"
    ui_env = compose()["services"]["temporal-ui"]["environment"]
    assert ui_env["TEMPORAL_CODEC_ENDPOINT"] == f"http://localhost:{port}/codec"


@pytest.mark.parametrize("path", UNITS, ids=lambda p: p.name)
def test_unit_runs_unprivileged_hardened_and_restarts(path: Path) -> None:
    service = {k: v for s, k, v in unit_entries(path) if s == "Service"}
    assert service["User"] == "yuqing" and service["Group"] == "yuqing"
    assert service["WorkingDirectory"] == INSTALL_ROOT
    assert repo_path(INSTALL_ROOT + "/worker.py").is_file()  # the install root is the repo root
    assert service["Restart"] == "always"
    assert unit_values(path, "Service", "EnvironmentFile")[0] == "/etc/yuqing/yuqing.env"
    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "PrivateDevices": "yes",
        "CapabilityBoundingSet": "",
    }.items():
        assert service.get(key) == value, f"{path.name}: {key}={value} expected"
    writable = unit_values(path, "Service", "ReadWritePaths")
    assert writable == [f"{INSTALL_ROOT}/data"], "only the data directory is writable"
    assert unit_value(path, "Install", "WantedBy") == "multi-user.target"


def test_worker_template_reads_its_own_instance_file_last() -> None:
    """Each instance's ports come from /etc/yuqing/worker-%i.env, read after the shared file and
    required (no "-" prefix), not from arithmetic on the instance name."""
    files = unit_values(WORKER_UNIT, "Service", "EnvironmentFile")
    assert files == ["/etc/yuqing/yuqing.env", "/etc/yuqing/worker-%i.env"]
    for _, key, value in unit_entries(WORKER_UNIT):
        if key == "Environment":
            assert not NAME.search(value), f"settings belong in the env files: {value}"
    assert "%i" in unit_value(WORKER_UNIT, "Unit", "Description")


# ------------------------------------------------------------------ docker-compose.yml


class YamlSubsetError(ValueError):
    pass


def parse_yaml_subset(text: str) -> Any:
    """Block mappings and sequences, `|` literal blocks, plain or quoted scalars, and JSON-style
    flow sequences: the YAML this repository's compose file is written in (PyYAML is not a
    dependency). Anything else raises, so the file stays inside what is checked here."""
    lines: list[tuple[int, str]] = []
    raw = text.splitlines()
    i = 0
    while i < len(raw):
        line = raw[i]
        if "\t" in line[: len(line) - len(line.lstrip())]:
            raise YamlSubsetError(f"line {i + 1}: tab in indentation")
        stripped = line.strip()
        i += 1
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        if stripped.endswith(": |") or stripped == "- |":
            block: list[str] = []
            while i < len(raw) and (
                not raw[i].strip() or len(raw[i]) - len(raw[i].lstrip()) > indent
            ):
                block.append(raw[i])
                i += 1
            depth = min(len(b) - len(b.lstrip()) for b in block if b.strip())
            body = "\n".join(b[depth:] for b in block).rstrip("\n") + "\n"
            lines.append((indent, stripped[:-1] + json.dumps(body)))
            continue
        lines.append((indent, stripped))

    def scalar(value: str, where: int) -> Any:
        if value.startswith(("[", '"')):
            try:
                return json.loads(value)
            except json.JSONDecodeError as exc:
                raise YamlSubsetError(f"line {where}: {value!r}: {exc}") from exc
        if value.startswith("'"):
            if not value.endswith("'"):
                raise YamlSubsetError(f"line {where}: unterminated {value!r}")
            return value[1:-1].replace("''", "'")
        if value == "{}":
            return {}
        if value.startswith(("{", "&", "*", "!", "|", ">", "%", "@", "`")) or " #" in value:
            raise YamlSubsetError(f"line {where}: unsupported YAML {value!r}")
        if value in ("true", "false"):
            return value == "true"
        if re.fullmatch(r"-?\d+", value):
            return int(value)
        return value

    key_re = re.compile(r"^([A-Za-z0-9_.\-]+):(?: (.*))?$")

    def block_at(pos: int, indent: int) -> tuple[Any, int]:
        if lines[pos][1].startswith("- ") or lines[pos][1] == "-":
            items = []
            while pos < len(lines) and lines[pos][0] == indent and lines[pos][1].startswith("- "):
                item = lines[pos][1][2:]
                if key_re.match(item):  # "- key: value" opens a mapping one level in
                    lines[pos] = (indent + 2, item)
                    value, pos = block_at(pos, indent + 2)
                else:
                    value, pos = scalar(item, pos), pos + 1
                items.append(value)
            return items, pos
        mapping: dict[str, Any] = {}
        while pos < len(lines) and lines[pos][0] == indent:
            m = key_re.match(lines[pos][1])
            if not m:
                raise YamlSubsetError(f"not a mapping entry: {lines[pos][1]!r}")
            key, value = m.group(1), m.group(2)
            if key in mapping:
                raise YamlSubsetError(f"duplicate key {key!r}")
            if value is None and (pos + 1 >= len(lines) or lines[pos + 1][0] <= indent):
                mapping[key], pos = None, pos + 1  # "key:" alone is null
            elif value is None:
                mapping[key], pos = block_at(pos + 1, lines[pos + 1][0])
            else:
                mapping[key], pos = scalar(value, pos), pos + 1
        return mapping, pos

    if not lines:
        raise YamlSubsetError("empty document")
    document, end = block_at(0, lines[0][0])
    if end != len(lines):
        raise YamlSubsetError(f"unexpected indentation at {lines[end][1]!r}")
    return document


def test_yaml_subset_parser_reads_what_it_claims() -> None:
    sample = (
        "a: 1\n"
        "b:\n"
        "  c: 'x y'\n"
        '  d: ["CMD", "true"]\n'
        "  e:\n"
        "    - f\n"
        "    - g: true\n"
        "      h: {}\n"
        "  t: |\n"
        "    one\n"
        "      two\n"
        "# comment\n"
        "y:\n"
        'z: "q"\n'
    )
    assert parse_yaml_subset(sample) == {
        "a": 1,
        "b": {
            "c": "x y",
            "d": ["CMD", "true"],
            "e": ["f", {"g": True, "h": {}}],
            "t": "one\n  two\n",
        },
        "y": None,
        "z": "q",
    }
    for bad in ("a: &anchor 1\n", "a: 1\na: 2\n", "a:\n  - x\n b: 1\n", "a: {x: 1}\n"):
        with pytest.raises(YamlSubsetError):
            parse_yaml_subset(bad)


def compose() -> dict[str, Any]:
    document = parse_yaml_subset(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(document, dict)
    return document


def test_compose_parses_with_the_expected_services() -> None:
    document = compose()
    try:  # when PyYAML happens to be installed, it must read the same document
        import yaml  # type: ignore[import-untyped]
    except ImportError:
        pass
    else:
        assert yaml.safe_load(COMPOSE.read_text(encoding="utf-8")) == document
    services = document["services"]
    assert set(services) == {"postgresql", "temporal", "temporal-ui", "temporal-admin-tools"}
    assert services["temporal-admin-tools"]["profiles"] == ["tools"], "admin tools are optional"
    for name, volume in (v.split(":", 1) for v in services["postgresql"]["volumes"]):
        assert name in document["volumes"], f"volume {name} is not declared"
        assert volume == "/var/lib/postgresql/data"


def test_compose_images_are_pinned() -> None:
    services = compose()["services"]
    image_lines = [
        line
        for line in COMPOSE.read_text(encoding="utf-8").splitlines()
        if re.match(r"\s*image:", line)
    ]
    assert len(image_lines) == len(services), "every image: line belongs to a service"
    for name, service in services.items():
        image = service["image"]
        repository, sep, tag = image.rpartition(":")
        assert sep and repository and "/" not in tag, f"{name}: {image} has no tag"
        assert "$" not in image, f"{name}: {image} is not a literal tag"
        assert tag != "latest" and re.match(r"\d", tag), f"{name}: {image} is not pinned"
    assert services["temporal"]["image"].startswith("temporalio/auto-setup:")
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")
    assert services["postgresql"]["image"].startswith("postgres:")
    # The admin tools come from the same server release as auto-setup.
    server_version = services["temporal"]["image"].rpartition(":")[2]
    tools_tag = services["temporal-admin-tools"]["image"].rpartition(":")[2]
    assert tools_tag.split("-")[0] == server_version


def test_compose_services_are_healthchecked_and_wait_for_health() -> None:
    services = compose()["services"]
    for name, service in services.items():
        if "profiles" not in service:
            test = service["healthcheck"]["test"]
            assert test[0] in ("CMD", "CMD-SHELL") and len(test) >= 2, f"{name}: {test}"
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            assert "healthcheck" in services[dependency]
            assert condition == {"condition": "service_healthy"}
    assert "postgresql" in services["temporal"]["depends_on"]
    assert "temporal" in services["temporal-ui"]["depends_on"]


def test_compose_ports_are_bound_to_localhost() -> None:
    for name, service in compose()["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), f"{name}: {port}"


def test_compose_temporal_runs_on_the_postgres_service() -> None:
    document = compose()
    services = document["services"]
    db = services["postgresql"]["environment"]
    env = services["temporal"]["environment"]
    assert env["DB"] == "postgres12"
    assert env["POSTGRES_SEEDS"] in services
    assert env["DB_PORT"] == "5432"
    assert env["POSTGRES_USER"] == db["POSTGRES_USER"]
    assert env["POSTGRES_PWD"] == db["POSTGRES_PASSWORD"]
    assert env["DBNAME"] != env["VISIBILITY_DBNAME"]
    # the namespace auto-setup creates is the one the env example uses
    namespaces = [v for _, a, n, v in env_assignments() if a and n == "YUQING_TEMPORAL_NAMESPACE"]
    assert namespaces == [env["DEFAULT_NAMESPACE"]]
    # its dynamic config and the yuqing database come from inline configs that are mounted
    configs = document["configs"]
    for name, service in services.items():
        for mount in service.get("configs", []):
            assert mount["source"] in configs, f"{name}: config {mount['source']} not declared"
    dynamic = {m["source"]: m["target"] for m in services["temporal"]["configs"]}
    target = dynamic["temporal-dynamicconfig"]
    assert target == "/etc/temporal/" + env["DYNAMIC_CONFIG_FILE_PATH"]
    init = {m["source"]: m["target"] for m in services["postgresql"]["configs"]}
    assert init["yuqing-store-db"].startswith("/docker-entrypoint-initdb.d/")
    sql = configs["yuqing-store-db"]["content"]
    assert "CREATE ROLE yuqing LOGIN" in sql and "CREATE DATABASE yuqing OWNER yuqing" in sql


def test_compose_ui_decodes_through_the_yuqing_codec_endpoint() -> None:
    env = compose()["services"]["temporal-ui"]["environment"]
    assert env["TEMPORAL_ADDRESS"] == "temporal:7233"
    assert env["TEMPORAL_CODEC_INCLUDE_CREDENTIALS"] == "true"
    endpoint = env["TEMPORAL_CODEC_ENDPOINT"]
    assert endpoint.endswith("/codec")
    # The UI posts to {endpoint}/decode and /encode: the web app must serve that path.
    from starter.web.codec import router

    paths = {getattr(route, "path", "") for route in router.routes}
    assert "/codec/{operation}" in paths


# ------------------------------------------------------------------ docs/DEPLOY.md


def test_guide_mentions_every_deploy_file() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    files = sorted(p.relative_to(ROOT).as_posix() for p in DEPLOY.rglob("*") if p.is_file())
    assert {
        "deploy/yuqing.env.example",
        "deploy/docker-compose.yml",
        "deploy/systemd/yuqing-worker@.service",
        "deploy/systemd/yuqing-web.service",
    } <= set(files)
    missing = [f for f in files if f not in guide]
    assert not missing, f"docs/DEPLOY.md does not mention {missing}"


def test_guide_lists_every_search_attribute() -> None:
    guide = GUIDE.read_text(encoding="utf-8")
    names = [key.name for key in SEARCH_ATTRIBUTES]
    assert len(names) >= 6
    missing = [n for n in names if f"`{n}`" not in guide]
    assert not missing, f"docs/DEPLOY.md does not list the search attributes {missing}"


def code_in(markdown: str) -> list[str]:
    """The fenced code blocks and inline code spans."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", markdown, flags=re.S | re.M)
    prose = re.sub(r"^```[^\n]*\n.*?^```", "", markdown, flags=re.S | re.M)
    return blocks + re.findall(r"`([^`\n]+)`", prose)


def test_guide_commands_exist() -> None:
    """Every `yuqing COMMAND [SUBCOMMAND]` (and `yuqing-admin …`) in the guide's code is real."""
    group = cli()
    seen = set()
    for code in code_in(GUIDE.read_text(encoding="utf-8")):
        for m in re.finditer(r"\byuqing(?:-admin)? ([a-z][a-z-]*)(?: ([a-z][a-z-]*))?", code):
            name, sub = m.group(1), m.group(2)
            command = group.commands.get(name)
            assert command is not None, f"docs/DEPLOY.md: `yuqing {name}` is not a command"
            if is_group(command):
                assert sub in command.commands, f"docs/DEPLOY.md: `yuqing {name} {sub}`?"
            seen.add(name)
    assert {"migrate", "setup", "check-roster", "token", "codec-key", "export-history"} <= seen
