"""The site catalogue: sites.yaml loading, discovery and validation."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from orchestrator.diagnostics import CODES
from orchestrator.errors import OrchestratorError
from orchestrator.providers.base import GpuOffer
from orchestrator.sites import DEFAULT_SITE, Site, find_sites_file, load_sites, sites_schema

REPO = Path(__file__).resolve().parents[2]
FULL = REPO / "tests" / "fixtures" / "sites" / "full.yaml"


@pytest.fixture(autouse=True)
def _no_user_catalogue(monkeypatch, tmp_path):
    """Never read the developer's own sites.yaml."""
    monkeypatch.delenv("ORCHESTRATOR_SITES", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-empty"))


def rendered(catalogue) -> str:
    return "\n".join(d.render() for d in catalogue.diagnostics)


def problems(catalogue) -> list[tuple[str, str, int]]:
    return [(d.severity.value, d.code, d.line) for d in catalogue.diagnostics]


# --- the full example ----------------------------------------------------------------------

def test_full_example_loads():
    catalogue = load_sites(str(FULL))
    assert list(catalogue.diagnostics) == [], rendered(catalogue)
    assert catalogue.ok and catalogue.source == str(FULL)
    assert [s.name for s in catalogue] == ["cnaf", "recas-one", "k8s-ml", "aws-burst",
                                           "laptop", "sim"]
    assert {s.provider for s in catalogue} == {"openstack", "opennebula", "kubernetes",
                                              "cloud", "local", "simulated"}
    cnaf = catalogue.get("cnaf")
    assert cnaf.credentials == {"cloud": "cnaf"}
    assert (cnaf.priority, cnaf.weight, cnaf.concurrency) == (10, 2.0, 20)
    assert cnaf.sla_ids == ("5e1daa7c2a8a5c7b1c8b4567",)
    assert cnaf.quotas.gpus == 8 and cnaf.quotas.memory_mib == 1600000
    assert cnaf.quotas.volumes == 100 and cnaf.quotas.used == {}
    gpu = cnaf.flavor("g1.a100x2")
    assert gpu.gpus == GpuOffer(2, "NVIDIA", "A100") and gpu.infiniband and gpu.disk_gib == 200
    image = cnaf.image("ubuntu-gpu")  # by alias, merged from a YAML anchor
    assert (image.name, image.distribution, image.version) == ("ubuntu-22.04-cuda", "ubuntu",
                                                               "22.04")
    assert (image.gpu_driver, image.cuda_version, image.architecture) == ("535", "12.2",
                                                                          "x86_64")
    assert cnaf.file == str(FULL) and cnaf.line == 12
    assert catalogue.get("recas-one").images[0].id == "512"
    assert catalogue.get("aws-burst").flavor("c5.large").preemptible
    assert catalogue.get("laptop").credentials == {} and catalogue.get("laptop").concurrency == 4
    assert catalogue.get("sim").options["faults"][0]["kind"] == "transient"
    assert type(catalogue.get("sim").options) is dict  # plain values, not positioned YAML
    assert [s.name for s in catalogue.for_sla("5e1daa7c2a8a5c7b1c8b4568")] == ["recas-one"]


def test_every_example_in_the_docs_loads(tmp_path):
    doc = (REPO / "docs" / "sites.md").read_text()
    blocks = [b for b in re.findall(r"```yaml\n(.*?)```", doc, re.DOTALL) if "sites:" in b]
    assert len(blocks) >= 6
    for number, block in enumerate(blocks):
        path = tmp_path / f"example{number}.yaml"
        path.write_text(block)
        catalogue = load_sites(str(path))
        assert list(catalogue.diagnostics) == [], f"{block}\n{rendered(catalogue)}"
        assert len(catalogue) >= 1


def test_the_shipped_schema_is_valid_draft_2020_12():
    from jsonschema import Draft202012Validator

    schema = sites_schema()
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("2020-12/schema")


# --- discovery ----------------------------------------------------------------------------

def test_discovery_order(monkeypatch, tmp_path):
    xdg = tmp_path / "xdg"
    (xdg / "orchestrator").mkdir(parents=True)
    (xdg / "orchestrator" / "sites.yaml").write_text("sites: []\n")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(xdg))
    assert find_sites_file(None) == str(xdg / "orchestrator" / "sites.yaml")
    monkeypatch.setenv("ORCHESTRATOR_SITES", str(tmp_path / "env.yaml"))
    assert find_sites_file(None) == str(tmp_path / "env.yaml")  # even before it exists
    assert find_sites_file(str(tmp_path / "arg.yaml")) == str(tmp_path / "arg.yaml")


