"""The deployment in deploy/ holds together: the compose file, its .env.example and site config,
the container image build file, the systemd units and install script, and the operations page.

Everything is checked against the real thing where it can run here: the site config through
facmon's own loader and ``facmon config check``, every facmon command the files run through the
real CLI (``facmon ... --help`` and its parser), the compose file through docker-compose's own
validation, the broker config and start script on a real Mosquitto, the units through
``systemd-analyze verify``, the install script through ``bash -n`` and shellcheck, and the
health check's URL on a real facmon app. No container runs here (no Docker daemon), so images,
volumes and health checks are checked for structure, not run.
"""

from __future__ import annotations

import argparse
import configparser
import functools
import inspect
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
import yaml
from paho.mqtt.enums import CallbackAPIVersion

from facmon.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
COMPOSE = DEPLOY / "compose.yaml"
ENV_EXAMPLE = DEPLOY / ".env.example"
SITE = DEPLOY / "site.yaml"
DOCKERFILE = DEPLOY / "Dockerfile"
UNITS = DEPLOY / "systemd"
OPERATIONS = DEPLOY / "OPERATIONS.md"

# Services whose image is built from deploy/Dockerfile, i.e. run the facmon command.
FACMON_SERVICES = ("facmon", "facmon-api", "facmon-influx-init")
LONG_RUNNING = ("mosquitto", "influxdb", "postgres", "grafana", "facmon", "facmon-api")
# Compose interpolation: ${NAME}, ${NAME:-default}, ${NAME:?error}; $$ escapes a literal $.
_COMPOSE_VAR = re.compile(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
_SECRET_NAME = re.compile(r"PASSWORD|TOKEN|SECRET")


def facmon_exe() -> str:
    exe = Path(sys.executable).with_name("facmon")
    found = str(exe) if exe.exists() else shutil.which("facmon")
    assert found, "the facmon console script is not installed (pip install -e .)"
    return found


def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return data


def services() -> dict[str, dict[str, Any]]:
    svcs: dict[str, dict[str, Any]] = compose()["services"]
    return svcs


def env_example() -> dict[str, str]:
    out: dict[str, str] = {}
    for n, line in enumerate(ENV_EXAMPLE.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        assert sep and re.fullmatch(r"[A-Z_][A-Z0-9_]*", name), f".env.example:{n}: {line!r}"
        assert name not in out, f".env.example:{n}: {name} given twice"
        out[name] = value
    return out


def filled_env_file(tmp_path: Path) -> Path:
    """.env.example with every empty secret filled, as an operator's deploy/.env would be."""
    lines = []
    for name, value in env_example().items():
        lines.append(f"{name}={value or 'test-' + name.lower().replace('_', '-')}")
    path = tmp_path / "deploy.env"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def depends(svc: Mapping[str, Any]) -> dict[str, str]:
    dep = svc.get("depends_on") or {}
    if isinstance(dep, list):
        return dict.fromkeys(dep, "service_started")
    return {name: (spec or {}).get("condition", "service_started") for name, spec in dep.items()}


def healthcheck_enabled(svc: Mapping[str, Any]) -> bool:
    hc = svc.get("healthcheck")
    return isinstance(hc, dict) and not hc.get("disable") and bool(hc.get("test"))


def subcommand_path(words: list[str]) -> tuple[list[str], argparse.ArgumentParser]:
    """The longest run of leading ``words`` that names (nested) facmon subcommands, and the
    parser of the last one. Fails when the first word is not a facmon subcommand."""
    parser = build_parser()
    path: list[str] = []
    for word in words:
        subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if not subs or word not in subs[0].choices:
            break
        parser = subs[0].choices[word]
        path.append(word)
    assert path, f"'facmon {' '.join(words)}': {words[0]!r} is not a facmon subcommand"
    return path, parser


@functools.cache
def help_answers(path: tuple[str, ...]) -> str:
    """stderr of ``facmon PATH --help`` run as a process, or "" when it exits 0."""
    proc = subprocess.run(
        [facmon_exe(), *path, "--help"], capture_output=True, text=True, timeout=60
    )
    return "" if proc.returncode == 0 and "usage: facmon" in proc.stdout else proc.stderr or "?"


def assert_real_command(args: list[str]) -> None:
    """``facmon ARGS`` is a command the CLI accepts: the subcommand answers ``--help`` as a real
    process, and the whole argument list parses with the CLI's own parser."""
    path, _ = subcommand_path(args)
    problem = help_answers(tuple(path))
    assert not problem, f"facmon {' '.join(path)} --help: {problem}"
    try:
        ns = build_parser().parse_args(args)
    except SystemExit as e:  # argparse reports the problem on stderr
        raise AssertionError(f"facmon {' '.join(args)} does not parse (exit {e.code})") from None
    assert callable(getattr(ns, "func", None)), f"facmon {' '.join(args)} runs nothing"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# -- compose ----------------------------------------------------------------------------------


def test_compose_has_every_part_of_the_deployment() -> None:
    assert set(services()) == {*LONG_RUNNING, "facmon-influx-init"}
    for name in FACMON_SERVICES:
        build = services()[name]["build"]
        assert (REPO / build["dockerfile"]).resolve() == DOCKERFILE
        assert (DEPLOY / build["context"]).resolve() == REPO


def test_every_service_has_a_health_check_or_waits_for_one() -> None:
    svcs = services()
    for name, svc in svcs.items():
        deps = depends(svc)
        assert healthcheck_enabled(svc) or any(
            c in ("service_healthy", "service_completed_successfully") for c in deps.values()
        ), f"service {name}: no health check and waits for none"
        if name in LONG_RUNNING:
            assert healthcheck_enabled(svc), f"service {name} runs for good: it needs a check"
        for dep, condition in deps.items():
            assert dep in svcs, f"service {name} depends on unknown service {dep}"
            assert condition in ("service_healthy", "service_completed_successfully"), (
                f"service {name} starts when {dep} merely started ({condition})"
            )
            if condition == "service_healthy":
                assert healthcheck_enabled(svcs[dep]), f"{name} waits for {dep}'s missing check"
            else:
                assert svcs[dep].get("restart") == "no", f"{dep} is awaited as a one-shot"
    facmon = depends(svcs["facmon"])
    assert facmon == {
        "mosquitto": "service_healthy",
        "influxdb": "service_healthy",
        "postgres": "service_healthy",
        "facmon-influx-init": "service_completed_successfully",
    }


def test_restart_policies() -> None:
    for name, svc in services().items():
        expected = "unless-stopped" if name in LONG_RUNNING else "no"
        assert svc.get("restart") == expected, f"service {name}: restart {svc.get('restart')!r}"


def test_stop_grace_covers_the_outbox_flush() -> None:
    """SIGTERM makes facmon flush the outbox for up to DurableWriter.close's flush_timeout;
    compose must not SIGKILL it before that (its default grace is 10 s)."""
    from store.outbox import DurableWriter

    flush = inspect.signature(DurableWriter.close).parameters["flush_timeout"].default
    svc = services()["facmon"]
    assert svc["stop_signal"] == "SIGTERM"
    grace = re.fullmatch(r"(\d+)s", svc["stop_grace_period"])
    assert grace and int(grace.group(1)) >= flush + 10


def test_volumes_are_declared_and_bind_mounts_exist() -> None:
    declared = set(compose().get("volumes") or {})
    used: set[str] = set()
    for name, svc in services().items():
        for spec in svc.get("volumes") or []:
            source = spec.split(":")[0]
            if source.startswith((".", "/")):
                path = (DEPLOY / source).resolve()
                assert path.exists(), f"service {name} mounts {source}, which is not in the repo"
            else:
                assert source in declared, f"service {name}: volume {source} is not declared"
                used.add(source)
    assert used == declared, f"declared but unused volumes: {declared - used}"
    # State that must survive a container's replacement lives in a named volume.
    for name, target in {
        "mosquitto": "/mosquitto/data",
        "influxdb": "/var/lib/influxdb2",
        "postgres": "/var/lib/postgresql/data",
        "grafana": "/var/lib/grafana",
        "facmon": "/var/lib/facmon",
    }.items():
        mounts = [v.split(":") for v in services()[name]["volumes"]]
        assert any(m[1] == target and m[0] in declared for m in mounts), f"{name}: {target}"


def test_every_variable_is_in_env_example_and_secrets_are_required() -> None:
    text = COMPOSE.read_text(encoding="utf-8")
    example = env_example()
    refs = list(_COMPOSE_VAR.finditer(text))
    names = {m.group(1) for m in refs}
    missing = sorted(names - set(example))
    assert not missing, f"compose.yaml uses variables .env.example does not list: {missing}"
    # COMPOSE_PROJECT_NAME is read by compose itself, not through interpolation.
    unused = sorted(set(example) - names - {"COMPOSE_PROJECT_NAME"})
    assert not unused, f".env.example lists variables compose.yaml does not use: {unused}"
    for m in refs:
        name, op = m.group(1), m.group(2)
        if _SECRET_NAME.search(name):
            # No secret in the example, and compose refuses to start without one.
            assert example[name] == "", f".env.example must not hold a value for {name}"
            assert op == ":?", f"{name} is a secret: reference it as ${{{name}:?...}}"


def test_facmon_service_commands_are_real_cli_commands() -> None:
    for name in FACMON_SERVICES:
        command = services()[name]["command"]
        assert isinstance(command, list), f"{name}: give the command as a list"
        assert_real_command(command)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for v in node.values():
            yield from _strings(v)
    elif isinstance(node, list):
        for v in node:
            yield from _strings(v)


def test_containers_get_every_variable_the_site_config_needs() -> None:
    site = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    needed = {
        m.group(1)
        for value in _strings(site)
        for m in re.finditer(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)\}", value)
    }
    assert needed, "deploy/site.yaml takes its secrets from the environment"
    for name in FACMON_SERVICES:
        env = services()[name]["environment"]
        assert needed <= set(env), f"{name} lacks {sorted(needed - set(env))}"
        mounts = services()[name]["volumes"]
        assert "./site.yaml:/etc/facmon/site.yaml:ro" in mounts
    # FACMON_* variables handed to facmon must be ones facmon reads.
    code = "\n".join(
        p.read_text(encoding="utf-8") for d in ("facmon", "api") for p in (REPO / d).rglob("*.py")
    )
    for var in services()["facmon"]["environment"]:
        if var.startswith("FACMON_"):
            assert var in code, f"{var} is set for facmon but no facmon code reads it"


def test_health_checks_pass_against_a_real_facmon_api(tmp_path: Path) -> None:
    """The compose and image health check commands, run as written (only the port moved to a
    free one), against a real facmon API served by uvicorn on loopback: /health answers
    without a token. Both target api.port of deploy/site.yaml, the port compose publishes."""
    import threading

    import uvicorn

    from alerts.tickets import TicketStore
    from api import create_app
    from config import load_config_text
    from facmon.runtime import bind_socket
    from store.embedded import EmbeddedStore

    compose_check = services()["facmon"]["healthcheck"]["test"]
    assert compose_check[0] == "CMD"
    image = [rest for word, rest in dockerfile_instructions(DOCKERFILE.read_text("utf-8"))]
    image_check = next(
        json.loads(r.split("CMD", 1)[1]) for r in image if "urlopen" in r and "CMD [" in r
    )
    for check in (compose_check[1:], image_check):
        assert "http://127.0.0.1:8000/health" in " ".join(check)
    site = yaml.safe_load(SITE.read_text(encoding="utf-8"))
    assert site["api"]["port"] == 8000
    assert any(p.endswith(":8000") for p in services()["facmon-api"]["ports"])

    cfg = load_config_text(
        "site: {id: s, name: S}\nbuildings: [{id: b, name: B, floor_area_m2: 1, floors: 1}]\n"
    )
    store = EmbeddedStore(tmp_path / "r.duckdb")
    tickets = TicketStore(f"sqlite:///{tmp_path / 't.db'}")
    app = create_app(cfg, store, tickets, tokens={"t": "admin"})
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.02)
        for check in (compose_check[1:], image_check):
            argv = [a.replace("127.0.0.1:8000", f"127.0.0.1:{port}") for a in check]
            assert argv[0] == "python"
            proc = subprocess.run(
                [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30
            )
            assert proc.returncode == 0, proc.stderr
        # And the check fails when nothing answers (the server is gone).
        server.should_exit = True
        thread.join(10)
        proc = subprocess.run(
            [sys.executable, *argv[1:]], capture_output=True, text=True, timeout=30
        )
        assert proc.returncode != 0
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        tickets.close()
        store.close()


def test_grafana_gets_what_its_provisioning_files_read() -> None:
    """deploy/grafana/ is written by `facmon grafana export`; the grafana service must give
    its datasource every ${VAR} it reads and mount the dashboards where its providers look."""
    provisioning = DEPLOY / "grafana" / "provisioning"
    files = sorted(provisioning.rglob("*.yaml"))
    if not files:
        pytest.fail("deploy/grafana/provisioning holds no files (run 'facmon grafana export')")
    svc = services()["grafana"]
    env = set(svc["environment"])
    mounts = dict(v.split(":")[:2] for v in svc["volumes"])
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
    boards = mounts["./grafana/dashboards"]
    for f in files:
        text = f.read_text(encoding="utf-8")
        for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text):
            assert name in env, f"{f.relative_to(DEPLOY)} reads {name}; grafana lacks it"
        for provider in (yaml.safe_load(text) or {}).get("providers") or []:
            path = provider["options"]["path"]
            assert path.startswith(boards + "/"), f"{f.name}: {path} is not under {boards}"
            assert (DEPLOY / "grafana" / "dashboards" / path[len(boards) + 1 :]).is_dir()


