"""docker-compose.yml, the Dockerfile and their scripts, checked statically: no Docker engine runs
here, so these tests read the files for the properties a deployment depends on."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import SecretStr, ValidationError

from config import Settings
from tests.helpers.deploy import (
    COMPOSE,
    COMPOSE_ENV_EXAMPLE,
    DEPLOY,
    DOCKERFILE,
    DOCKERIGNORE,
    REPO,
    SYSTEMD_DIR,
    VM_ENV_EXAMPLE,
    assert_real_cli_invocation,
    env_file_assignments,
    setting_env_names,
    unknown_codexflow_names,
)

COMPLETED = "service_completed_successfully"
CONDITIONS = {"service_started", "service_healthy", COMPLETED}
# Variables of docker-compose.yml's own (interpolated), not settings of codexflow.
COMPOSE_ONLY_VARIABLES = {"POSTGRES_PASSWORD"}
SECRETS = {"CODEXFLOW_API_TOKEN", "CODEXFLOW_CODEC_KEY"}  # placeholders in the examples


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return compose["services"]


def depends_on(service: dict[str, Any]) -> dict[str, str]:
    """A service's dependencies and their conditions (the list form means service_started)."""
    deps = service.get("depends_on") or {}
    if isinstance(deps, list):
        return dict.fromkeys(deps, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in deps.items()}


def one_shots(services: dict[str, dict[str, Any]]) -> set[str]:
    """Services others wait for to *finish*: jobs, not daemons."""
    return {
        name
        for service in services.values()
        for name, condition in depends_on(service).items()
        if condition == COMPLETED
    }


def mounts(service: dict[str, Any]) -> list[tuple[str, str]]:
    """(source, target) of a service's volumes, short or long syntax."""
    found = []
    for entry in service.get("volumes") or []:
        if isinstance(entry, str):
            source, target = entry.split(":")[:2]
        else:
            source, target = entry.get("source", ""), entry["target"]
        found.append((source, target))
    return found


def is_bind(source: str) -> bool:
    return source.startswith((".", "/", "~"))


def built_services(services: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {name: service for name, service in services.items() if "build" in service}


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined, comments dropped."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        keyword, _, rest = pending.strip().partition(" ")
        instructions.append((keyword.upper(), rest.strip()))
        pending = ""
    return instructions


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in dockerfile_instructions():
        if keyword == "ENV":
            for token in shlex.split(rest):
                name, _, value = token.partition("=")
                env[name] = value
    return env


def effective_env(service: dict[str, Any]) -> dict[str, Any]:
    """What a container built from the Dockerfile sees: the image's ENV, then compose's."""
    return {**dockerfile_env(), **(service.get("environment") or {})}


def image_tag(image: str) -> str:
    name, _, tag = image.rpartition(":")
    assert name and "/" not in tag, f"{image} has no tag"
    return tag


def is_pinned(image: str) -> bool:
    """A tag that names a version (at least major.minor), never latest nor a bare name."""
    tag = image_tag(image)
    return bool(re.match(r"^v?\d+\.\d+", tag)) and "latest" not in tag


def project_version() -> str:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]


# --- the compose file ----------------------------------------------------------------------------


def test_the_stack_has_its_services_and_named_volumes(compose: dict[str, Any]) -> None:
    assert {
        "postgres",
        "temporal-schema",
        "temporal",
        "temporal-namespace",
        "temporal-ui",
        "migrate",
        "worker",
        "api",
    } <= set(compose["services"])
    assert {"pgdata", "workspaces", "workspaces-b", "repos", "codex-home"} <= set(
        compose["volumes"]
    )


def test_every_mounted_volume_is_declared_and_every_bind_source_exists(
    compose: dict[str, Any], services: dict[str, dict[str, Any]]
) -> None:
    declared = set(compose.get("volumes") or {})
    used = set()
    for name, service in services.items():
        for source, target in mounts(service):
            assert target.startswith("/"), f"{name}: {target} is not an absolute container path"
            if is_bind(source):
                assert source.startswith("./"), (
                    f"{name}: bind {source} is not inside the repository"
                )
                assert (REPO / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name} mounts the undeclared volume {source}"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"
    assert "pgdata" in {source for source, _ in mounts(services["postgres"])}