def test_discovery_falls_back_to_dot_config(monkeypatch, tmp_path):
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert find_sites_file(None) is None
    config = tmp_path / ".config" / "orchestrator"
    config.mkdir(parents=True)
    (config / "sites.yaml").write_text("sites: []\n")
    assert find_sites_file(None) == str(config / "sites.yaml")


def test_load_uses_discovery(monkeypatch, write):
    path = write("mine.yaml", "sites: [{name: a, provider: local}]\n")
    monkeypatch.setenv("ORCHESTRATOR_SITES", path)
    assert list(load_sites().sites) == ["a"]
    other = write("other.yaml", "sites: [{name: b, provider: local}]\n")
    assert list(load_sites(other).sites) == ["b"]


def test_default_local_site_when_there_is_no_file():
    catalogue = load_sites()
    assert catalogue.source is None and catalogue.ok
    assert list(catalogue.sites.values()) == [DEFAULT_SITE]
    assert DEFAULT_SITE == Site(name="local", provider="local", priority=0)


def test_a_named_file_that_is_missing_is_an_error(tmp_path):
    catalogue = load_sites(str(tmp_path / "nope.yaml"))
    assert [d.code for d in catalogue.diagnostics] == ["file-not-found"]
    assert catalogue.sites == {}
    with pytest.raises(OrchestratorError, match="nope.yaml"):
        catalogue.raise_on_error()


# --- validation ---------------------------------------------------------------------------

def test_schema_error_points_at_the_offending_line(write):
    path = write("sites.yaml", """
        sites:
          - name: cnaf
            provider: openstack
            credentials: {cloud: cnaf}
            concurrency: many
    """)
    catalogue = load_sites(path)
    assert problems(catalogue) == [("error", "invalid-site", 5)]
    diag = catalogue.diagnostics.items[0]
    assert diag.file == path and diag.column == 5
    assert "site 'cnaf': concurrency must be an integer" in diag.message
    assert "invalid-site" in CODES
    assert catalogue.sites == {}  # an invalid site is not offered
    with pytest.raises(OrchestratorError, match=r"sites.yaml:5:5: error \[invalid-site\]"):
        catalogue.raise_on_error()


def test_schema_errors_name_the_field(write):
    path = write("sites.yaml", """
        sites:
          - name: cnaf
            provider: openstack
            credentials: {cloud: cnaf}
            priorty: 3
            weight: 0
            flavors:
              - {name: g1, cpus: 4, memory_mib: 1024, gpus: {count: 1, modle: A100}}
              - {name: g2, memory_mib: 1024}
            images:
              - {name: ubuntu, version: 22.04}
            quotas: {cores: -1, disks: 3}
          - provider: openstack
          - name: bad name
            provider: local
        extra: 1
    """)
    found = {(d.line, d.message + (f" ({d.hint})" if d.hint else ""))
             for d in load_sites(path).diagnostics}
    expected = [
        (5, "unknown field 'priorty' in the site (did you mean 'priority'?)"),
        (6, "weight must be greater than 0"),
        (8, "unknown field 'modle' in flavors[0].gpus (did you mean 'model'?)"),
        (9, "flavors[1] is missing the required field 'cpus'"),
        (11, "images[0].version must be a string (got 22.04) (quote it: \"22.04\")"),
        (12, "quotas.cores must be at least 0"),
        (12, "unknown field 'disks' in quotas"),
        (13, "the site is missing the required field 'name'"),
        (13, "the site is missing the required field 'credentials' (credentials: {cloud: NAME}"),
        (14, "name 'bad name' is not a valid name"),
        (16, "unknown field 'extra' in the catalogue"),
    ]
    for line, text in expected:
        assert any(ln == line and text in msg for ln, msg in found), (line, text, found)
    assert len(found) == len(expected)


