"""The auth matrix against a real `orchestrator serve` and real OIDC issuers on loopback:
no token, expired, wrong issuer, wrong audience, forged key, another user's deployment,
group sharing (INDIGO-IAM `groups` and WLCG `wlcg.groups`), admin. No bypass flag exists.
Groups and admin rights are bound to their issuer: the second issuer's `physics` and `admins`
are not the first one's."""
from __future__ import annotations

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes.oidc_issuer import OIDCIssuer
from tests.integration import api_server as support

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def issuers():
    with OIDCIssuer() as trusted, OIDCIssuer(groups_claim="wlcg.groups") as wlcg, \
            OIDCIssuer() as stranger:
        yield trusted, wlcg, stranger


@pytest.fixture(scope="module")
def server(tmp_path_factory, issuers):
    trusted, wlcg, _ = issuers
    tmp = tmp_path_factory.mktemp("auth")
    running = support.start_server(tmp, db=f"sqlite:///{tmp / 'state.db'}",
                                   sites=support.simulated_sites(tmp),
                                   issuer=[trusted.url, wlcg.url],
                                   extra_env={"ORCHESTRATOR_ADMIN_GROUPS":
                                              f"{trusted.url}#admins"})
    yield running
    running.stop()


@pytest.fixture(scope="module")
def shared(server, issuers):
    """A deployment of alice shared with group 'physics', and a private one."""
    trusted = issuers[0]
    with support.client(server, trusted.token("alice", groups=["physics"])) as alice:
        made = {}
        for name, group in (("shared", "physics"), ("private", None)):
            response = alice.post("/v1/deployments", json={
                "name": name, "template": support.template_text(), "group": group})
            assert response.status_code == 202, response.text
            made[name] = response.json()["id"]
        for deployment_id in made.values():
            support.wait_for(alice, deployment_id)
    return made


def _get(server, token, path="/v1/deployments"):
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.get(f"{server.url}{path}", headers=headers, timeout=30)


def _unauthorized(response, reason: str):
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert reason in response.json()["detail"]


def test_no_token(server):
    _unauthorized(_get(server, None), "no bearer token")


def test_garbage_token(server):
    _unauthorized(_get(server, "not-a-jwt"), "not a JWT")


def test_expired_token(server, issuers):
    _unauthorized(_get(server, issuers[0].token("alice", expires_in=-3600)), "expired")


def test_wrong_issuer(server, issuers):
    _unauthorized(_get(server, issuers[2].token("alice")), "are not accepted")


def test_wrong_audience(server, issuers):
    _unauthorized(_get(server, issuers[0].token("alice", audience="another-service")),
                  "not meant for this service")


def test_missing_audience(server, issuers):
    _unauthorized(_get(server, issuers[0].token("alice", audience=None)), "invalid")


def test_token_signed_by_another_key_claiming_a_trusted_issuer(server, issuers):
    forged_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = issuers[0].token("alice", key=forged_key)
    _unauthorized(_get(server, token), "invalid")


def test_unknown_key_id(server, issuers):
    _unauthorized(_get(server, issuers[0].token("alice", kid="unknown")), "no key")


def test_health_and_version_are_open(server):
    assert _get(server, None, "/health").status_code == 200
    assert _get(server, None, "/version").status_code == 200


def test_owner_sees_both(server, issuers, shared):
    names = {d["name"] for d in _get(server, issuers[0].token("alice")).json()}
    assert names == {"shared", "private"}


def test_another_user_sees_neither(server, issuers, shared):
    bob = issuers[0].token("bob")
    assert _get(server, bob).json() == []
    for deployment_id in shared.values():
        response = _get(server, bob, f"/v1/deployments/{deployment_id}")
        assert response.status_code == 404
        assert _get(server, bob, f"/v1/deployments/{deployment_id}/outputs").status_code == 404
    deleted = httpx.delete(f"{server.url}/v1/deployments/{shared['private']}",
                           headers={"Authorization": f"Bearer {bob}"})
    assert deleted.status_code == 404


