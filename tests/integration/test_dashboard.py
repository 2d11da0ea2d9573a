"""The dashboard end to end in headless Chromium (Playwright driving the system's
/usr/bin/chromium): sign in at a real OIDC issuer on loopback (authorization code + PKCE),
pick a template, fill the generated form (one invalid value rejected inline by the
service's validator), deploy on a simulated site, watch it complete, open the outputs,
delete. Screenshots are kept under $PYTEST_ARTIFACTS (default tests/artifacts/dashboard)."""
from __future__ import annotations

import os
import re
from pathlib import Path

import httpx
import pytest

from tests.conftest import ROOT
from tests.fakes.oidc_issuer import OIDCIssuer
from tests.integration import api_server as support

pytestmark = pytest.mark.slow
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
CANARY = "canary-dashboard-5e1f0c"
CLIENT_ID = "orchestrator-dashboard"


WEB_SERVICE = """\
tosca_definitions_version: tosca_simple_yaml_1_3
metadata:
  display_name: Web service
description: A small web service behind one address, for trying the dashboard.
imports: [orchestrator/all.yaml]
topology_template:
  inputs:
    replicas:
      type: integer
      description: Number of servers.
      default: 1
      constraints: [{in_range: [1, 4]}]
    flavor:
      type: string
      description: Size of each server.
      default: small
      constraints: [{valid_values: [small, medium, large]}]
    public:
      type: boolean
      description: Reachable from the internet.
      default: true
    admin_password:
      type: string
      description: Password of the admin account.
      required: false
    packages:
      type: list
      description: Extra packages.
      default: [nginx]
      entry_schema: {type: string}
    labels:
      type: map
      description: Labels put on every server.
      default: {team: physics}
      entry_schema: {type: string}
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 1}}
        os: {properties: {distribution: ubuntu}}
        scalable: {properties: {count: {get_input: replicas}}}
  outputs:
    url:
      value: {concat: ["http://", {get_attribute: [vm, private_address, 0]}, ":8080/"]}
    addresses:
      value: {get_attribute: [vm, private_address]}
"""


@pytest.fixture(scope="module")
def artifacts() -> Path:
    folder = Path(os.environ.get("PYTEST_ARTIFACTS") or ROOT / "tests" / "artifacts") \
        / "dashboard"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def issuer():
    with OIDCIssuer() as running:
        running.add_user("alice", "alice-pw", groups=["physics"])
        yield running


@pytest.fixture(scope="module")
def server(tmp_path_factory, issuer, artifacts):
    tmp = tmp_path_factory.mktemp("dashboard")
    catalogue = tmp / "catalogue"
    catalogue.mkdir()
    (catalogue / "web-service.yaml").write_text(WEB_SERVICE)
    (catalogue / "small.yaml").write_text(support.template_text())
    running = support.start_server(
        tmp, db=f"sqlite:///{tmp / 'state.db'}", sites=support.simulated_sites(tmp),
        issuer=issuer.url, extra_env={"ORCHESTRATOR_TEMPLATES_DIR": str(catalogue),
                                      "ORCHESTRATOR_DASHBOARD_CLIENT_ID": CLIENT_ID})
    yield running
    running.stop()
    (artifacts / "server.log").write_text(running.output())
    assert CANARY not in running.output(), "the secret input reached the server's log"


@pytest.fixture
def page(artifacts):
    from playwright.sync_api import sync_playwright

    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing: scripts/test-deps.d/60-browser.sh "
                        "installs it")
        pytest.skip("chromium is not installed (run scripts/test-deps.d/60-browser.sh); in "
                    "CI this test runs")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 900})
            context.set_default_timeout(20_000)
            yield context.new_page()
        finally:
            browser.close()


def _unlabelled_controls(page) -> list[str]:
    return page.evaluate("""() => Array.from(document.querySelectorAll(
        'input:not([type=hidden]), select, textarea'))
        .filter(e => !e.labels || e.labels.length === 0).map(e => e.name || e.id)""")


