"""The single-VM install: the nginx site (checked by the real ``nginx -t``, and read for what a user
relies on) and the systemd units (``systemd-analyze verify`` where it works, read always)."""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import pytest

from config import Settings
from tests.helpers.deploy import (
    CODEXFLOW_CLI,
    NGINX_SITE,
    SYSTEMD_DIR,
    VM_ENV_EXAMPLE,
    assert_real_cli_invocation,
    env_file_assignments,
)

HOUR = 3600

# --- nginx ---------------------------------------------------------------------------------------


@dataclass
class Directive:
    name: str
    args: list[str]
    block: list[Directive] | None = None

    def all(self, name: str) -> list[Directive]:
        return [d for d in self.block or [] if d.name == name]

    def one(self, name: str) -> Directive | None:
        found = self.all(name)
        assert len(found) <= 1, f"{name} is set {len(found)} times in one block"
        return found[0] if found else None

    def value(self, name: str) -> list[str]:
        """The arguments of ``name``, which must be set once in this block."""
        found = self.one(name)
        assert found is not None, f"{name} is not set in {self.name} {' '.join(self.args)}"
        return found.args


def _tokens(text: str) -> list[str]:
    """nginx's tokens: words, quoted strings (unquoted), and the punctuation { } ;."""
    tokens = []
    for match in re.finditer(
        r"#[^\n]*|\"((?:\\.|[^\"\\])*)\"|'((?:\\.|[^'\\])*)'|([{};])|([^\s{};#\"']+)", text
    ):
        double, single, punct, word = match.groups()
        if match.group(0).startswith("#"):
            continue
        tokens.append(next(t for t in (double, single, punct, word) if t is not None))
    return tokens


def parse_nginx(text: str) -> Directive:
    """The file as a tree of directives (a root pseudo-block holds the top level)."""
    tokens = _tokens(text)
    position = 0

    def block() -> list[Directive]:
        nonlocal position
        directives: list[Directive] = []
        words: list[str] = []
        while position < len(tokens):
            token = tokens[position]
            position += 1
            if token == ";":
                directives.append(Directive(words[0], words[1:]))
                words = []
            elif token == "{":
                directives.append(Directive(words[0], words[1:], block()))
                words = []
            elif token == "}":
                assert not words, f"unterminated directive {words}"
                return directives
            else:
                words.append(token)
        assert not words, f"unterminated directive {words}"
        return directives

    return Directive("root", [], block())


def seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": HOUR, "d": 86400, "w": 604800}
    match = re.fullmatch(r"(\d+)(ms|s|m|h|d|w)?", value)
    assert match, f"not an nginx time: {value}"
    return int(match.group(1)) * units[match.group(2) or "s"]


def size_bytes(value: str) -> int:
    match = re.fullmatch(r"(\d+)([kKmMgG])?", value)
    assert match, f"not an nginx size: {value}"
    return (
        int(match.group(1))
        * {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}[(match.group(2) or "").lower()]
    )


@dataclass
class Site:
    root: Directive
    http: Directive = field(init=False)
    https: Directive = field(init=False)

    def __post_init__(self) -> None:
        servers = self.root.all("server")
        assert len(servers) == 2, "one HTTP (redirect) and one HTTPS server"
        self.https = next(s for s in servers if any("ssl" in d.args for d in s.all("listen")))
        self.http = next(s for s in servers if s is not self.https)

    def location(self, uri: str, server: Directive | None = None) -> Directive:
        """The location nginx picks for ``uri``: exact, then the longest prefix unless a regex
        (in file order) matches, unless that prefix is ``^~``."""
        locations = (server or self.https).all("location")
        for loc in locations:
            if loc.args[0] == "=" and loc.args[1] == uri:
                return loc
        prefixes = [
            loc
            for loc in locations
            if (len(loc.args) == 1 or loc.args[0] == "^~") and uri.startswith(loc.args[-1])
        ]
        best = max(prefixes, key=lambda loc: len(loc.args[-1]), default=None)
        if best is not None and best.args[0] == "^~":
            return best
        for loc in locations:
            if loc.args[0] in ("~", "~*"):
                flags = re.IGNORECASE if loc.args[0] == "~*" else 0
                if re.search(loc.args[1], uri, flags):
                    return loc
        assert best is not None, f"no location serves {uri}"
        return best

    def timeout(self, loc: Directive, name: str) -> float:
        found = self.effective(loc, name)
        assert found, f"{name} is not set for {' '.join(loc.args)}"
        return seconds(found[0])

    def effective(self, loc: Directive, name: str) -> list[str] | None:
        """A directive's value in a location, inherited from the server when not set there."""
        for scope in (loc, self.https):
            found = scope.one(name)
            if found is not None:
                return found.args
        return None

    def headers(self, loc: Directive) -> dict[str, str]:
        """proxy_set_header as nginx applies it: a location with any replaces the server's."""
        own = loc.all("proxy_set_header")
        chosen = own or self.https.all("proxy_set_header")
        return {d.args[0].lower(): d.args[1] for d in chosen}