def test_same_subject_of_another_issuer_is_another_user(server, issuers, shared):
    assert _get(server, issuers[1].token("alice")).json() == []


def test_group_members_share(server, issuers, shared):
    carol = issuers[0].token("carol", groups=["physics"])
    names = {d["name"] for d in _get(server, carol).json()}
    assert names == {"shared"}
    assert _get(server, carol, f"/v1/deployments/{shared['shared']}").status_code == 200
    assert _get(server, carol, f"/v1/deployments/{shared['private']}").status_code == 404


def _create(server, token, name, group):
    with support.client(server, token) as caller:
        return caller.post("/v1/deployments", json={
            "name": name, "template": support.template_text(), "group": group})


def test_a_group_of_another_issuer_does_not_share(server, issuers, shared):
    dave = issuers[1].token("dave", groups=["/physics"])
    assert _get(server, dave).json() == []
    for deployment_id in shared.values():
        assert _get(server, dave, f"/v1/deployments/{deployment_id}").status_code == 404
    me = _get(server, dave, "/v1/me").json()
    assert me["groups"] == ["physics"]


def test_an_admin_group_of_another_issuer_is_not_admin(server, issuers, shared):
    root = issuers[1].token("root", groups=["admins"])
    assert _get(server, root, "/v1/me").json()["admin"] is False
    assert _get(server, root).json() == []
    assert _get(server, root, f"/v1/deployments/{shared['private']}").status_code == 404
    deleted = httpx.delete(f"{server.url}/v1/deployments/{shared['private']}",
                           headers={"Authorization": f"Bearer {root}"})
    assert deleted.status_code == 404


def test_wlcg_groups_claim_shares_within_its_issuer(server, issuers, shared):
    trusted, wlcg, _ = issuers
    dave = wlcg.token("dave", groups=["/physics"])
    made = {}
    for name, group in (("wlcg-plain", "physics"), ("wlcg-qualified", f"{wlcg.url}#physics")):
        response = _create(server, dave, name, group)
        assert response.status_code == 202, response.text
        made[name] = response.json()["id"]
    erin = wlcg.token("erin", groups=["/physics"])  # the same issuer's group: shares
    assert {d["name"] for d in _get(server, erin).json()} == set(made)
    carol = trusted.token("carol", groups=["physics"])  # the other issuer's: does not
    assert "wlcg-plain" not in {d["name"] for d in _get(server, carol).json()}
    for deployment_id in made.values():
        assert _get(server, erin, f"/v1/deployments/{deployment_id}").status_code == 200
        assert _get(server, carol, f"/v1/deployments/{deployment_id}").status_code == 404
    with support.client(server, dave) as owner:
        for deployment_id in made.values():
            assert support.wait_for(owner, deployment_id)["status"] == "deployed"


def test_a_group_of_another_issuer_cannot_be_named(server, issuers):
    trusted, wlcg, _ = issuers
    alice = trusted.token("alice", groups=["physics"])
    response = _create(server, alice, "crossing", f"{wlcg.url}#physics")
    assert response.status_code == 403, response.text


def test_admin_sees_everything(server, issuers, shared):
    admin = issuers[0].token("root", groups=["admins"])
    assert {d["name"] for d in _get(server, admin).json()} >= {"shared", "private"}
    assert _get(server, admin, f"/v1/deployments/{shared['private']}").status_code == 200
    assert _get(server, admin, "/v1/me").json()["admin"] is True
    assert _get(server, issuers[0].token("eve"), "/v1/me").json()["admin"] is False


def test_list_filters(server, issuers, shared):
    alice = issuers[0].token("alice", groups=["physics"])
    assert [d["name"] for d in _get(server, alice, "/v1/deployments?group=physics").json()] \
        == ["shared"]
    assert _get(server, alice, "/v1/deployments?status=failed").json() == []
