"""deploy/systemd: the agent's and central's units run in the same sandbox, bind and reach
only what they must, hand over only credentials they load, pass only flags their programs
have, and pass `systemd-analyze verify` (with their network drop-in examples installed) at
the exposure score docs/operations.md records.

`systemd-analyze verify` fails when ExecStart's binary is missing and the units name the
production path /opt/invctl/venv/bin/, so the systemd-analyze tests check copies whose
ExecStart runs this checkout's .venv/bin instead.
"""

from __future__ import annotations

import importlib
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from ipaddress import ip_network
from pathlib import Path

import pytest
import typer

from central.settings import ENV_NAMES
from storeagent.settings import DEFAULT_LISTEN

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "deploy" / "systemd"
AGENT = SYSTEMD / "storeagent.service"
CENTRAL = SYSTEMD / "central.service"
UNITS = (AGENT, CENTRAL)
INSTALLED_BIN = "/opt/invctl/venv/bin/"
LOCAL_BIN = Path(sys.executable).parent
AGENT_METRICS_PORT = 9787  # the documented port of the agent's metrics listener
EXPOSURE = {"storeagent.service": 0.9, "central.service": 0.9}  # as docs/operations.md says
DOCUMENTATION_NETWORKS = tuple(
    ip_network(net)
    for net in ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")
)

SANDBOX = {
    "NoNewPrivileges": "yes",
    "CapabilityBoundingSet": "",
    "ProtectSystem": "strict",
    "ProtectHome": "yes",
    "PrivateTmp": "yes",
    "PrivateDevices": "yes",
    "PrivateMounts": "yes",
    "PrivateUsers": "yes",
    "ProtectProc": "invisible",
    "ProcSubset": "pid",
    "ProtectKernelTunables": "yes",
    "ProtectKernelModules": "yes",
    "ProtectKernelLogs": "yes",
    "ProtectControlGroups": "yes",
    "ProtectClock": "yes",
    "ProtectHostname": "yes",
    "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6",
    "RestrictNamespaces": "yes",
    "RestrictRealtime": "yes",
    "RestrictSUIDSGID": "yes",
    "LockPersonality": "yes",
    "MemoryDenyWriteExecute": "yes",
    "RemoveIPC": "yes",
    "SystemCallArchitectures": "native",
    "SystemCallErrorNumber": "EPERM",
    "UMask": "0077",
    "StateDirectoryMode": "0700",
    "SocketBindDeny": "any",
    "IPAddressDeny": "any",
    "IPAddressAllow": "localhost",
}

Section = dict[str, list[str]]


def parse_unit(text: str) -> dict[str, Section]:
    """Each section's assignments by key, all of them in order (systemd keys repeat:
    SystemCallFilter, LoadCredential, ...), continuation lines joined, comments dropped."""
    sections: dict[str, Section] = {}
    current: Section | None = None
    for raw in text.replace("\\\n", " ").splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, equals, value = line.partition("=")
        assert current is not None and equals, f"not an assignment in a section: {raw!r}"
        current.setdefault(key.strip(), []).append(" ".join(value.split()))
    return sections


def service(unit: Path) -> Section:
    return parse_unit(unit.read_text())["Service"]


def one(section: Section, key: str) -> str:
    values = section.get(key, [])
    assert len(values) == 1, f"{key}: {values}"
    return values[0]


def environment(section: Section) -> dict[str, str]:
    return dict(value.split("=", 1) for value in section.get("Environment", []))


def credentials(section: Section) -> dict[str, str]:
    """LoadCredential=ID:PATH as {ID: PATH}."""
    return dict(value.split(":", 1) for value in section["LoadCredential"])


def exec_start(unit: Path) -> list[str]:
    return shlex.split(one(service(unit), "ExecStart"))


def subcommand(argv: list[str]) -> typer.core.TyperCommand:
    """The click command behind `BINARY SUBCOMMAND`, found the way the installed script
    finds it: the [project.scripts] entry point of BINARY's name."""
    scripts = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    name = Path(argv[0]).name
    assert name in scripts, f"{argv[0]} is not one of the project's scripts {sorted(scripts)}"
    module = importlib.import_module(scripts[name].split(":")[0])
    group = typer.main.get_command(module.app)
    assert isinstance(group, typer.core.TyperGroup)
    command = group.commands.get(argv[1])
    assert isinstance(command, typer.core.TyperCommand), f"{name} has no command {argv[1]!r}"
    return command


