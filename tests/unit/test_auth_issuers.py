"""Groups and administrator rights are bound to the issuer that vouches for them: a group
name alone never crosses issuers (the API's auth matrix runs the same against a server)."""
import pytest
from click.testing import CliRunner

from orchestrator.api.auth import OIDCVerifier, Principal, admin_claims, owner_of

A, B = "https://iam-a.example.org/", "https://iam-b.example.org/realm"


def _claims(issuer, sub, groups):
    return {"iss": issuer, "sub": sub, "groups": groups}


def _principal(issuer, sub, groups=()):
    return Principal(subject=sub, issuer=issuer, owner=owner_of(issuer, sub),
                     groups=frozenset(groups), admin=False)


def test_admin_groups_and_subjects_count_only_for_their_issuer():
    verifier = OIDCVerifier([A, B], admin_groups=[f"{A}#admins"],
                            admin_subjects=[f"{B}#root-b"])
    assert verifier.principal(_claims(A, "x", ["admins"])).admin is True
    assert verifier.principal(_claims(B, "x", ["admins"])).admin is False
    assert verifier.principal(_claims(B, "root-b", [])).admin is True
    assert verifier.principal(_claims(A, "root-b", [])).admin is False


def test_a_plain_admin_name_binds_to_the_one_issuer_and_is_refused_with_several():
    assert OIDCVerifier([A], admin_groups=["admins"]).principal(
        _claims(A, "x", ["admins"])).admin is True
    with pytest.raises(ValueError, match="names no issuer"):
        OIDCVerifier([A, B], admin_groups=["admins"])
    with pytest.raises(ValueError, match="not trusted"):
        admin_claims([A], ["https://elsewhere.example.org#admins"])


def test_a_deployment_group_belongs_to_its_owners_issuer_unless_qualified():
    alice = owner_of(A, "alice")
    carol_a = _principal(A, "carol", ["physics"])
    dave_b = _principal(B, "dave", ["physics"])
    assert carol_a.can_see(alice, "physics")
    assert not dave_b.can_see(alice, "physics")
    assert dave_b.can_see(alice, f"{B}#physics")
    assert not carol_a.can_see(alice, f"{B}#physics")
    assert dave_b.in_group("physics") and not carol_a.in_group(f"{B}#physics")


def test_serve_refuses_an_admin_group_that_names_no_issuer_among_several(tmp_path):
    from orchestrator.cli.main import cli

    result = CliRunner().invoke(cli, ["--db", f"sqlite:///{tmp_path / 's.db'}", "serve",
                                      "--issuer", A, "--issuer", B, "--admin-group", "admins"])
    assert result.exit_code == 2, result.output
    assert "names no issuer" in result.output
