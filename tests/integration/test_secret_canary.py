"""The secret canary: a unique string given as secret inputs (one secret by its name, one by
``metadata: {secret: true}``) and used in outputs (directly, through concat, through a
property and beside a run-time attribute), in a property and in an operation input, on a
simulated site. It must appear nowhere (the state database file, the data folder, every
CLI format, every API route, events, SSE, server logs) but in the owner's explicit reveal,
and the reveal is recorded as an event that does not hold it."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests import engine_support as es
from tests.conftest import ROOT
from tests.fakes.oidc_issuer import OIDCIssuer
from tests.integration import api_server as support

pytestmark = pytest.mark.slow
CANARY = "canary-4b1d9e7a2f"  # db_password (secret by its name)
CANARY_KEY = "canary-key-83c5e0"  # dbkey (secret by metadata)
CANARY_PIN = 9173528046  # pin: a secret integer (by metadata)
CANARY_LOGIN = "canary-map-9d2a71"  # creds: a secret map (by metadata)
CANARIES = (CANARY, CANARY_KEY, str(CANARY_PIN), CANARY_LOGIN)

BODY = """
node_types:
  example.App:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      connection: {type: string}
topology_template:
  inputs:
    db_password: {type: string}
    dbkey: {type: string, metadata: {secret: true}}
    pin: {type: integer, metadata: {secret: true}}
    creds: {type: map, entry_schema: {type: string}, metadata: {secret: true}}
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 1}}
        os: {properties: {distribution: ubuntu}}
    app:
      type: example.App
      requirements: [{host: vm}]
      properties:
        connection: {concat: ["postgres://admin:", {get_input: db_password}, "@db/x"]}
      interfaces:
        Standard:
          configure:
            implementation: marker.yml
            inputs:
              dsn: {concat: ["postgres://admin:", {get_input: dbkey}, "@db/x"]}
              pin: {get_input: pin}
              creds: {get_input: creds}
  outputs:
    password: {value: {get_input: db_password}}
    dsn: {value: {concat: ["dsn=", {get_input: db_password}]}}
    connection: {value: {get_property: [app, connection]}}
    address_key: {value: {concat: [{get_attribute: [vm, private_address]}, ":",
                                   {get_input: dbkey}]}}
    address: {value: {get_attribute: [vm, private_address]}}
    pin: {value: {get_input: pin}}
    pin_url: {value: {concat: ["pin=", {get_input: pin}]}}
    creds: {value: {get_input: creds}}
"""
SECRET_OUTPUTS = {"password": CANARY, "dsn": f"dsn={CANARY}",
                  "connection": f"postgres://admin:{CANARY}@db/x", "pin": CANARY_PIN,
                  "pin_url": f"pin={CANARY_PIN}", "creds": {"login": CANARY_LOGIN}}


def _leaks(text) -> list[str]:
    text = text if isinstance(text, (str, bytes)) else json.dumps(text)
    return [c for c in CANARIES if (c.encode() if isinstance(text, bytes) else c) in text]


def _folder_leaks(folder: Path) -> list[str]:
    return [f"{p}: {c}" for p in sorted(folder.rglob("*")) if p.is_file()
            for c in _leaks(p.read_bytes())]


def _database(folder: Path) -> bytes:
    """The SQLite state database's bytes, with its write-ahead log (not yet checkpointed)."""
    return b"".join(p.read_bytes() for p in sorted(folder.glob("state.db*")))


def _leaking(seen: dict) -> dict:
    """The surfaces (of ``seen``: name -> text, bytes or data) that show a canary."""
    return {what: found for what, text in seen.items() if (found := _leaks(text))}


# -- the local CLI ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("canary-cli")
    sites = es.write_sites(tmp, es.site("sim", tmp, latency={"boot": 0.01}))
    template = es.write_template(tmp, BODY)
    env = {**os.environ, "XDG_DATA_HOME": str(tmp / "data")}
    env.pop("ORCHESTRATOR_SECRET_KEY", None)

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "orchestrator", "--db",
                                 f"sqlite:///{tmp / 'state.db'}", "--sites", sites, *args],
                                capture_output=True, text=True, cwd=ROOT, timeout=120, env=env)
        return result

    sets = ["--set", f"db_password={CANARY}", "--set", f"dbkey={CANARY_KEY}",
            "--set", f"pin={CANARY_PIN}", "--set", f'creds={{"login": "{CANARY_LOGIN}"}}']
    deployed = cli("deploy", template, "--name", "canary", "--yes", *sets)
    assert deployed.returncode == 0, deployed.stderr
    return cli, template, sets, tmp, deployed


def test_cli_shows_the_canary_nowhere_without_asking(local):
    cli, template, sets, tmp, deployed = local
    seen = {"deploy": deployed.stdout + deployed.stderr}
    for fmt in ("text", "json"):
        for args in (("outputs", "canary"), ("status", "canary"), ("list",),
                     ("logs", "canary"), ("inspect", template, *sets),
                     ("plan", template, "--name", "canary", *sets),
                     ("plan", template, "--name", "other", "-o", str(tmp / "plan.json"),
                      *sets)):
            result = cli(*args, "--format", fmt)
            assert result.returncode == 0, (args, result.stderr)
            seen[f"{' '.join(args[:1])} --format {fmt}"] = result.stdout + result.stderr
    seen["plan file"] = (tmp / "plan.json").read_text()
    seen["state database file"] = _database(tmp)
    seen["data folder"] = "\n".join(_folder_leaks(tmp / "data"))
    assert _leaking(seen) == {}
    masked = json.loads(cli("outputs", "canary", "--format", "json").stdout)
    assert masked["address"].startswith("10.")
    assert {masked[k] for k in (*SECRET_OUTPUTS, "address_key")} == {"******"}