def parsed_exec_start(unit: Path) -> dict[str, object]:
    """ExecStart's arguments parsed by the real command line parser: an unknown flag, a
    missing value or a value of the wrong type fails here as it would at start."""
    argv = exec_start(unit)
    command = subcommand(argv)
    with command.make_context(" ".join(argv[:2]), argv[2:]) as context:
        return dict(context.params)


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_both_units_run_in_the_same_sandbox(unit: Path) -> None:
    section = service(unit)

    for key, expected in SANDBOX.items():
        assert one(section, key) == expected, key
    assert section["SystemCallFilter"] == ["@system-service", "~@privileged @resources"]
    assert one(section, "User") == one(section, "Group")
    assert one(section, "User").startswith("invctl-")
    for loosening in ("DynamicUser", "AmbientCapabilities", "ReadWritePaths", "PrivateNetwork"):
        assert loosening not in section, loosening


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_exec_start_passes_only_options_the_command_has(unit: Path) -> None:
    argv = exec_start(unit)
    options = {opt for param in subcommand(argv).params for opt in param.opts}

    flags = [arg for arg in argv[2:] if arg.startswith("-")]

    assert argv[0].startswith(INSTALLED_BIN)
    assert (LOCAL_BIN / Path(argv[0]).name).exists(), "no such script in .venv/bin"
    assert flags, "ExecStart passes no options"
    assert sorted(set(flags) - options) == []
    parsed_exec_start(unit)  # and their values parse


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_every_credential_named_is_loaded_and_every_one_loaded_is_used(unit: Path) -> None:
    section = service(unit)
    loaded = credentials(section)
    uses = " ".join(section["ExecStart"] + section.get("Environment", []))

    named = set(re.findall(r"%d/([\w.-]+)", uses))

    assert named == set(loaded)
    assert all(path.startswith("/etc/invctl/") for path in loaded.values()), loaded


def test_agent_stays_a_notify_service_with_a_watchdog_and_its_api_key_credential() -> None:
    section = service(AGENT)
    params = parsed_exec_start(AGENT)

    assert (one(section, "Type"), one(section, "NotifyAccess")) == ("notify", "main")
    assert one(section, "WatchdogSec") == "30"
    assert credentials(section) == {"api-key": "/etc/invctl/storeagent.key"}
    assert str(params["api_key_file"]) == "%d/api-key"
    assert str(params["db"]) == f"/var/lib/{one(section, 'StateDirectory')}/replica.db"


def test_agent_may_bind_only_its_terminal_and_metrics_ports() -> None:
    terminal_port = int(DEFAULT_LISTEN.rsplit(":", 1)[1])

    allowed = service(AGENT)["SocketBindAllow"]

    assert allowed == [f"tcp:{terminal_port}", f"tcp:{AGENT_METRICS_PORT}"]


def test_central_may_bind_only_the_port_it_serves() -> None:
    params = parsed_exec_start(CENTRAL)

    assert service(CENTRAL)["SocketBindAllow"] == [f"tcp:{params['port']}"]


def test_central_is_type_exec_because_it_does_not_speak_sd_notify() -> None:
    speaks_notify = [
        path.relative_to(REPO)
        for path in (REPO / "central").rglob("*.py")
        if "NOTIFY_SOCKET" in path.read_text()
    ]

    assert speaks_notify == [], "central speaks sd_notify now: make central.service Type=notify"
    assert one(service(CENTRAL), "Type") == "exec"


def test_central_is_restarted_after_a_failure_but_not_after_a_configuration_error() -> None:
    section = service(CENTRAL)

    assert (one(section, "Restart"), one(section, "RestartPreventExitStatus")) == (
        "on-failure",
        "2",
    )


def test_central_reads_its_kafka_passwords_from_loaded_credentials() -> None:
    section = service(CENTRAL)
    env = environment(section)
    loaded = credentials(section)

    assert env["INVCTL_KAFKA_PASSWORD_FILE"] == "%d/kafka-password"
    assert env["INVCTL_KAFKA_ADMIN_PASSWORD_FILE"] == "%d/kafka-admin-password"
    assert loaded == {
        "kafka-password": "/etc/invctl/relay.password",
        "kafka-admin-password": "/etc/invctl/kafka-admin.password",
    }
    settings_env = set(ENV_NAMES.values())
    assert {name for name in env if name.startswith("INVCTL_")} <= settings_env