def test_form_fields_follow_input_types_and_constraints():
    from orchestrator.dashboard import forms

    fields = {f.name: f for f in forms.fields_for([
        {"name": "cpus", "type": "integer", "default": 2,
         "constraints": [{"greater_than": 0}, {"less_or_equal": 64}]},
        {"name": "size", "type": "float", "constraints": [{"in_range": [0.5, 2.5]}]},
        {"name": "os", "type": "string", "default": "ubuntu",
         "constraints": [{"valid_values": ["ubuntu", "debian"]}]},
        {"name": "token", "type": "string", "default": "s3cr3t", "secret": True},
        {"name": "on", "type": "boolean", "default": False},
        {"name": "repos", "type": "list", "default": [{"url": "x"}]},
        {"name": "tags", "type": "map", "default": {"a": 1}}])}
    assert (fields["cpus"].widget, fields["cpus"].minimum, fields["cpus"].maximum) == \
        ("number", "1", "64")
    assert (fields["size"].step, fields["size"].minimum, fields["size"].maximum) == \
        ("any", "0.5", "2.5")
    assert fields["os"].widget == "select" and fields["os"].options == ["ubuntu", "debian"]
    assert fields["token"].widget == "password" and fields["token"].value == ""
    assert fields["on"].widget == "checkbox" and not fields["on"].checked
    assert fields["repos"].value == "- url: x" and fields["tags"].value == "a: 1"
    form = {"input.cpus": ["4"], "input.size": ["x"], "input.os": ["debian"],
            "input.token": ["hunter22"], "input.on": ["on"], "input.repos": ["- url: y"],
            "input.tags": ["not: [valid"]}
    values = forms.submitted_inputs(list(fields.values()), form)
    assert values == {"cpus": 4, "size": "x", "os": "debian", "token": "hunter22",
                      "on": True, "repos": [{"url": "y"}]}
    assert fields["tags"].errors and "YAML" in fields["tags"].errors[0]
    assert fields["token"].value == "" and fields["cpus"].value == "4"


def test_diagnostics_land_on_their_fields_with_secrets_masked():
    from orchestrator.dashboard import forms
    from orchestrator.diagnostics import Diagnostic, Severity

    fields = forms.fields_for([{"name": "cpus", "type": "integer"},
                               {"name": "token", "type": "string", "secret": True}])
    inputs = {"cpus": 3, "token": "hunter22"}
    general = forms.attach_diagnostics(fields, inputs, [
        Diagnostic("constraint-violation", Severity.ERROR, 'The value "hunter22" is bad',
                   file="--set #2"),
        Diagnostic("constraint-violation", Severity.ERROR, "input 'cpus' is odd",
                   file="t.yaml", line=3),
        Diagnostic("type-mismatch", Severity.ERROR, "'token' must be hunter22",
                   file="t.yaml", line=9, node="vm"),
        Diagnostic("type-mismatch", Severity.ERROR, "something else", file="t.yaml", line=12),
    ], secrets=["hunter22"])
    assert fields[0].errors == ["input 'cpus' is odd"]
    assert fields[1].errors == ['The value "******" is bad']
    assert general == ["t.yaml:12:0: error [type-mismatch] something else"]


def test_pages_need_a_session(server):
    with httpx.Client(base_url=server.url, timeout=20) as web:
        root = web.get("/")
        assert root.status_code == 307 and root.headers["location"] == "/ui/"
        home = web.get("/ui/")
        assert home.status_code == 303
        assert home.headers["location"].startswith("/ui/signin?next=")
        web.cookies.set("orch_session", "gAAAAABforged")
        assert web.get("/ui/").status_code == 303
        web.cookies.clear()
        assert web.get("/ui/deployments/x/progress").status_code == 401
        login = web.get("/ui/login")
        assert login.status_code == 303
        assert "code_challenge_method=S256" in login.headers["location"]
        assert f"client_id={CLIENT_ID}" in login.headers["location"]
        stolen = web.get("/ui/callback", params={"code": "x", "state": "not-this-one"})
        assert stolen.status_code == 400 and "state" in stolen.text
        css = web.get("/ui/static/dashboard.css")
        assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
        assert web.get("/ui/static/..%2Fpages.py").status_code == 404


