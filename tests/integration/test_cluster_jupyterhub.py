"""JupyterHub for real: the jupyterhub role deployed through the engine into a
local-provider container (Debian 12, JupyterHub and oauthenticator from PyPI, the proxy
from Debian), with OpenID Connect login against a test issuer.

The issuer (tests/fixtures/roles/oidc_issuer.py) has its own RSA key, JWKS and discovery
document, generated here; it runs inside the hub's node on 127.0.0.1:9000, because the
hub must reach it and a container cannot reach the host's loopback. The test plays the
browser: it asks the hub to log in, visits the issuer's authorization endpoint from
inside the node (where the issuer listens), and brings the code back to the hub's
callback through the hub's published port. The hub exchanges the code (client secret
checked), reads userinfo, creates the system user and puts it in its OIDC group. Then
the orchestrator's service token (REST API) spawns the user's server and issues a token
for the user, with which a notebook cell runs over the kernel's websocket."""
from __future__ import annotations

import base64
import json
import shlex
import time
import urllib.parse

import pytest

from tests.conftest import ROOT
from tests.fixtures.roles.deployed import Deployed, require_podman_and_ansible, run_cell

require_podman_and_ansible()
pytestmark = pytest.mark.slow

TEMPLATE = str(ROOT / "tests" / "fixtures" / "roles" / "jupyterhub.yaml")
ISSUER = "http://127.0.0.1:9000/"
SECRET = "client-secret-for-tests"
VISIT = """import http.client, sys, urllib.parse
url = urllib.parse.urlsplit(sys.argv[1])
conn = http.client.HTTPConnection(url.netloc, timeout=30)
conn.request("GET", url.path + "?" + url.query)
reply = conn.getresponse()
print(reply.status, reply.getheader("Location"))
"""


def _b64(number: int) -> str:
    raw = number.to_bytes((number.bit_length() + 7) // 8, "big")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _issuer_config(folder) -> None:
    import jwt
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = key.public_key().public_numbers()
    now = int(time.time())
    claims = {"sub": "7f3a-alice", "preferred_username": "alice",
              "email": "alice@example.org", "groups": ["ml-users"]}
    id_token = jwt.encode({**claims, "iss": ISSUER, "aud": "hub-client", "iat": now,
                           "exp": now + 7200}, key, algorithm="RS256",
                          headers={"kid": "test-key"})
    (folder / "issuer.json").write_text(json.dumps({
        "issuer": ISSUER, "port": 9000, "client_id": "hub-client", "client_secret": SECRET,
        "claims": claims, "id_token": id_token,
        "jwks": {"keys": [{"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "test-key",
                           "n": _b64(public.n), "e": _b64(public.e)}]}}))


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    folder = tmp_path_factory.mktemp("jupyterhub")
    _issuer_config(folder)
    deployed = Deployed(folder, TEMPLATE, "hub",
                        [f"issuer_dir={folder}", f"oidc_client_secret={SECRET}"])
    try:
        assert deployed.applied.run.ok, deployed.failure()
        yield deployed
    finally:
        deployed.close()


@pytest.fixture(scope="module")
def hub_url(hub) -> str:
    """Where the hub's published port answers: http://127.0.0.1:<port>"""
    return "http://" + hub.node("hub_vm")["endpoints"]["8000/tcp"]


@pytest.fixture(scope="module")
def hub_client(hub_url):
    import httpx

    with httpx.Client(base_url=hub_url, follow_redirects=False, timeout=60) as client:
        yield client


def _service(hub) -> dict:
    token = hub.ssh("hub_vm", 0, "cat /etc/jupyterhub/api_token").stdout.strip()
    return {"Authorization": f"token {token}"}


def test_hub_url_output_is_the_published_endpoint(hub, hub_url, hub_client):
    assert hub.orch.outputs("hub")["hub_url"] == f"{hub_url}/"
    assert hub_client.get("/hub/api/").json()["version"].startswith("5.")


def test_oidc_login_through_the_test_issuer(hub, hub_url, hub_client):
    login = hub_client.get("/hub/oauth_login")
    assert login.status_code == 302, login.text
    authorize = login.headers["location"]
    assert authorize.startswith(ISSUER + "authorize?"), authorize
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(authorize).query))
    assert query["client_id"] == "hub-client"
    assert query["redirect_uri"] == f"{hub_url}/hub/oauth_callback"
    # the browser's visit to the issuer, made where the issuer listens
    visit = hub.ssh("hub_vm", 0, f"python3 -c {shlex.quote(VISIT)} {shlex.quote(authorize)}")
    status, callback = visit.stdout.split()
    assert status == "302" and callback.startswith(query["redirect_uri"] + "?code=")
    done = hub_client.get(callback)  # the hub exchanges the code and reads userinfo
    assert done.status_code == 302, done.text
    assert any(name.startswith("jupyterhub-session-id") for name in hub_client.cookies)
    home = hub_client.get("/hub/home")
    assert home.status_code == 200 and "alice" in home.text
    user = hub_client.get("/hub/api/users/alice", headers=_service(hub)).json()
    assert user["admin"] is True and "ml-users" in user["groups"]
    assert hub.ssh("hub_vm", 0, "getent passwd alice").stdout.split(":")[5] == \
        "/jupyterhub/home/alice"


def test_spawn_a_server_and_run_a_notebook_cell(hub, hub_url, hub_client):
    service = _service(hub)
    created = hub_client.post("/hub/api/users", json={"usernames": ["alice"]}, headers=service)
    assert created.status_code in (201, 409), created.text  # made by the login already
    spawned = hub_client.post("/hub/api/users/alice/server", headers=service)
    assert spawned.status_code in (201, 202), spawned.text
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        servers = hub_client.get("/hub/api/users/alice", headers=service).json()["servers"]
        if servers.get("", {}).get("ready"):
            break
        time.sleep(2)
    else:
        raise AssertionError(f"alice's server never became ready: {servers}\n" +
                             hub.ssh("hub_vm", 0, "tail -30 /var/log/jupyterhub.log").stdout)
    issued = hub_client.post("/hub/api/users/alice/tokens", headers=service,
                             json={"note": "test", "expires_in": 900})
    assert issued.status_code == 201, issued.text
    printed = run_cell(f"{hub_url}/user/alice", issued.json()["token"],
                       "import os, getpass\nprint(6 * 7, getpass.getuser(), os.getcwd())")
    assert printed.split() == ["42", "alice", "/jupyterhub/home/alice"]
    stopped = hub_client.delete("/hub/api/users/alice/server", headers=service)
    assert stopped.status_code in (202, 204), stopped.text


def test_second_run_of_the_role_changes_nothing(hub):
    changed = hub.rerun("jupyterhub", 0)
    assert set(changed) == {"Standard.create", "Standard.configure", "Standard.start"}
    assert changed == dict.fromkeys(changed, 0), changed


def test_delete_leaves_nothing(hub):
    assert hub.delete()
    assert hub.containers() == {"ps": [], "network": [], "volume": []}