def _compose_cli() -> list[str] | None:
    if shutil.which("docker"):
        v2 = subprocess.run(["docker", "compose", "version"], capture_output=True, timeout=30)
        if v2.returncode == 0:
            return ["docker", "compose"]
    exe = shutil.which("docker-compose")
    return [exe] if exe else None


def test_compose_file_validates_with_docker_compose(tmp_path: Path) -> None:
    cli = _compose_cli()
    if cli is None:
        pytest.fail("neither 'docker compose' nor docker-compose is installed (make system-deps)")
    env_file = filled_env_file(tmp_path)
    proc = subprocess.run(
        [*cli, "-f", str(COMPOSE), "--env-file", str(env_file), "config", "--format", "json"]
        if cli[0] == "docker"
        else [*cli, "-f", str(COMPOSE), "--env-file", str(env_file), "config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rendered = json.loads(proc.stdout) if cli[0] == "docker" else yaml.safe_load(proc.stdout)
    env = rendered["services"]["facmon"]["environment"]
    assert env["INFLUX_TOKEN"] == "test-influx-token"
    assert env["TICKETS_DB_USER"] == env_example()["TICKETS_DB_USER"]
    # Without the secrets compose refuses to start, naming what is missing.
    proc = subprocess.run(
        [*cli, "-f", str(COMPOSE), "--env-file", str(ENV_EXAMPLE), "config"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "in deploy/.env" in proc.stderr


def test_site_config_loads_with_facmons_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    from config import load_config
    from facmon.checks import CHECKS

    env = {
        "INFLUX_ORG": "facilities",
        "INFLUX_BUCKET": "facmon",
        "INFLUX_TOKEN": "tok",
        "TICKETS_DB_USER": "facmon",
        "TICKETS_DB_PASSWORD": "0123abcd",
        "TICKETS_DB_NAME": "facmon",
        "MQTT_USERNAME": "facmon",
        "MQTT_PASSWORD": "pw",
    }
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    cfg = load_config(SITE, checks=CHECKS)

    # Every service is addressed by its compose name and container port.
    assert cfg.storage.backend == "influxdb" and cfg.storage.influxdb is not None
    assert cfg.storage.influxdb.url == "http://influxdb:8086"
    assert cfg.storage.influxdb.org == "facilities"
    assert cfg.storage.influxdb.token is not None
    assert cfg.storage.influxdb.token.get_secret_value() == "tok"
    assert cfg.tickets_url == "postgresql+psycopg://facmon:0123abcd@postgres:5432/facmon"
    assert cfg.mqtt is not None and cfg.mqtt.host == "mosquitto" and cfg.mqtt.port == 1883
    assert (cfg.api.host, cfg.api.port) == ("0.0.0.0", 8000)
    assert cfg.data_dir == Path("/var/lib/facmon")
    assert "facmon-data:/var/lib/facmon" in services()["facmon"]["volumes"]
    for name in ("influxdb", "postgres", "mosquitto"):
        assert name in services()

    # The same through the command an operator runs, as a real process.
    proc = subprocess.run(
        [facmon_exe(), "config", "check", str(SITE)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert proc.returncode == 0, proc.stderr
    assert "OK" in proc.stdout
    # Without the environment it names every missing variable.
    bare = {k: v for k, v in os.environ.items() if k not in env}
    proc = subprocess.run(
        [facmon_exe(), "config", "check", str(SITE)],
        capture_output=True,
        text=True,
        timeout=120,
        env=bare,
    )
    assert proc.returncode == 1
    for name in env:
        assert f"environment variable {name} is not set" in proc.stderr


def _entrypoint_script(svc: Mapping[str, Any]) -> str:
    entry = svc["entrypoint"]
    assert entry[:2] == ["/bin/sh", "-ec"]
    script: str = entry[2]
    return script.replace("$$", "$")  # compose's escape for a literal $


@pytest.mark.skipif(not Path("/usr/sbin/mosquitto").exists(), reason="needs Debian's mosquitto")
def test_broker_config_and_start_script_on_a_real_mosquitto() -> None:
    """deploy/mosquitto/mosquitto.conf and the compose service's start script, run on a real
    Mosquitto with the container paths moved to a temporary directory and the listener on a
    free loopback port: facmon's user gets in, anonymous and wrong passwords do not, and the
    health check command passes."""
    if os.geteuid() != 0:
        pytest.fail("the start script chowns the password file to 'mosquitto': run as root")
    try:
        import pwd

        pwd.getpwnam("mosquitto")
    except KeyError:
        pytest.fail("no 'mosquitto' user: install Debian's mosquitto (make system-deps)")
    # Mosquitto drops to its own user: pytest's tmp_path sits under a 0700 directory it could
    # not enter, so the broker's files go to a directory of their own.
    with tempfile.TemporaryDirectory(prefix="facmon-deploy-mqtt-") as d:
        os.chmod(d, 0o755)
        _run_broker(Path(d) / "mosquitto")


def _run_broker(root: Path) -> None:
    (root / "config").mkdir(parents=True)
    (root / "data").mkdir()
    shutil.chown(root / "data", "mosquitto")
    port = free_port()
    conf = (DEPLOY / "mosquitto" / "mosquitto.conf").read_text(encoding="utf-8")
    assert re.search(r"^listener 1883$", conf, re.M)
    conf = conf.replace("/mosquitto/", f"{root}/")
    conf = re.sub(r"^listener 1883$", f"listener {port} 127.0.0.1", conf, flags=re.M)
    (root / "config" / "mosquitto.conf").write_text(conf, encoding="utf-8")
    svc = services()["mosquitto"]
    script = _entrypoint_script(svc).replace("/mosquitto/", f"{root}/")
    script = script.replace("exec mosquitto ", "exec /usr/sbin/mosquitto ")
    env = {**os.environ, "MQTT_USERNAME": "facmon", "MQTT_PASSWORD": "s3cret-pw"}
    broker = subprocess.Popen(
        ["/bin/sh", "-ec", script],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert broker.poll() is None, broker.communicate()[0]
                assert time.monotonic() < deadline, "the broker did not start listening"
                time.sleep(0.05)
        assert _connack(port, "facmon", "s3cret-pw") == 0
        assert _connack(port, None, None) != 0
        assert _connack(port, "facmon", "wrong") != 0
        assert oct((root / "data" / "passwd").stat().st_mode & 0o777) == "0o600"
        if shutil.which("mosquitto_sub"):
            test = svc["healthcheck"]["test"]
            assert test[0] == "CMD-SHELL"
            check = test[1].replace("$$", "$").replace("-p 1883", f"-p {port}")
            proc = subprocess.run(
                ["/bin/sh", "-c", check], env=env, capture_output=True, text=True, timeout=30
            )
            assert proc.returncode == 0, proc.stderr
    finally:
        broker.terminate()
        broker.wait(10)


def _connack(port: int, user: str | None, password: str | None) -> int:
    """The CONNACK reason code the broker answers (0 = accepted)."""
    codes: list[int] = []
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="deploy-test")
    if user is not None:
        client.username_pw_set(user, password)

    def on_connect(c: mqtt.Client, userdata: Any, flags: Any, rc: Any, props: Any) -> None:
        codes.append(int(rc.value))

    client.on_connect = on_connect
    client.connect("127.0.0.1", port, keepalive=10)
    try:
        deadline = time.monotonic() + 5
        while not codes and time.monotonic() < deadline:
            client.loop(timeout=0.1)
    finally:
        client.disconnect()
    assert codes, "no CONNACK"
    return codes[0]


# -- backup and restore, as the operations page writes them -----------------------------------

PG_ADMIN_URL = os.environ.get(
    "FACMON_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


def _ticket_request(device: str) -> Any:
    from alerts.tickets import TicketRequest

    return TicketRequest(f"{device}: fault", device, "tower-a", "elevator_fault", "major")


def test_ticket_backup_and_restore_on_postgresql(tmp_path: Path) -> None:
    """pg_dump -Fc and pg_restore --clean --if-exists (the page's commands) give a ticket
    database facmon opens as it was: tickets, migration state and the one-open-ticket index."""
    import uuid
    from datetime import UTC, datetime

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from alerts.tickets import TicketStore

    text = OPERATIONS.read_text(encoding="utf-8")
    assert "pg_dump -U facmon -d facmon -Fc" in text
    assert "pg_restore -U facmon -d facmon --clean --if-exists" in text
    if not (shutil.which("pg_dump") and shutil.which("pg_restore")):
        pytest.fail("pg_dump/pg_restore are not installed (make system-deps)")
    admin_url = make_url(PG_ADMIN_URL)
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    names = [f"facmon_deploy_{uuid.uuid4().hex[:10]}_{n}" for n in ("live", "restored")]
    try:
        with admin.connect() as c:
            for name in names:
                c.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as e:
        admin.dispose()
        pytest.fail(f"PostgreSQL at {PG_ADMIN_URL} is required for this test: {e}")
    live, restored = (admin_url.set(database=n) for n in names)
    conn = ["-h", admin_url.host or "127.0.0.1", "-p", str(admin_url.port or 5432)]
    conn += ["-U", admin_url.username or "postgres"]
    now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    try:
        store = TicketStore(live.render_as_string(hide_password=False))
        first = store.open_or_add_occurrence(_ticket_request("el-1"), now)
        store.close()
        dump = tmp_path / "tickets.dump"
        with dump.open("wb") as out:
            subprocess.run(
                ["pg_dump", *conn, "-d", names[0], "-Fc"], stdout=out, check=True, timeout=60
            )
        # Restored twice: --clean --if-exists replaces what a database already holds.
        for _ in range(2):
            with dump.open("rb") as src:
                subprocess.run(
                    ["pg_restore", *conn, "-d", names[1], "--clean", "--if-exists"],
                    stdin=src,
                    check=True,
                    timeout=60,
                )
        store = TicketStore(restored.render_as_string(hide_password=False))
        try:
            page = store.list_tickets()
            assert [t.number for t in page.items] == [first.number]
            again = store.open_or_add_occurrence(_ticket_request("el-1"), now)
            assert again.id == first.id, "the restored database lost its one-open-ticket index"
        finally:
            store.close()
    finally:
        with admin.connect() as c:
            for name in names:
                c.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_ticket_backup_and_restore_on_sqlite(tmp_path: Path) -> None:
    """sqlite3's .backup (the page's command) copies the ticket database while facmon holds it
    open in WAL mode, and the copy opens as a working ticket database."""
    from datetime import UTC, datetime

    from alerts.tickets import TicketStore

    assert "sqlite3 /var/lib/facmon/tickets.db \".backup '" in OPERATIONS.read_text("utf-8")
    sqlite3 = shutil.which("sqlite3")
    if sqlite3 is None:
        pytest.fail("the sqlite3 command is not installed (make system-deps)")
    db, copy = tmp_path / "tickets.db", tmp_path / "backup" / "tickets.db"
    copy.parent.mkdir()
    now = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
    live = TicketStore(f"sqlite:///{db}")
    try:
        first = live.open_or_add_occurrence(_ticket_request("el-1"), now)
        subprocess.run([sqlite3, str(db), f".backup '{copy}'"], check=True, timeout=60)
    finally:
        live.close()
    restored = TicketStore(f"sqlite:///{copy}")
    try:
        assert [t.number for t in restored.list_tickets().items] == [first.number]
        assert restored.open_or_add_occurrence(_ticket_request("el-1"), now).id == first.id
    finally:
        restored.close()


# -- Dockerfile -------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile: comments dropped, continuation lines joined."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if pending and line.startswith("#"):
            continue  # comments inside a continued instruction are dropped too
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        full = (pending + line).strip()
        pending = ""
        word, _, rest = full.partition(" ")
        out.append((word.upper(), rest.strip()))
    assert not pending, "the Dockerfile ends inside a continued line"
    return out


def _json_or_shell(args: str) -> list[str]:
    if args.startswith("["):
        value = json.loads(args)
        assert isinstance(value, list) and all(isinstance(v, str) for v in value)
        return value
    return args.split()


def _ignored(path: str, patterns: list[str]) -> bool:
    import fnmatch

    return any(
        fnmatch.fnmatch(path, p.lstrip("/")) or fnmatch.fnmatch(path, f"**/{p}")
        for p in patterns
        if not p.startswith("!")
    )


def test_dockerfile_copies_real_files_and_runs_facmon() -> None:
    instructions = dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))
    args = {k: v for k, v in (i[1].split("=", 1) for i in instructions if i[0] == "ARG")}
    froms = [i[1] for i in instructions if i[0] == "FROM"]
    images = [re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], f.split()[0]) for f in froms]
    assert images and all(i.startswith("python:3.11-slim") for i in images), images

    ignore = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied: set[str] = set()
    for word, rest in instructions:
        if word != "COPY" or "--from=" in rest:
            continue
        parts = _json_or_shell(rest)
        for src in parts[:-1]:
            assert (REPO / src).exists(), f"COPY {src}: not in the build context (repo root)"
            assert not _ignored(src, ignore), f"COPY {src}: excluded by .dockerignore"
            copied.add(src.rstrip("/"))
    # The image holds every package pyproject.toml ships, and the files its build reads.
    project = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    packages = {p.rstrip("*") for p in project["tool"]["setuptools"]["packages"]["find"]["include"]}
    assert packages | {"pyproject.toml", project["project"]["readme"]} <= copied

    runtime = instructions[max(i for i, ins in enumerate(instructions) if ins[0] == "FROM") :]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the image must not run as root"
    apt = " ".join(rest for word, rest in runtime if word == "RUN" and "apt-get install" in rest)
    for pkg in ("libpango-1.0-0", "libpangoft2-1.0-0", "fonts-wqy-microhei", "tzdata"):
        assert pkg in apt, f"{pkg} is needed at run time (monthly PDF, local time)"
    assert any(word == "HEALTHCHECK" and "/health" in rest for word, rest in runtime)

    entry = [_json_or_shell(rest) for word, rest in runtime if word == "ENTRYPOINT"][-1]
    cmd = [_json_or_shell(rest) for word, rest in runtime if word == "CMD"][-1]
    assert entry == ["facmon"] and "facmon" in project["project"]["scripts"]
    assert_real_command(cmd)


def test_dockerignore_keeps_local_state_and_secrets_out() -> None:
    ignore = (REPO / ".dockerignore").read_text(encoding="utf-8").split()
    for entry in (".git", ".venv", "facmon-data", "tests", "deploy/.env"):
        assert entry in ignore, f".dockerignore should exclude {entry}"


# -- systemd ----------------------------------------------------------------------------------


def unit_files() -> list[Path]:
    return sorted(UNITS.glob("*.service"))


def read_unit(path: Path) -> configparser.ConfigParser:
    cp = configparser.ConfigParser(strict=False, interpolation=None)
    cp.optionxform = str  # type: ignore[assignment,method-assign]  # keys are case-sensitive
    cp.read_string(path.read_text(encoding="utf-8"), source=str(path))
    return cp


def unit_values(path: Path, key: str) -> list[str]:
    """Every value of ``key`` (systemd keys may repeat; configparser keeps only the last)."""
    return [
        line.split("=", 1)[1].strip()
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.startswith(f"{key}=")
    ]


def test_units_exist() -> None:
    assert [p.name for p in unit_files()] == ["facmon.service", "facmon@.service"]


@pytest.mark.parametrize("unit", ["facmon.service", "facmon@.service"])
def test_unit_has_the_required_settings(unit: str) -> None:
    from store.outbox import DurableWriter

    path = UNITS / unit
    cp = read_unit(path)
    assert cp["Unit"]["Description"]
    assert "network-online.target" in " ".join(unit_values(path, "After"))
    s = cp["Service"]
    expected = {
        "Type": "simple",
        "User": "facmon",
        "Group": "facmon",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/facmon",
        "ExecReload": "/bin/kill -HUP $MAINPID",
        "KillSignal": "SIGTERM",
        "Restart": "always",
        "CapabilityBoundingSet": "",
    }
    for key, value in expected.items():
        assert s.get(key) == value, f"{unit}: {key}={s.get(key)!r}, expected {value!r}"
    assert "/etc/facmon/facmon.env" in unit_values(path, "EnvironmentFile")
    assert cp["Install"]["WantedBy"] == "multi-user.target"

    # Stopping must leave time for the outbox flush.
    flush = inspect.signature(DurableWriter.close).parameters["flush_timeout"].default
    assert int(s["TimeoutStopSec"]) >= flush + 10

    exe, *args = s["ExecStart"].split()
    assert exe == "/opt/facmon/venv/bin/facmon"
    assert_real_command(args)
    assert s["WorkingDirectory"].startswith("/var/lib/facmon")


def test_config_errors_exit_with_the_status_the_units_do_not_restart_on(tmp_path: Path) -> None:
    bad = tmp_path / "site.yaml"
    bad.write_text("site: {id: s}\n", encoding="utf-8")
    proc = subprocess.run(
        [facmon_exe(), "run", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    for unit in unit_files():
        assert read_unit(unit)["Service"]["RestartPreventExitStatus"] == "2"


def test_units_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    """``systemd-analyze verify`` also checks that ExecStart's program exists: the install
    prefix is pointed at this checkout's facmon, nothing else is changed. Warnings fail too
    (verify exits 0 on an unknown key or a bad value)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.fail("systemd-analyze is not installed (make system-deps)")
    paths = []
    for unit in unit_files():
        text = unit.read_text(encoding="utf-8").replace("/opt/facmon/venv/bin/facmon", facmon_exe())
        name = unit.name.replace("@.service", "@riverside.service")
        (tmp_path / name).write_text(text, encoding="utf-8")
        paths.append(str(tmp_path / name))
    proc = subprocess.run(
        [analyze, "verify", "--man=no", *paths], capture_output=True, text=True, timeout=120
    )
    out = (proc.stdout + proc.stderr).strip()
    assert proc.returncode == 0, out
    assert not out, f"systemd-analyze verify warns:\n{out}"


def _install_settings() -> dict[str, str]:
    text = (UNITS / "install.sh").read_text(encoding="utf-8")
    return dict(re.findall(r"^([A-Z]+)=([^\s$]+)$", text, flags=re.M))


def test_install_script_matches_the_units() -> None:
    sh = _install_settings()
    s = read_unit(UNITS / "facmon.service")["Service"]
    assert s["ExecStart"].split()[0] == f"{sh['PREFIX']}/venv/bin/facmon"
    assert f"{sh['ETC']}/facmon.env" in unit_values(UNITS / "facmon.service", "EnvironmentFile")
    assert s["ReadWritePaths"] == sh["STATE"]
    assert s["ExecStart"].split()[-1] == f"{sh['ETC']}/site.yaml"
    # The secrets file it installs holds no secret.
    for line in (UNITS / "facmon.env.example").read_text(encoding="utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            assert value == "", f"facmon.env.example must not hold a value for {name}"


def test_install_script_is_valid_shell() -> None:
    script = UNITS / "install.sh"
    assert os.access(script, os.X_OK), "install.sh must be executable"
    proc = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    if shutil.which("shellcheck") is None:
        pytest.fail("bash -n passed; shellcheck is not installed (make system-deps)")
    proc = subprocess.run(["shellcheck", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout


# -- the operations page ----------------------------------------------------------------------

# Shell blocks and inline code; plain ``` blocks are diagrams.
_CODE = re.compile(r"```(?:sh|bash)\n(.*?)```|```[a-z]*\n.*?```|`([^`\n]+)`", re.S)
_FACMON_CMD = re.compile(
    r"(?<![\w/-])(?:/opt/facmon/venv/bin/)?facmon ((?:[a-z][a-z-]*)[^`'\"#;&|\n]*)"
)


def operations_commands() -> Iterator[list[str]]:
    """The facmon command lines written in the operations page's code, outside the block of
    planned features."""
    text = OPERATIONS.read_text(encoding="utf-8")
    text = re.sub(r"<!-- planned.*?<!-- /planned -->", "", text, flags=re.S)
    for m in _CODE.finditer(text):
        # Shell comments are prose ("while facmon runs: ..."), not commands.
        code = re.sub(r"(?m)(^|\s)#.*$", "", m.group(1) or m.group(2) or "")
        for cmd in _FACMON_CMD.finditer(code):
            words = cmd.group(1).split()
            before = code[: cmd.start()].split()[-1:]
            # `docker compose exec facmon PROGRAM`: the service, then any program in it (which
            # is checked when it is `facmon`); `docker compose run facmon ARGS` passes ARGS
            # to the image's entrypoint, the facmon command, so those are checked.
            if before != ["exec"] and words[0] != "facmon":
                yield words


def test_every_facmon_command_in_the_operations_page_exists() -> None:
    commands = list(operations_commands())
    assert len(commands) >= 5
    checked: set[tuple[str, ...]] = set()
    for words in commands:
        path, parser = subcommand_path(words)
        options = {o for a in parser._actions for o in a.option_strings}
        for word in words[len(path) :]:
            if word.startswith("--"):
                assert word.split("=")[0] in options, f"facmon {' '.join(path)} has no {word}"
        checked.add(tuple(path))
    for sub in sorted(checked):
        problem = help_answers(sub)
        assert not problem, f"facmon {' '.join(sub)} --help: {problem}"
    assert ("run",) in checked and ("influx", "init") in checked


def test_operations_page_covers_every_deploy_file_and_topic() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    for path in sorted(DEPLOY.rglob("*")):
        rel = path.relative_to(DEPLOY)
        if path.is_file() and rel.parts[0] != "grafana" and path != OPERATIONS:
            name = rel.as_posix() if rel.parts[0] != "systemd" else f"systemd/{rel.name}"
            assert name in text or rel.name in text, f"OPERATIONS.md does not mention {rel}"
    for topic in (
        "## Install with Docker Compose",
        "## Install on a plain Linux host",
        "## Configuration and secrets",
        "## Backup and restore",
        "## Upgrades",
        "## Sizing",
        "## Several buildings",
        "## Monitoring facmon itself",
        "## Troubleshooting",
        "pg_dump",
        ".backup",
        "influx backup",
        "influx restore",
        "upgrade_schema",
        "/metrics",
        "RS-485",
    ):
        assert topic in text, f"OPERATIONS.md lacks {topic!r}"
    # The function the page names as the ticket database migration really is that.
    from alerts import tickets

    assert callable(tickets.upgrade_schema)
