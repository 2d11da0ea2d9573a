"""The REST API over real HTTP: a real `orchestrator serve` subprocess (SQLite state, a
simulated site), tokens from a real OIDC issuer on loopback."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from tests.conftest import ROOT
from tests.fakes.callback_receiver import CallbackReceiver
from tests.fakes.oidc_issuer import OIDCIssuer
from tests.integration import api_server as support

pytestmark = pytest.mark.slow
CANARY = "canary-7f3e9b1d5c"


@pytest.fixture(scope="module")
def issuer():
    with OIDCIssuer() as running:
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory, issuer):
    yield from support.simulated_server(tmp_path_factory.mktemp("api"), issuer.url)


@pytest.fixture
def alice(server, issuer):
    with support.client(server, issuer.token("alice", groups=["physics"])) as api:
        yield api


def test_health_version_and_openapi_need_no_token(server):
    assert httpx.get(f"{server.url}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/version").json()["api"] == "v1"
    document = httpx.get(f"{server.url}/openapi.json").json()
    assert "/v1/deployments" in document["paths"]
    assert "/v1/deployments/{deployment_id}/events" in document["paths"]


def test_deploy_follow_update_and_delete(alice):
    hook = CallbackReceiver()
    try:
        response = alice.post("/v1/deployments", json={
            "name": "web", "template": support.template_text(), "callback_url": hook.url})
        assert response.status_code == 202, response.text
        location = response.headers["location"]
        deployment_id = response.json()["id"]
        assert location == f"/v1/deployments/{deployment_id}"
        record = support.wait_for(alice, deployment_id)
        assert record["status"] == "deployed", record
        assert hook.received.wait(15), "the callback was not POSTed"
        assert hook.bodies[0]["status"] == "deployed"
        assert hook.bodies[0]["deployment"] == deployment_id
    finally:
        hook.close()

    outputs = alice.get(f"{location}/outputs").json()
    assert outputs["vm_ip"].startswith("10.")
    plan = alice.get(f"{location}/plan").json()
    assert plan["deployment"] == "web"
    assert "orchestrator.nodes.Compute" in alice.get(f"{location}/template").text
    resources = alice.get(f"{location}/resources").json()
    assert {(r["node"], r["kind"]) for r in resources} >= {("vm", "compute")}
    kinds = [e["kind"] for e in alice.get(f"{location}/events").json()]
    assert kinds[0] == "queued" and "apply-finished" in kinds

    with alice.stream("GET", f"{location}/events",
                      headers={"Accept": "text/event-stream"}) as stream:
        assert stream.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in stream.iter_lines()]
    assert "event: apply-finished" in lines and "event: end" in lines[-3:]

    compute = next(r for r in resources if r["kind"] == "compute")
    started = alice.post(f"{location}/resources/{compute['id']}/start")
    assert started.status_code == 501
    assert started.headers["content-type"] == "application/problem+json"
    assert "cannot start" in started.json()["detail"]

    patched = alice.patch(location, json={"inputs": {"flavor_cpus": 2}})
    assert patched.status_code == 202, patched.text
    record = support.wait_for(alice, deployment_id)
    assert record["status"] == "deployed" and record["inputs"]["flavor_cpus"] == 2
    assert record["serial"] == 2

    assert alice.delete(location).status_code == 202
    support.wait_for(alice, deployment_id, statuses=("deleted",))
    gone = alice.get(location)
    assert gone.status_code == 404
    assert gone.json()["type"].endswith("/not-found")


GROUP = """
topology_template:
  inputs:
    db_password: {type: string}
    flavor_cpus: {type: integer, default: 1}
    worker_count: {type: integer, default: 1}
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: {get_input: flavor_cpus}}}
        os: {properties: {distribution: ubuntu}}
        scalable: {properties: {count: {get_input: worker_count}}}