def test_cli_reveals_to_the_owner_on_request_and_records_it(local):
    cli, _, _, tmp, _ = local
    shown = cli("outputs", "canary", "--show-secrets", "--format", "json")
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert {k: data[k] for k in SECRET_OUTPUTS} == SECRET_OUTPUTS
    assert data["address_key"] == f"{data['address']}:{CANARY_KEY}"
    text = cli("outputs", "canary", "--show-secrets").stdout
    assert f"password = {CANARY}" in text
    events = [json.loads(line) for line in cli("logs", "canary", "--format", "json")
              .stdout.splitlines()]
    revealed = [e for e in events if e["kind"] == "outputs-revealed"]
    assert len(revealed) == 2 and "password" in revealed[0]["message"]
    assert not _leaks(events)
    key = tmp / "data" / "orchestrator" / "server.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert not _leaks(_database(tmp))


# -- the REST API -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def issuer():
    with OIDCIssuer() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory, issuer):
    yield from support.simulated_server(tmp_path_factory.mktemp("canary-api"), issuer.url)


@pytest.fixture(scope="module")
def deployed(server, issuer):
    with support.client(server, issuer.token("alice", groups=["physics"])) as alice:
        response = alice.post("/v1/deployments", json={
            "name": "canary", "template": support.template_text(BODY), "group": "physics",
            "inputs": {"db_password": CANARY, "dbkey": CANARY_KEY, "pin": CANARY_PIN,
                       "creds": {"login": CANARY_LOGIN}}})
        assert response.status_code == 202, response.text
        record = support.wait_for(alice, response.json()["id"])
        assert record["status"] == "deployed", record
        yield response


def test_api_shows_the_canary_nowhere_without_asking(server, issuer, deployed):
    location = deployed.headers["location"]
    with support.client(server, issuer.token("alice", groups=["physics"])) as alice:
        seen = {"POST": deployed.text}
        for path in ("", "/events", "/plan", "/outputs", "/outputs?reveal=false", "/work",
                     "/resources", "/template", "/logs", "/logs?node=app"):
            seen[path or "GET"] = alice.get(location + path).text
        seen["list"] = alice.get("/v1/deployments").text
        with alice.stream("GET", f"{location}/events",
                          headers={"Accept": "text/event-stream"}) as stream:
            seen["SSE"] = "".join(stream.iter_text())
        masked = alice.get(f"{location}/outputs").json()
    seen["server log"] = server.output()
    seen["state database file"] = _database(server.log.parent)
    seen["data folder"] = "\n".join(_folder_leaks(server.log.parent / "server-data"))
    assert _leaking(seen) == {}
    assert {masked[k] for k in (*SECRET_OUTPUTS, "address_key")} == {"******"}


def test_api_reveals_to_the_owner_only_and_records_it(server, issuer, deployed):
    location = deployed.headers["location"]
    with support.client(server, issuer.token("bob", groups=["physics"])) as bob, \
            support.client(server, issuer.token("carol")) as carol:
        assert bob.get(f"{location}/outputs").status_code == 200  # shared: masked
        refused = bob.get(f"{location}/outputs", params={"reveal": "true"})
        assert refused.status_code == 403 and not _leaks(refused.text)
        hidden = carol.get(f"{location}/outputs", params={"reveal": "true"})
        assert hidden.status_code == 404 and not _leaks(hidden.text)
    with support.client(server, issuer.token("alice", groups=["physics"])) as alice:
        shown = alice.get(f"{location}/outputs", params={"reveal": "true"})
        assert shown.status_code == 200, shown.text
        data = shown.json()
        assert {k: data[k] for k in SECRET_OUTPUTS} == SECRET_OUTPUTS
        assert data["address_key"].endswith(f":{CANARY_KEY}")
        events = alice.get(f"{location}/events").json()
        revealed = [e for e in events if e["kind"] == "outputs-revealed"]
        assert len(revealed) == 1 and not _leaks(events)
        assert "password" in revealed[0]["message"] and "alice" in revealed[0]["message"]
        assert not _leaks(alice.get(location).text)
    env = {**os.environ, "ORCHESTRATOR_URL": server.url,
           "ORCHESTRATOR_TOKEN": issuer.token("alice", groups=["physics"])}

    def remote(*args):
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    for fmt in ("text", "json"):
        for args in (("outputs", "canary"), ("status", "canary"), ("list",),
                     ("logs", "canary")):
            result = remote(*args, "--format", fmt)
            assert result.returncode == 0 and not _leaks(result.stdout + result.stderr), args
    shown = remote("outputs", "canary", "--show-secrets", "--format", "json")
    assert json.loads(shown.stdout)["password"] == CANARY
    assert not _leaks(server.output())
    assert not _leaks(_database(server.log.parent))