def test_every_image_is_pinned_to_a_version(services: dict[str, dict[str, Any]]) -> None:
    for name, service in services.items():
        assert "image" in service, f"{name} has no image"
        assert is_pinned(service["image"]), f"{name}: {service['image']} is not a pinned version"
    for name, service in built_services(services).items():
        assert image_tag(service["image"]) == project_version(), (
            f"{name} tags its build {service['image']}, not the project's version"
        )
    assert {"worker", "api", "migrate"} <= set(built_services(services))


def test_pinning_rejects_moving_tags() -> None:
    assert is_pinned("temporalio/server:1.31.0")
    assert is_pinned("postgres:16.10-bookworm")
    for moving in ("postgres:latest", "postgres:16", "temporalio/ui:latest-2", "redis:alpine"):
        assert not is_pinned(moving), moving
    with pytest.raises(AssertionError):
        is_pinned("postgres")


def test_temporal_server_and_its_schema_tools_are_the_same_version(
    services: dict[str, dict[str, Any]],
) -> None:
    server = services["temporal"]["image"]
    assert server.startswith("temporalio/server:")
    for job in ("temporal-schema", "temporal-namespace"):
        tools = services[job]["image"]
        assert tools.startswith("temporalio/admin-tools:")
        assert image_tag(tools) == image_tag(server), f"{job} would set up another version's schema"
    assert services["temporal-ui"]["image"].startswith("temporalio/ui:")


def test_every_daemon_has_a_healthcheck_and_jobs_do_not_restart(
    services: dict[str, dict[str, Any]],
) -> None:
    jobs = one_shots(services)
    assert {"migrate", "temporal-schema", "temporal-namespace"} <= jobs
    for name, service in services.items():
        if name in jobs:
            assert "healthcheck" not in service, f"{name} is a job: it has nothing to report"
            assert service.get("restart", "no") in ("no", "on-failure"), f"{name} would loop"
            continue
        check = service.get("healthcheck") or {}
        assert not check.get("disable"), f"{name}'s healthcheck is disabled"
        test = check.get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL") and len(test) > 1, f"{name}: no healthcheck"
        assert service.get("restart") == "unless-stopped", (
            f"{name} does not come back after a crash"
        )


def test_dependencies_exist_and_wait_for_the_right_state(
    services: dict[str, dict[str, Any]],
) -> None:
    for name, service in services.items():
        for dep, condition in depends_on(service).items():
            assert dep in services, f"{name} depends on the unknown service {dep}"
            assert condition in CONDITIONS, f"{name} → {dep}: unknown condition {condition}"
            if condition == "service_healthy":
                assert "healthcheck" in services[dep], f"{name} waits for {dep} to be healthy"

    def visit(name: str, path: tuple[str, ...]) -> None:
        assert name not in path, f"dependency cycle: {' → '.join((*path, name))}"
        for dep in depends_on(services[name]):
            visit(dep, (*path, name))

    for name in services:
        visit(name, ())
    for daemon in ("worker", "api"):
        deps = depends_on(services[daemon])
        assert deps.get("migrate") == COMPLETED, f"{daemon} may start before the migrations"
        assert deps.get("temporal-namespace") == COMPLETED
        assert deps.get("temporal") == "service_healthy"
    assert depends_on(services["temporal"]) == {"temporal-schema": COMPLETED}


def test_workers_scale_out(services: dict[str, dict[str, Any]]) -> None:
    worker = services["worker"]
    # --scale worker=N: N containers cannot share a name or a host port.
    assert "container_name" not in worker
    assert "ports" not in worker
    assert worker.get("init") is True, "codex's helper processes need an init that reaps them"
    grace = re.fullmatch(r"(\d+)s", str(worker.get("stop_grace_period", "")))
    assert grace and int(grace.group(1)) >= 60, "the worker needs time to stop codex cleanly"
    assert worker["command"] == ["worker"]
    assert_real_cli_invocation(worker["command"])