"""


def test_an_update_keeps_the_earlier_inputs_and_asks_for_secrets_again(alice):
    """PUT and PATCH merge the inputs given over the deployment's stored ones; the secret
    ones it was made with are never stored, so an update without them is refused."""
    made = alice.post("/v1/deployments", json={
        "name": "kept", "template": support.template_text(GROUP),
        "inputs": {"worker_count": 3, "db_password": CANARY}})
    assert made.status_code == 202, made.text
    deployment_id = made.json()["id"]
    assert support.wait_for(alice, deployment_id)["status"] == "deployed"
    refused = alice.put(f"/v1/deployments/{deployment_id}", json={
        "template": support.template_text(GROUP), "inputs": {"flavor_cpus": 2}})
    assert refused.status_code == 422, refused.text
    assert refused.json()["type"].endswith("/secret-inputs-needed")
    assert "db_password" in refused.json()["detail"]
    replaced = alice.put(f"/v1/deployments/{deployment_id}", json={
        "template": support.template_text(GROUP),
        "inputs": {"flavor_cpus": 2, "db_password": CANARY}})
    assert replaced.status_code == 202, replaced.text
    record = support.wait_for(alice, deployment_id)
    assert record["status"] == "deployed", record
    assert record["inputs"]["worker_count"] == 3 and record["inputs"]["flavor_cpus"] == 2
    assert "db_password" not in record["inputs"]
    patched = alice.patch(f"/v1/deployments/{deployment_id}",
                          json={"inputs": {"db_password": CANARY}})
    assert patched.status_code == 202, patched.text
    record = support.wait_for(alice, deployment_id)
    assert record["status"] == "deployed" and record["inputs"]["worker_count"] == 3
    servers = [r for r in alice.get(f"/v1/deployments/{deployment_id}/resources").json()
               if r["kind"] == "compute" and r["status"] != "deleted"]
    assert len(servers) == 3
    assert alice.delete(f"/v1/deployments/{deployment_id}").status_code == 202
    support.wait_for(alice, deployment_id, statuses=("deleted",))


def test_invalid_template_is_a_422_problem_with_diagnostics(alice):
    response = alice.post("/v1/deployments", json={
        "name": "broken", "template": support.template_text(
            "topology_template:\n  node_templates:\n    vm:\n      type: tosca.nodes.Compte\n")})
    assert response.status_code == 422
    body = response.json()
    assert response.headers["content-type"] == "application/problem+json"
    assert body["type"].endswith("/invalid-template")
    assert any("Compte" in d["message"] for d in body["diagnostics"])
    assert all(r["name"] != "broken" for r in alice.get("/v1/deployments").json())


@pytest.mark.parametrize("properties", ["{default_instances: -1}", "{default_instances: 1000000}",
                                        "{default_instances: " + "7" * 300 + "}"])
def test_an_instance_count_no_plan_can_use_is_a_422_not_a_silent_failure(alice, properties):
    """Once these were accepted and the work ended 'done' with the deployment left 'new'
    (an IndexError taken for "deleted meanwhile") or an OverflowError."""
    response = alice.post("/v1/deployments", json={
        "name": "negative", "template": support.template_text(
            "topology_template:\n  node_templates:\n    vm:\n      type: tosca.nodes.Compute\n"
            f"      capabilities:\n        scalable: {{properties: {properties}}}\n")})
    assert response.status_code == 422, response.text
    diagnostics = response.json()["diagnostics"]
    assert [(d["code"], d["line"]) for d in diagnostics] == [("out-of-range", 8)]
    assert "internal error" not in response.text
    assert all(r["name"] != "negative" for r in alice.get("/v1/deployments").json())


def test_imports_cannot_read_the_servers_files(alice, tmp_path):
    """A template posted as text imports a file outside its folder (absolute, ../, file://,
    and a path that does not exist): one 422 message for all, and nothing of the file."""
    secret = tmp_path / "server-secret" / "shadow"
    secret.parent.mkdir()
    lines = ["root:$6$import-canary-51c0:19000:0:99999:7:::", "password: import-canary-2"]
    secret.write_text("\n".join(lines) + "\n")
    refs = [str(secret), "../" * 30 + str(secret).lstrip("/"), f"file://{secret}",
            str(secret.parent / "absent")]
    text = "tosca_definitions_version: tosca_simple_yaml_1_3\nimports:\n" + "".join(
        f"  - '{ref}'\n" for ref in refs) + "topology_template:\n  node_templates: {}\n"
    response = alice.post("/v1/deployments", json={"name": "peek", "template": text})
    assert response.status_code == 422, response.text
    assert "import-canary" not in response.text and "root:" not in response.text
    diagnostics = response.json()["diagnostics"]
    assert [d["code"] for d in diagnostics] == ["import-not-found"] * len(refs)
    assert len({d["message"].replace(ref, "REF") for d, ref in zip(diagnostics, refs)}) == 1


def test_a_required_input_left_out_is_a_422_naming_it(alice):
    text = support.template_text(
        "topology_template:\n  inputs:\n    db_password:\n      type: string\n"
        "      description: Password of the database\n  node_templates:\n"
        "    vm:\n      type: tosca.nodes.Compute\n")
    response = alice.post("/v1/deployments", json={"name": "no-inputs", "template": text})
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["type"].endswith("/invalid-template") and "db_password" in body["detail"]
    [diag] = body["diagnostics"]
    assert diag["code"] == "missing-input" and diag["severity"] == "error"
    assert "Password of the database" in diag["message"]
    assert all(r["name"] != "no-inputs" for r in alice.get("/v1/deployments").json())
    given = alice.post("/v1/deployments", json={"name": "no-inputs", "template": text,
                                                "inputs": {"db_password": "s3cret-x"}})
    assert given.status_code == 202, given.text
    assert alice.delete(given.headers["location"]).status_code == 202


def test_request_problems(alice):
    both = alice.post("/v1/deployments", json={"template": "x", "template_name": "y"})
    assert both.status_code == 422 and both.json()["type"].endswith("/invalid-request")
    unknown = alice.post("/v1/deployments", json={"template_name": "no-such-template"})
    assert unknown.status_code == 422 and "no-such-template" in unknown.json()["detail"]
    bad = alice.post("/v1/deployments", json={"inputs": "not a map"})
    assert bad.status_code == 422 and bad.json()["errors"]
    foreign_group = alice.post("/v1/deployments", json={
        "template": support.template_text(), "group": "chemistry"})
    assert foreign_group.status_code == 403
    assert alice.get("/v1/deployments/0123456789abcdef0123456789abcdef").status_code == 404


def test_a_callback_to_a_host_not_allowed_is_refused_before_anything_is_stored(alice):
    # the test server allows callbacks to 127.0.0.1 only (ORCHESTRATOR_CALLBACK_HOSTS)
    refused = alice.post("/v1/deployments", json={
        "name": "hooked", "template": support.template_text(),
        "callback_url": "http://localhost:9/hook"})
    assert refused.status_code == 422, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/callback-refused")
    assert "callback_url" in problem["detail"] and "'localhost'" in problem["detail"]
    assert all(d["name"] != "hooked" for d in alice.get("/v1/deployments").json())
    made = alice.post("/v1/deployments", json={"name": "hooked",
                                               "template": support.template_text()})
    deployment_id = made.json()["id"]
    support.wait_for(alice, deployment_id)
    metadata = alice.delete(f"/v1/deployments/{deployment_id}",
                            params={"callback_url": "http://169.254.169.254/latest/"})
    assert metadata.status_code == 422 and "169.254.169.254" in metadata.json()["detail"]
    assert alice.get(f"/v1/deployments/{deployment_id}").json()["status"] == "deployed"
    patched = alice.patch(f"/v1/deployments/{deployment_id}", json={
        "inputs": {}, "callback_url": "http://10.0.0.1/hook"})
    assert patched.status_code == 422
    assert alice.delete(f"/v1/deployments/{deployment_id}").status_code == 202


def test_duplicate_name_is_a_conflict(alice):
    body = {"name": "twice", "template": support.template_text()}
    first = alice.post("/v1/deployments", json=body)
    assert first.status_code == 202
    second = alice.post("/v1/deployments", json=body)
    assert second.status_code == 409 and second.json()["type"].endswith("/name-taken")
    support.wait_for(alice, first.json()["id"])


def test_catalogue_and_sites(alice):
    templates = alice.get("/v1/templates").json()
    assert templates and all({"name", "description", "inputs"} <= set(t) for t in templates)
    one = alice.get(f"/v1/templates/{templates[0]['name']}").json()
    assert one["name"] == templates[0]["name"]
    sites = alice.get("/v1/sites").json()["sites"]
    assert [s["name"] for s in sites] == ["sim"]
    assert "options" not in sites[0] and "credentials" not in sites[0]


def test_api_tokens_for_ci(server, alice):
    made = alice.post("/v1/tokens", json={"name": "ci", "expires_in_days": 30})
    assert made.status_code == 201
    token = made.json()["token"]
    assert token.startswith("orch_")
    listed = alice.get("/v1/tokens").json()
    assert [t["name"] for t in listed] == ["ci"] and "token" not in listed[0]
    with support.client(server, token) as ci:
        me = ci.get("/v1/me").json()
        assert me["via"] == "api-token" and me["owner"] == alice.get("/v1/me").json()["owner"]
        assert ci.post("/v1/tokens", json={"name": "again"}).status_code == 403
        assert alice.delete(f"/v1/tokens/{made.json()['id']}").status_code == 204
        assert ci.get("/v1/me").status_code == 401


def test_the_polled_route_answers_alike_on_its_fast_path_and_through_the_app(server, issuer,
                                                                            alice):
    """GET /v1/deployments/{id} with a recently verified OIDC token is answered before
    FastAPI's routing; with an API token (looked up every time) it goes through the app.
    Both answers are the same, and so are the refusals."""
    created = alice.post("/v1/deployments", json={"name": "polled",
                                                  "template": support.template_text()})
    deployment_id = created.json()["id"]
    support.wait_for(alice, deployment_id)
    alice.get("/v1/me")  # the token is verified now: the next read takes the fast path
    fast = alice.get(f"/v1/deployments/{deployment_id}")
    token = alice.post("/v1/tokens", json={"name": "poll"}).json()
    with support.client(server, token["token"]) as ci:
        slow = ci.get(f"/v1/deployments/{deployment_id}")
    alice.delete(f"/v1/tokens/{token['id']}")
    assert fast.status_code == slow.status_code == 200
    assert fast.json() == slow.json() and fast.json()["status"] == "deployed"
    assert fast.headers["content-type"] == slow.headers["content-type"] == "application/json"
    with support.client(server, issuer.token("mallory")) as mallory:
        mallory.get("/v1/me")
        hidden = mallory.get(f"/v1/deployments/{deployment_id}")
    assert hidden.status_code == 404
    assert hidden.headers["content-type"] == "application/problem+json"
    missing = alice.get("/v1/deployments/no-such-id")
    assert missing.status_code == 404 and missing.json()["status"] == 404


def test_remote_cli_prints_what_the_local_cli_prints(server, issuer, tmp_path):
    template = tmp_path / "remote-demo.yaml"
    template.write_text(support.template_text())
    env = {**os.environ, "ORCHESTRATOR_URL": server.url,
           "ORCHESTRATOR_TOKEN": issuer.token("carol")}

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    deployed = cli("deploy", str(template), "--yes")
    assert deployed.returncode == 0, deployed.stderr
    assert deployed.stdout.strip() == "Deployment 'remote-demo' deployed."
    listed = cli("list")
    assert "remote-demo" in listed.stdout and "deployed" in listed.stdout
    status = cli("status", "remote-demo", "--format", "json")
    assert json.loads(status.stdout)["deployment"]["status"] == "deployed"
    outputs = cli("outputs", "remote-demo")
    assert "vm_ip" in outputs.stdout
    logs = cli("logs", "remote-demo")
    assert "apply-finished" in logs.stdout or "deployed" in logs.stdout
    missing = cli("status", "nope")
    assert missing.returncode == 1 and "no deployment named 'nope'" in missing.stderr
    deleted = cli("delete", "remote-demo", "--yes")
    assert deleted.returncode == 0 and "Deployment 'remote-demo' deleted." in deleted.stdout
    assert "remote-demo" not in cli("list").stdout


def test_a_canary_secret_never_leaks(server, issuer, alice):
    credentials = alice.put("/v1/credentials/sim", json={"credentials": {"password": CANARY}})
    assert credentials.status_code == 204
    response = alice.post("/v1/deployments", json={
        "name": "canary", "template": support.template_text(),
        "inputs": {"db_password": CANARY}})
    assert response.status_code == 202
    location = response.headers["location"]
    record = support.wait_for(alice, response.json()["id"])
    assert record["status"] == "deployed", record
    seen = [response.text, alice.get(location).text, alice.get("/v1/deployments").text,
            alice.get(f"{location}/events").text, alice.get(f"{location}/plan").text,
            alice.get(f"{location}/outputs").text, alice.get(f"{location}/work").text,
            alice.get(f"{location}/resources").text, alice.get(f"{location}/template").text,
            alice.get("/v1/credentials").text]
    with alice.stream("GET", f"{location}/events",
                      headers={"Accept": "text/event-stream"}) as stream:
        seen.append("".join(stream.iter_text()))
    assert alice.get("/v1/credentials").json()[0]["site"] == "sim"
    for text in seen:
        assert CANARY not in text
    assert CANARY not in server.output()
    db = (server.log.parent / "state.db").read_bytes()
    assert CANARY.encode() not in db