def test_central_takes_the_jwt_secret_from_its_environment_file_for_want_of_a_file_setting() -> (
    None
):
    section = service(CENTRAL)

    assert ENV_NAMES["jwt_secret"] == "INVCTL_JWT_SECRET"
    assert "INVCTL_JWT_SECRET_FILE" not in ENV_NAMES.values(), (
        "central reads the JWT secret from a file now: load it with LoadCredential="
    )
    assert section["EnvironmentFile"] == ["/etc/invctl/central.env"]
    assert "INVCTL_JWT_SECRET" not in environment(section)


def test_central_keeps_its_sqlite_default_in_its_private_state_directory() -> None:
    section = service(CENTRAL)

    url = environment(section)["INVCTL_DATABASE_URL"]

    assert (one(section, "User"), one(section, "StateDirectory")) == (
        "invctl-central",
        "invctl-central",
    )
    assert url == "sqlite:////var/lib/invctl-central/central.db"


@pytest.mark.parametrize("unit", UNITS, ids=lambda unit: unit.name)
def test_network_drop_in_example_only_adds_documentation_addresses(unit: Path) -> None:
    example = SYSTEMD / f"{unit.name}.d" / "network.conf.example"

    sections = parse_unit(example.read_text())

    assert list(sections) == ["Service"]
    assert list(sections["Service"]) == ["IPAddressAllow"]
    entries = [entry for value in sections["Service"]["IPAddressAllow"] for entry in value.split()]
    assert entries, "an empty IPAddressAllow= would also drop the unit's localhost"
    for entry in entries:
        first, last = ip_network(entry)[0], ip_network(entry)[-1]
        assert any(first in doc and last in doc for doc in DOCUMENTATION_NETWORKS), entry


def systemd_analyze() -> str:
    found = shutil.which("systemd-analyze")
    if found is None:
        pytest.fail(
            "systemd-analyze is missing: `scripts/dev setup` installs it (apt: systemd)",
            pytrace=False,
        )
    return found


def units_for_this_checkout(directory: Path, *, drop_ins: bool) -> list[Path]:
    """Copies of the units, same names, running .venv/bin; with drop_ins, each unit's
    network.conf.example installed beside it as UNIT.d/network.conf."""
    copies = []
    for unit in UNITS:
        text = unit.read_text()
        assert text.count(f"ExecStart={INSTALLED_BIN}") == 1, unit.name
        copy = directory / unit.name
        copy.write_text(text.replace(f"ExecStart={INSTALLED_BIN}", f"ExecStart={LOCAL_BIN}/"))
        if drop_ins:
            (directory / f"{unit.name}.d").mkdir()
            shutil.copy(
                SYSTEMD / f"{unit.name}.d" / "network.conf.example",
                directory / f"{unit.name}.d" / "network.conf",
            )
        copies.append(copy)
    return copies


def run_analyze(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [systemd_analyze(), *args], capture_output=True, text=True, timeout=60, check=False
    )


def test_units_with_their_network_drop_ins_pass_systemd_analyze_verify(tmp_path: Path) -> None:
    copies = units_for_this_checkout(tmp_path, drop_ins=True)

    done = run_analyze("verify", "--man=no", *map(str, copies))

    # systemd prints unknown keys and bad values (an address that is none) as warnings and
    # still exits 0; verify does not resolve User= (systemd 252).
    assert (done.returncode, done.stderr, done.stdout) == (0, "", "")


@pytest.mark.parametrize("name", sorted(EXPOSURE))
def test_exposure_score_is_no_worse_than_documented(tmp_path: Path, name: str) -> None:
    copy = tmp_path / name
    units_for_this_checkout(tmp_path, drop_ins=False)

    done = run_analyze("security", "--offline=yes", str(copy))

    found = re.search(rf"Overall exposure level for {re.escape(name)}: (\d+\.\d)", done.stdout)
    assert done.returncode == 0 and found, done.stdout + done.stderr
    assert float(found.group(1)) <= EXPOSURE[name]