@pytest.mark.parametrize("provider, credentials, missing", [
    ("openstack", "{region: x}", "cloud"),
    ("opennebula", "{auth_file: ~/.one/one_auth}", "endpoint"),
    ("cloud", "{args_file: x.yaml}", "driver"),
])
def test_each_provider_needs_its_credentials_reference(write, provider, credentials, missing):
    path = write("sites.yaml", f"""
        sites:
          - name: s
            provider: {provider}
            credentials: {credentials}
    """)
    [diag] = load_sites(path).diagnostics
    assert diag.line == 4 and f"missing the required field '{missing}'" in diag.message
    assert diag.hint


def test_duplicate_site_names(write):
    path = write("sites.yaml", """
        sites:
          - {name: a, provider: local}
          - {name: b, provider: local}
          - {name: a, provider: local}
    """)
    catalogue = load_sites(path)
    assert problems(catalogue) == [("error", "invalid-site", 4)]
    assert "site 'a' is defined twice (first at line 2)" in rendered(catalogue)


def test_duplicate_flavor_and_image_names(write):
    path = write("sites.yaml", """
        sites:
          - name: a
            provider: local
            flavors:
              - {name: f, cpus: 1, memory_mib: 1}
              - {name: f, cpus: 2, memory_mib: 2}
            images:
              - {name: u, aliases: [ubuntu]}
              - {name: ubuntu}
    """)
    assert [d.line for d in load_sites(path).diagnostics] == [6, 9]


@pytest.mark.parametrize("credentials, line", [
    ("{cloud: c, password: hunter2}", 4),
    ("{cloud: c, auth: {application_credential_secret: s3cr3t}}", 4),
    ("{cloud: c, token: 12345}", 4),
])
def test_pasted_secrets_are_refused(write, credentials, line):
    path = write("sites.yaml", f"""
        sites:
          - name: a
            provider: openstack
            credentials: {credentials}
    """)
    catalogue = load_sites(path)
    assert problems(catalogue) == [("error", "invalid-site", line)]
    text = rendered(catalogue)
    assert "put credentials in clouds.yaml/one_auth/kubeconfig, not sites.yaml" in text
    assert "hunter2" not in text and "s3cr3t" not in text and "12345" not in text


def test_secrets_in_options_and_references_that_are_fine(write):
    path = write("sites.yaml", """
        sites:
          - name: aws
            provider: cloud
            credentials:
              driver: ec2
              key_file: ~/.aws/key.json
              env: {key: AWS_ACCESS_KEY_ID, secret: AWS_SECRET_ACCESS_KEY}
            options: {key_name: mykeypair, ssh_public_key: ssh-ed25519 AAAA}
          - name: leaky
            provider: local
            options: {api_token: abcdef}
    """)
    catalogue = load_sites(path)
    assert problems(catalogue) == [("error", "invalid-site", 11)]
    assert "options.api_token holds a literal secret" in rendered(catalogue)


def test_unknown_provider_is_only_a_warning(write):
    path = write("sites.yaml", """
        sites:
          - name: future
            provider: openstak
    """)
    catalogue = load_sites(path)
    assert problems(catalogue) == [("warning", "invalid-site", 3)]
    assert catalogue.ok and catalogue.get("future").provider == "openstak"
    assert "did you mean 'openstack'?" in rendered(catalogue)


@pytest.mark.parametrize("text, code", [
    ("sites: [\n", "yaml-syntax"),
    ("- just a list\n", "invalid-site"),
    ("sites: {a: 1}\n", "invalid-site"),
])
def test_malformed_files(write, text, code):
    catalogue = load_sites(write("sites.yaml", text))
    assert [d.code for d in catalogue.diagnostics] == [code]
    assert catalogue.diagnostics.items[0].line >= 1 and not catalogue.ok


def test_get_with_did_you_mean():
    catalogue = load_sites(str(FULL))
    with pytest.raises(OrchestratorError, match="no site named 'cnfa'.*did you mean 'cnaf'"):
        catalogue.get("cnfa")
    assert "cnaf" in catalogue and "cnfa" not in catalogue