def test_only_loopback_ports_are_published(services: dict[str, dict[str, Any]]) -> None:
    published = {}
    for name, service in services.items():
        for port in service.get("ports") or []:
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} to the world"
            published[name] = port
    assert {"api", "temporal-ui"} <= set(published)


def test_everyone_shares_the_repositories_and_each_worker_machine_has_its_own_disk(
    services: dict[str, dict[str, Any]],
) -> None:
    """The central repositories and codex's login are shared by the API and every worker
    machine; worktrees are a machine's own, under an identity of its own."""
    workspaces: dict[str, str] = {}
    for name in ("worker", "worker-b", "api"):
        service = services[name]
        env = effective_env(service)
        targets = {source: target for source, target in mounts(service) if not is_bind(source)}
        assert targets.get("repos") == env["CODEXFLOW_REPOS_ROOT"], name
        assert targets.get("codex-home") == env["CODEXFLOW_CODEX_HOME"], name
        own = [v for v, target in targets.items() if target == env["CODEXFLOW_WORKSPACES_ROOT"]]
        if name == "api":
            assert not own, "the API never touches a worktree"
            continue
        [workspaces[name]] = own
        assert env["CODEXFLOW_WORKER_HOST"], name
    assert workspaces == {"worker": "workspaces", "worker-b": "workspaces-b"}
    hosts = {effective_env(services[n])["CODEXFLOW_WORKER_HOST"] for n in ("worker", "worker-b")}
    assert len(hosts) == 2, "two machines need two identities"
    assert services["worker-b"]["profiles"] == ["two-hosts"]
    assert services["worker-b"]["security_opt"] == services["worker"]["security_opt"]


def test_the_worker_gets_exactly_what_bubblewrap_needs(
    services: dict[str, dict[str, Any]],
) -> None:
    """No capability, no new privileges, AppArmor off (it forbids every mount), and a seccomp
    profile that is Docker's blocklist minus the calls bubblewrap makes."""
    worker = services["worker"]
    assert (
        worker["cap_drop"] == ["ALL"] and "cap_add" not in worker and not worker.get("privileged")
    )
    options = worker["security_opt"]
    assert {"apparmor=unconfined", "no-new-privileges:true"} <= set(options)
    [seccomp] = [o.removeprefix("seccomp=") for o in options if o.startswith("seccomp=")]
    profile = json.loads((REPO / seccomp).read_text())
    denied = {name for rule in profile["syscalls"] for name in rule["names"]}
    assert profile["defaultAction"] == "SCMP_ACT_ALLOW"
    assert all(rule["action"] == "SCMP_ACT_ERRNO" for rule in profile["syscalls"])
    assert not denied & {"unshare", "setns", "mount", "umount2", "pivot_root", "clone", "clone3"}
    assert {"kexec_load", "init_module", "bpf", "ptrace", "open_by_handle_at", "keyctl"} <= denied
    assert "security_opt" not in services["api"]  # the API runs no codex: Docker's defaults


def test_codexflow_reaches_the_stacks_temporal_and_postgres(
    services: dict[str, dict[str, Any]],
) -> None:
    postgres = services["postgres"]["environment"]
    temporal = services["temporal"]["environment"]
    for name, service in built_services(services).items():
        env = effective_env(service)
        host, _, port = env["CODEXFLOW_TEMPORAL_ADDRESS"].rpartition(":")
        assert host == "temporal" and port == "7233", name
        url = env["CODEXFLOW_DATABASE_URL"]
        match = re.fullmatch(
            r"postgresql\+asyncpg://([^:]+):(\$\{POSTGRES_PASSWORD[^}]*\})@([^:/]+):5432/(\w+)", url
        )
        assert match, f"{name}: {url}"
        user, _, db_host, database = match.groups()
        assert (user, db_host, database) == (
            postgres["POSTGRES_USER"],
            "postgres",
            postgres["POSTGRES_DB"],
        )
    assert temporal["DB"] == "postgres12"
    assert temporal["POSTGRES_SEEDS"] == "postgres"
    assert temporal["POSTGRES_USER"] == postgres["POSTGRES_USER"]
    for secret in (postgres["POSTGRES_PASSWORD"], temporal["POSTGRES_PWD"]):
        assert secret.startswith("${POSTGRES_PASSWORD:?"), "no password may be written in the file"