def test_sign_in_deploy_watch_outputs_and_delete(server, page, artifacts):
    from playwright.sync_api import expect

    def shot(name: str) -> None:
        page.screenshot(path=str(artifacts / f"{name}.png"), full_page=True)

    # sign in at the issuer: authorization code + PKCE, back to where we started
    page.goto(f"{server.url}/")
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
    shot("01-sign-in")
    page.get_by_role("link", name="Sign in").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("alice-pw")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Deployments", exact=True)).to_be_visible()
    expect(page.get_by_text("alice", exact=True)).to_be_visible()
    assert page.url == f"{server.url}/ui/"

    # the catalogue, with descriptions
    page.get_by_role("link", name="New deployment").first.click()
    expect(page.get_by_text("A small web service behind one address")).to_be_visible()
    shot("02-catalogue")
    page.get_by_role("link", name="Web service").click()

    # the generated form: one widget per input type, every control labelled
    expect(page.get_by_role("heading", name="Web service", exact=True)).to_be_visible()
    assert _unlabelled_controls(page) == []
    replicas = page.get_by_label("Replicas")
    assert replicas.get_attribute("type") == "number"
    assert (replicas.get_attribute("min"), replicas.get_attribute("max")) == ("1", "4")
    assert page.get_by_label("Flavor").evaluate("e => e.tagName") == "SELECT"
    assert page.get_by_label("Public").get_attribute("type") == "checkbox"
    assert page.get_by_label("Admin password").get_attribute("type") == "password"
    expect(page.get_by_label("Packages")).to_have_value("nginx")
    expect(page.get_by_label("Labels")).to_have_value("team: physics")
    page.get_by_label("Name", exact=True).fill("web1")
    page.get_by_label("Share with group").select_option("physics")
    replicas.fill("9")  # out of range: the validator refuses it
    page.get_by_label("Flavor").select_option("medium")
    page.get_by_label("Public").uncheck()
    page.get_by_label("Admin password").fill(CANARY)
    page.get_by_label("Packages").fill("nginx\ncurl")
    page.get_by_label("Only the sites I choose").check()
    page.get_by_label("sim").check()
    shot("03-form")
    page.get_by_role("button", name="Deploy").click()

    # rejected inline, next to the field, with the validator's message
    error = page.locator("#error-replicas")
    expect(error).to_contain_text("out of range")
    assert page.get_by_label("Replicas").get_attribute("aria-invalid") == "true"
    assert "error-replicas" in page.get_by_label("Replicas").get_attribute("aria-describedby")
    expect(page.locator("[data-error-summary]")).to_be_focused()
    expect(page.get_by_label("Flavor")).to_have_value("medium")
    expect(page.get_by_label("Packages")).to_have_value("nginx\ncurl")
    expect(page.get_by_label("Admin password")).to_have_value("")
    assert not page.get_by_label("Public").is_checked()
    assert CANARY not in page.content()
    shot("04-invalid-value")

    # fix it with the keyboard and deploy
    page.get_by_label("Replicas").fill("2")
    page.get_by_label("Admin password").fill(CANARY)
    page.get_by_role("button", name="Deploy").focus()
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"/ui/deployments/[0-9a-f]+$"))
    deployment_url = page.url
    shot("05-deploying")

    # live progress until it is deployed (the page polls and reloads itself)
    expect(page.locator("h1 [data-status-badge]")).to_have_text("deployed", timeout=60_000)
    expect(page.locator("[data-events]")).to_contain_text("apply-finished")
    assert CANARY not in page.content()
    shot("06-deployed")

    # the outputs: the URL is a link, lists are listed
    outputs = page.locator("#outputs")
    link = outputs.locator("a.output-link")
    expect(link).to_be_visible()
    assert re.fullmatch(r"http://10\.[\d.]+:8080/", link.get_attribute("href"))
    assert link.get_attribute("rel") == "noopener noreferrer"
    expect(outputs.locator(".output-list li")).to_have_count(2)
    expect(page.get_by_role("rowheader", name="vm[1]")).to_be_visible()
    page.get_by_text("Template", exact=True).click()
    expect(page.locator("pre.code")).to_contain_text("orchestrator.nodes.Compute")
    outputs.scroll_into_view_if_needed()
    shot("07-outputs")

    # a node's configuration log, as contextualisation writes it
    logs = Path(server.env["XDG_DATA_HOME"]) / "orchestrator" / "deployments" / \
        deployment_url.rsplit("/", 1)[1] / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    (logs / "vm-0.log").write_text("=== configure ===\nTASK [nginx] ok\n")
    page.reload()
    page.get_by_role("row", name=re.compile(r"vm\[0\]")).get_by_role("link", name="log").click()
    expect(page.get_by_role("heading", name="Log of vm-0", exact=True)).to_be_visible()
    expect(page.locator("pre.log")).to_contain_text("TASK [nginx] ok")
    page.go_back()

    # apply again: the same work queued once more, live, back to deployed
    page.get_by_role("button", name="Apply again").click()
    expect(page.locator("[data-events] .kind", has_text="work-started")).to_have_count(
        2, timeout=30_000)
    expect(page.locator("h1 [data-status-badge]")).to_have_text("deployed", timeout=60_000)

    # listed with its badge and group
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Deployments").click()
    row = page.locator("[data-deployments] tbody tr", has_text="web1")
    expect(row.locator(".badge")).to_have_text("deployed")
    expect(row).to_contain_text("physics")
    shot("08-list")

    # a second deployment may not take the same name
    page.goto(f"{server.url}/ui/templates/web-service")
    page.get_by_label("Name", exact=True).fill("web1")
    page.get_by_role("button", name="Deploy").click()
    expect(page.locator("#error-name")).to_contain_text("web1")
    assert page.get_by_label("Name", exact=True).get_attribute("aria-invalid") == "true"
    page.set_viewport_size({"width": 390, "height": 844})  # a phone: nothing overflows
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    shot("09-phone-form")
    page.set_viewport_size({"width": 1280, "height": 900})

    # delete (after confirming), watch it go
    page.goto(deployment_url)
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete").click()
    expect(page.get_by_text("The deployment was deleted.")).to_be_visible(timeout=60_000)
    expect(page.locator("[data-deployments] tbody tr", has_text="web1")).to_have_count(0)
    shot("10-deleted")

    # signing out ends the session
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_role("heading", name="You are signed out", exact=True)).to_be_visible()
    page.goto(f"{server.url}/ui/")
    expect(page.get_by_role("heading", name="Sign in", exact=True)).to_be_visible()