@pytest.fixture(scope="module")
def site() -> Site:
    return Site(parse_nginx(NGINX_SITE.read_text()))


def nginx_binary() -> str:
    found = shutil.which("nginx") or (
        "/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None
    )
    if not found:
        pytest.fail(
            "nginx is missing: `make test` installs it (its system-packages target runs "
            "apt-get install nginx); or apt-get install -y nginx"
        )
    return found


def test_nginx_accepts_the_site(tmp_path: Path) -> None:
    nginx = nginx_binary()
    if not shutil.which("openssl"):
        pytest.fail("openssl is missing: `make test` installs it (its system-packages target)")
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
         "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2",
         "-subj", "/CN=codexflow.example.com"],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    text = NGINX_SITE.read_text()
    text, certs = re.subn(r"(?m)^(\s*ssl_certificate)\s+\S+;", rf"\1 {cert};", text)
    text, keys = re.subn(r"(?m)^(\s*ssl_certificate_key)\s+\S+;", rf"\1 {key};", text)
    assert (certs, keys) == (1, 1), "the site names one certificate and one key"
    text = text.replace("/var/log/nginx/", f"{tmp_path}/")
    (tmp_path / "site.conf").write_text(text)
    temp = tmp_path / "temp"
    temp.mkdir()
    (tmp_path / "nginx.conf").write_text(
        f"pid {tmp_path}/nginx.pid;\n"
        f"error_log {tmp_path}/error.log;\n"
        "events {}\n"
        "http {\n"
        + "".join(
            f"    {kind}_temp_path {temp}/{kind};\n"
            for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        + f"    access_log {tmp_path}/access.log;\n"
        f"    include {tmp_path}/site.conf;\n"
        "}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-c", str(tmp_path / "nginx.conf"), "-p", str(tmp_path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "test is successful" in result.stderr


def test_http_redirects_to_https_and_serves_certbot(site: Site) -> None:
    assert {d.args[0] for d in site.http.all("listen")} >= {"80", "[::]:80"}
    redirect = site.location("/api/projects/", site.http)
    assert redirect.value("return") == ["301", "https://$host$request_uri"]
    acme = site.location("/.well-known/acme-challenge/token", site.http)
    assert acme.one("root") is not None and acme.one("return") is None
    assert site.http.value("server_name") == site.https.value("server_name")


def test_https_uses_modern_tls_and_the_certbot_certificate(site: Site) -> None:
    listens = [d.args for d in site.https.all("listen")]
    assert ["443", "ssl", "http2"] in listens and ["[::]:443", "ssl", "http2"] in listens
    (host,) = site.https.value("server_name")
    live = f"/etc/letsencrypt/live/{host}/"
    assert site.https.value("ssl_certificate") == [f"{live}fullchain.pem"]
    assert site.https.value("ssl_certificate_key") == [f"{live}privkey.pem"]
    assert set(site.https.value("ssl_protocols")) <= {"TLSv1.2", "TLSv1.3"}
    hsts = [
        d.args for d in site.https.all("add_header") if d.args[0] == "Strict-Transport-Security"
    ]
    assert hsts and "always" in hsts[0]


PROXIED = [
    "/api/projects/",
    "/api/sessions/",
    "/api/sessions/s-1",
    "/api/sessions/s-1/events",
    "/api/files/upload/p-1",
    "/api/health",
    "/ws/session/s-1",
    "/ws/terminal/t-1",
    "/docs",
    "/docs/oauth2-redirect",
    "/redoc",
    "/openapi.json",
]


@pytest.mark.parametrize("uri", PROXIED)
def test_routes_reach_the_api_on_loopback_with_their_path(site: Site, uri: str) -> None:
    loc = site.location(uri)
    # No URI part after the upstream: nginx passes the path unchanged.
    assert site.effective(loc, "proxy_pass") == ["http://codexflow_api"], uri
    (upstream,) = [u for u in site.root.all("upstream") if u.args == ["codexflow_api"]]
    assert [d.args[0] for d in upstream.all("server")] == ["127.0.0.1:8000"]
    assert site.effective(loc, "proxy_http_version") == ["1.1"]  # keepalive, streaming
    headers = site.headers(loc)
    assert headers.get("host") == "$host"
    assert headers.get("x-forwarded-proto") == "$scheme"
    assert headers.get("x-forwarded-for") == "$proxy_add_x_forwarded_for"


def test_the_review_console_is_served(site: Site) -> None:
    for uri in ("/", "/console/console.js", "/console/console.css"):
        assert site.effective(site.location(uri), "proxy_pass") == ["http://codexflow_api"], uri


@pytest.mark.parametrize("uri", ["/metrics", "/api", "/temporal/", "/.env", "/index.html"])
def test_nothing_else_is_public(site: Site, uri: str) -> None:
    loc = site.location(uri)
    assert site.effective(loc, "proxy_pass") is None, f"{uri} reaches the API"
    assert loc.value("return") == ["404"]


def test_server_sent_events_are_unbuffered_with_long_timeouts(site: Site) -> None:
    sse = site.location("/api/sessions/s-1/events")
    assert sse is not site.location("/api/sessions/s-1"), "plain API calls may buffer"
    assert sse.value("proxy_buffering") == ["off"]
    assert sse.value("proxy_cache") == ["off"]
    assert site.timeout(sse, "proxy_read_timeout") >= HOUR
    assert site.headers(sse).get("connection") != "upgrade"


def test_a_chat_turn_that_runs_codex_gets_a_stream_timeout(site: Site) -> None:
    chat = site.location("/api/agents/chat")
    assert chat is not site.location("/api/agents"), "other calls keep nginx's default"
    assert site.timeout(chat, "proxy_read_timeout") >= HOUR
    assert site.effective(chat, "proxy_pass") == ["http://codexflow_api"]


def test_websockets_are_upgraded_with_long_timeouts(site: Site) -> None:
    ws = site.location("/ws/session/s-1")
    assert ws is site.location("/ws/terminal/t-1")
    headers = site.headers(ws)
    assert headers.get("upgrade") == "$http_upgrade"
    connection = headers.get("connection", "")
    if connection.startswith("$"):
        (mapping,) = [m for m in site.root.all("map") if m.args == ["$http_upgrade", connection]]
        values = {d.name: d.args for d in mapping.block or []}
        assert values["default"] == ["upgrade"]
    else:
        assert connection.lower() == "upgrade"
    assert site.timeout(ws, "proxy_read_timeout") >= HOUR


def test_uploads_fit_through_the_proxy(site: Site) -> None:
    limit = size_bytes(site.https.value("client_max_body_size")[0])
    assert limit > Settings(_env_file=None).max_upload_bytes  # type: ignore[call-arg]
    upload = site.location("/api/files/upload/p-1")
    assert upload.value("proxy_request_buffering") == ["off"]


def test_access_logs_leave_tokens_in_query_strings_out(site: Site) -> None:
    (access_log,) = site.https.all("access_log")
    path, log_format = access_log.args
    (fmt,) = [f for f in site.root.all("log_format") if f.args[0] == log_format]
    line = " ".join(fmt.args[1:])
    for leaky in ("$request ", "$request_uri", "$args", "$query_string", "$arg_token"):
        assert leaky not in f"{line} ", f"the access log records {leaky.strip()}"
    assert "$uri" in line


def test_the_parser_reads_what_nginx_reads() -> None:
    tree = parse_nginx("a 1; # c\nb 'x y' \"z\" { c; } d '';")
    assert [(d.name, d.args) for d in tree.block or []] == [
        ("a", ["1"]),
        ("b", ["x y", "z"]),
        ("d", [""]),
    ]
    with pytest.raises(AssertionError):
        parse_nginx("a 1")
    assert seconds("24h") == 86400 and seconds("90") == 90 and size_bytes("60m") == 60 * 1024**2


# --- systemd -------------------------------------------------------------------------------------


Unit = dict[str, list[tuple[str, str]]]
APP = "/opt/codexflow/.venv/bin/codexflow"
STATE = PurePosixPath("/var/lib/codexflow")


def parse_unit(path: Path) -> Unit:
    """Sections and their (key, value) lines in order; systemd allows repeated keys."""
    unit: Unit = {}
    section = None
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            section = line.strip("[]")
            assert section not in unit, f"{path.name}: [{section}] twice"
            unit[section] = []
            continue
        assert section, f"{path.name}: {line} outside a section"
        assert not line.endswith("\\"), f"{path.name}: keep {line} on one line"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not key=value: {line}"
        unit[section].append((key.strip(), value.strip()))
    return unit


def values(unit: Unit, section: str, key: str) -> list[str]:
    return [v for k, v in unit.get(section, []) if k == key]


def value(unit: Unit, section: str, key: str) -> str | None:
    found = values(unit, section, key)
    assert len(found) <= 1, f"{key} set {len(found)} times"
    return found[0] if found else None


def unit_files() -> dict[str, Path]:
    return {path.name: path for path in sorted(SYSTEMD_DIR.glob("*.service"))}


def timespan(text: str) -> float:
    match = re.fullmatch(r"(\d+)\s*(s|sec|min|m)?", text)
    assert match, f"not a simple timespan: {text}"
    return int(match.group(1)) * (60 if match.group(2) in ("min", "m") else 1)


@pytest.fixture(scope="module")
def units() -> dict[str, Unit]:
    return {name: parse_unit(path) for name, path in unit_files().items()}


def test_the_units_are_there(units: dict[str, Unit]) -> None:
    assert set(units) == {
        "codexflow-temporal.service",
        "codexflow-migrate.service",
        "codexflow-api.service",
        "codexflow-worker@.service",
    }


def test_every_unit_runs_a_real_codexflow_command(units: dict[str, Unit]) -> None:
    commands = {}
    for name, unit in units.items():
        exec_start = value(unit, "Service", "ExecStart")
        assert exec_start, f"{name} has no ExecStart"
        program, *args = exec_start.split()
        assert program == APP, f"{name} runs {program}, not the installed codexflow"
        assert_real_cli_invocation(args)
        commands[name] = args
    assert commands["codexflow-migrate.service"] == ["db", "upgrade"]
    assert commands["codexflow-worker@.service"] == ["worker"]
    assert commands["codexflow-api.service"] == ["api", "--host", "127.0.0.1", "--port", "8000"]
    server = commands["codexflow-temporal.service"]
    assert server[0] == "server" and "--headless" not in server
    db_file = PurePosixPath(server[server.index("--db-file") + 1])
    assert STATE in db_file.parents, "the dev server's SQLite file belongs in the state directory"


def test_units_share_one_environment_file_user_and_state_directory(units: dict[str, Unit]) -> None:
    env = env_file_assignments(VM_ENV_EXAMPLE)
    for name, unit in units.items():
        assert value(unit, "Service", "EnvironmentFile") == "/etc/codexflow/codexflow.env", name
        assert value(unit, "Service", "User") == "codexflow", name
        assert value(unit, "Service", "WorkingDirectory") == str(STATE), name
        assert value(unit, "Service", "NoNewPrivileges") == "yes", name
        assert value(unit, "Service", "PrivateTmp") == "yes", name
        assert value(unit, "Service", "ProtectSystem") == "strict", name
        writable = [
            PurePosixPath(p) for v in values(unit, "Service", "ReadWritePaths") for p in v.split()
        ]
        assert writable == [STATE], f"{name} may write {writable}"
        for setting in ("CODEXFLOW_WORKSPACES_ROOT", "CODEXFLOW_CODEX_HOME"):
            path = PurePosixPath(env[setting])
            assert STATE in path.parents, f"{setting}={path} is read-only for {name}"


def test_daemons_restart_and_start_at_boot_after_the_migrations(units: dict[str, Unit]) -> None:
    for name, unit in units.items():
        if value(unit, "Service", "Type") == "oneshot":
            assert name == "codexflow-migrate.service"
            assert "Install" not in unit, "started by the units that Require= it"
            continue
        assert value(unit, "Service", "Restart") == "on-failure", name
        assert values(unit, "Install", "WantedBy") == ["multi-user.target"], name
    for name in ("codexflow-api.service", "codexflow-worker@.service"):
        unit = units[name]
        assert "codexflow-migrate.service" in " ".join(values(unit, "Unit", "Requires")), name
        after = " ".join(values(unit, "Unit", "After")).split()
        assert {"codexflow-migrate.service", "codexflow-temporal.service"} <= set(after), name


def test_the_worker_stops_gracefully(units: dict[str, Unit]) -> None:
    worker = units["codexflow-worker@.service"]
    # mixed: SIGTERM to the worker, which stops codex itself; control-group would signal codex
    # at the same moment and fail the task under the worker.
    assert value(worker, "Service", "KillMode") == "mixed"
    assert timespan(value(worker, "Service", "TimeoutStopSec") or "0") >= 60
    assert value(units["codexflow-temporal.service"], "Service", "KillMode") == "control-group"


def test_the_worker_leaves_codexs_sandbox_room(units: dict[str, Unit]) -> None:
    worker = units["codexflow-worker@.service"]
    keys = {k for k, _ in worker["Service"]}
    # bubblewrap: user/mount/net namespaces, its own seccomp filter; tools may JIT or need ptys.
    forbidden = {
        "RestrictNamespaces",
        "PrivateUsers",
        "SystemCallFilter",
        "MemoryDenyWriteExecute",
        "PrivateDevices",
        "ProtectClock",
        "DevicePolicy",
        "DeviceAllow",
    }
    assert not keys & forbidden, f"the worker sets {keys & forbidden}"
    families = value(worker, "Service", "RestrictAddressFamilies")
    assert families is None or "AF_NETLINK" in families.split()


def test_worker_instances_serve_metrics_on_their_own_port(units: dict[str, Unit]) -> None:
    worker = units["codexflow-worker@.service"]
    assert "CODEXFLOW_WORKER_METRICS_ADDRESS=127.0.0.1:%i" in values(
        worker, "Service", "Environment"
    )


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    assert shutil.which("systemd-analyze"), (
        "systemd-analyze is missing: `make test` installs it (the systemd package)"
    )
    assert CODEXFLOW_CLI.exists(), f"{CODEXFLOW_CLI}: run make setup"
    units_dir = tmp_path / "units"
    units_dir.mkdir()
    for name, path in unit_files().items():
        # Verify checks that ExecStart exists: point it at this checkout's codexflow.
        text = path.read_text().replace(APP, str(CODEXFLOW_CLI))
        (units_dir / name).write_text(text)
    targets = [str(units_dir / name.replace("@.service", "@9464.service")) for name in unit_files()]
    result = subprocess.run(
        ["systemd-analyze", "verify", *targets], capture_output=True, text=True, timeout=120
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    # It only warns (exit 0) about unknown keys and values it cannot parse: those fail here.
    assert not re.search(r"Unknown|Failed|ignoring|not executable|Invalid", output), output