def test_the_api_serves_all_interfaces_with_a_required_token(
    services: dict[str, dict[str, Any]],
) -> None:
    api = services["api"]
    assert api["command"] == ["api", "--host", "0.0.0.0", "--port", "8000"]
    assert_real_cli_invocation(api["command"])
    token = api["environment"]["CODEXFLOW_API_TOKEN"]
    assert re.fullmatch(r"\$\{CODEXFLOW_API_TOKEN:\?[^}]+\}", token), (
        "compose must refuse to start the API without a token"
    )
    assert any(str(p).endswith(":8000") for p in api["ports"])


def test_migrations_run_once_before_the_replicas(services: dict[str, dict[str, Any]]) -> None:
    migrate = services["migrate"]
    assert migrate["command"] == ["db", "upgrade"]
    assert_real_cli_invocation(migrate["command"])
    assert depends_on(migrate) == {"postgres": "service_healthy"}


def test_job_scripts_are_mounted_where_their_entrypoints_run_them(
    services: dict[str, dict[str, Any]],
) -> None:
    for name in ("temporal-schema", "temporal-namespace"):
        service = services[name]
        script = service["entrypoint"][-1]
        sources = {target: source for source, target in mounts(service)}
        assert script in sources, f"{name} runs {script}, which it does not mount"
        assert sources[script].startswith("./deploy/docker/")


# --- every CODEXFLOW_ variable is a real setting -------------------------------------------------


def deployment_files() -> list[Path]:
    return [
        COMPOSE,
        DOCKERFILE,
        COMPOSE_ENV_EXAMPLE,
        VM_ENV_EXAMPLE,
        *sorted(SYSTEMD_DIR.glob("*.service")),
        *sorted((DEPLOY / "docker").glob("*.sh")),
    ]


def test_the_checker_knows_settings_from_config() -> None:
    names = setting_env_names()
    assert {"CODEXFLOW_API_TOKEN", "CODEXFLOW_DATABASE_URL", "CODEXFLOW_LOG_FORMAT"} <= names
    assert {
        "OPENAI_API_KEY",
        "CODEXFLOW_OPENAI_API_KEY",
    } <= names  # the alias and the prefixed name
    assert unknown_codexflow_names("CODEXFLOW_API_TOKEN=x CODEXFLOW_API_TOKN=y") == {
        "CODEXFLOW_API_TOKN"
    }


@pytest.mark.parametrize("path", deployment_files(), ids=lambda p: p.name)
def test_every_codexflow_variable_in_deployment_files_is_a_setting(path: Path) -> None:
    assert unknown_codexflow_names(path.read_text()) == set()


def test_deployment_files_do_configure_codexflow() -> None:
    for path in (COMPOSE, DOCKERFILE, COMPOSE_ENV_EXAMPLE, VM_ENV_EXAMPLE):
        assert "CODEXFLOW_" in path.read_text(), path.name


def test_codexflow_containers_get_only_settings(services: dict[str, dict[str, Any]]) -> None:
    names = setting_env_names()
    for name, service in built_services(services).items():
        extra = set(effective_env(service)) - names - {"CODEX_HOME", "PYTHONUNBUFFERED"}
        assert not extra, f"{name} is configured with what config.py does not read: {extra}"


def test_compose_variables_are_settings_and_documented_in_the_example(
    compose: dict[str, Any],
) -> None:
    interpolated = set(re.findall(r"\$\{([A-Z0-9_]+)", COMPOSE.read_text()))
    assert interpolated, "compose takes no variables?"
    assert interpolated <= setting_env_names() | COMPOSE_ONLY_VARIABLES
    documented = set(env_file_assignments(COMPOSE_ENV_EXAMPLE, commented=True))
    assert interpolated - documented == set(), "set in compose, missing from compose.env.example"
    # Pass-through variables (no value) must be settings too.
    for service in compose["services"].values():
        env = service.get("environment") or {}
        for key, value in env.items():
            if value is None:
                assert key in setting_env_names(), key


@pytest.mark.parametrize("example", [VM_ENV_EXAMPLE, COMPOSE_ENV_EXAMPLE], ids=lambda p: p.name)
def test_env_examples_set_only_settings_that_validate(
    example: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = setting_env_names()
    assignments = env_file_assignments(example, commented=True)
    assert set(assignments) - names <= COMPOSE_ONLY_VARIABLES, f"{example.name}: not settings"
    for name in names:
        monkeypatch.delenv(name, raising=False)
    for name, value in assignments.items():
        if name in names and name not in SECRETS:
            monkeypatch.setenv(name, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    # The example's placeholder secrets are refused: a copy left as it is cannot start.
    for name in SECRETS & set(assignments):
        with pytest.raises(ValidationError, match=f"{name} is a placeholder"):
            Settings.model_validate(
                {name.removeprefix("CODEXFLOW_").lower(): SecretStr(assignments[name])}
            )
    if "CODEXFLOW_CORS_ORIGINS" in assignments:
        assert settings.cors_origins == json.loads(assignments["CODEXFLOW_CORS_ORIGINS"])


def test_the_vm_env_example_leaves_per_worker_metrics_to_the_unit() -> None:
    assert "CODEXFLOW_WORKER_METRICS_ADDRESS" not in env_file_assignments(VM_ENV_EXAMPLE)


# --- the Dockerfile ------------------------------------------------------------------------------


def test_dockerfile_bases_are_pinned() -> None:
    stages: set[str] = set()
    bases = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "FROM":
            words = rest.split()
            image = next(w for w in words if not w.startswith("--"))
            if image not in stages:
                bases.append(image)
            if len(words) >= 3 and words[-2].upper() == "AS":
                stages.add(words[-1])
    assert bases, "no FROM"
    for image in bases:
        assert is_pinned(image), f"{image} is not pinned"
    assert any(b.startswith("python:3.11") for b in bases)
    assert any(b.startswith("node:") for b in bases)


def test_dockerfile_installs_from_the_lock_files() -> None:
    instructions = dockerfile_instructions()
    runs = [rest for keyword, rest in instructions if keyword == "RUN"]
    copies = [rest for keyword, rest in instructions if keyword == "COPY"]
    assert not any(re.search(r"\bnpm (install|i)\b", run) for run in runs), (
        "npm ci, not npm install"
    )
    npm_ci = next(i for i, (k, rest) in enumerate(instructions) if k == "RUN" and "npm ci" in rest)
    lock_copy = next(
        i for i, (k, rest) in enumerate(instructions) if k == "COPY" and "package-lock.json" in rest
    )
    assert lock_copy < npm_ci
    assert any(re.search(r"\bpip install\b.*\s(/tmp/src|\.)(\s|$)", run) for run in runs)
    assert any(rest.startswith(". ") for rest in copies)
    lock = json.loads((REPO / "package-lock.json").read_text())
    package = json.loads((REPO / "package.json").read_text())
    codex = package["dependencies"]["@openai/codex"]
    assert lock["packages"]["node_modules/@openai/codex"]["version"] == codex
    assert {
        "node_modules/@openai/codex-linux-x64",
        "node_modules/@openai/codex-linux-arm64",
    } <= set(lock["packages"])


def test_dockerfile_points_codexflow_at_the_native_codex_and_runs_unprivileged() -> None:
    env = dockerfile_env()
    codex_bin = env["CODEXFLOW_CODEX_BIN"]
    runs = " ".join(rest for keyword, rest in dockerfile_instructions() if keyword == "RUN")
    # The link to the native binary (not node_modules/.bin/codex, the Node wrapper).
    assert re.search(
        r"ln -s \"\$\(ls -d [^)]*node_modules/@openai/codex-linux-\*/vendor/\*/bin/codex\)\" "
        + re.escape(codex_bin),
        runs,
    )
    users = [rest for keyword, rest in dockerfile_instructions() if keyword == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    assert env["CODEXFLOW_LOG_FORMAT"] == "json"
    entrypoint = [rest for keyword, rest in dockerfile_instructions() if keyword == "ENTRYPOINT"]
    assert entrypoint and json.loads(entrypoint[-1]) == ["codexflow"]


def test_dockerignore_keeps_host_installs_and_state_out() -> None:
    ignored = {line.strip().rstrip("/") for line in DOCKERIGNORE.read_text().splitlines()}
    assert {"node_modules", ".venv", ".codexflow", ".env", ".git"} <= ignored


# --- the Temporal jobs' scripts, with stand-ins for Temporal's tools -----------------------------


def _stub(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f'#!/bin/sh\necho "{name} $*" >> "$CALLS"\n{body}\n')
    path.chmod(0o755)


def _run_job(script: str, tmp_path: Path, env: dict[str, str]) -> tuple[int, list[str]]:
    calls = tmp_path / "calls"
    result = subprocess.run(
        ["sh", str(DEPLOY / "docker" / script)],
        env={"PATH": f"{tmp_path}:{os.environ['PATH']}", "CALLS": str(calls), **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result.returncode, calls.read_text().splitlines() if calls.exists() else []


SQL_ENV = {"SQL_HOST": "postgres", "SQL_USER": "codexflow", "SQL_PASSWORD": "pw"}


def test_schema_job_creates_then_upgrades_both_databases(tmp_path: Path) -> None:
    _stub(tmp_path, "temporal-sql-tool", "exit 0")
    code, calls = _run_job("temporal-schema.sh", tmp_path, SQL_ENV)
    assert code == 0
    common = "temporal-sql-tool --plugin postgres12 --ep postgres -p 5432 -u codexflow --db"
    assert calls == [
        f"{common} temporal create",
        f"{common} temporal setup-schema -v 0.0",
        f"{common} temporal update-schema -d /etc/temporal/schema/postgresql/v12/temporal/versioned",
        f"{common} temporal_visibility create",
        f"{common} temporal_visibility setup-schema -v 0.0",
        f"{common} temporal_visibility update-schema -d /etc/temporal/schema/postgresql/v12/visibility/versioned",
    ]


def test_schema_job_runs_again_on_existing_databases_but_fails_when_they_are_unreachable(
    tmp_path: Path,
) -> None:
    # Every start after the first: `create` fails because the database exists.
    _stub(tmp_path, "temporal-sql-tool", 'case "$*" in *" create") exit 1;; esac; exit 0')
    code, calls = _run_job("temporal-schema.sh", tmp_path, SQL_ENV)
    assert code == 0 and len(calls) == 6
    _stub(tmp_path, "temporal-sql-tool", "exit 1")
    code, _ = _run_job("temporal-schema.sh", tmp_path, SQL_ENV)
    assert code != 0, "a database it cannot reach must fail the job (and so the stack's start)"


NAMESPACE_ENV = {"TEMPORAL_ADDRESS": "temporal:7233", "NAMESPACE": "default", "RETENTION": "30d"}


def test_namespace_job_creates_a_missing_namespace(tmp_path: Path) -> None:
    _stub(tmp_path, "temporal", 'case "$*" in *"namespace describe"*) exit 1;; esac; exit 0')
    code, calls = _run_job("temporal-namespace.sh", tmp_path, NAMESPACE_ENV)
    assert code == 0
    assert calls[-1] == (
        "temporal operator namespace create --address temporal:7233 --namespace default --retention 30d"
    )


def test_namespace_job_keeps_an_existing_namespace(tmp_path: Path) -> None:
    _stub(tmp_path, "temporal", "exit 0")
    code, calls = _run_job("temporal-namespace.sh", tmp_path, NAMESPACE_ENV)
    assert code == 0
    assert not any("namespace create" in call for call in calls)
    assert calls[0].startswith("temporal operator cluster health --address temporal:7233")
