"""The opt-in remote-import fetcher: https only, public addresses only (checked on every
hop and connected to as checked), bounded in size and time, cached by URL with the
sha256 recorded on the load result, the validation report and the plan.

The tests serve files over https on 127.0.0.1 with a throwaway CA; the fetcher reaches
loopback only under the test switch ORCHESTRATOR_TEST_ALLOW_LOOPBACK_FETCH=1."""
import hashlib
import json
import time

import jsonschema
import pytest

from orchestrator import service
from orchestrator.api.settings import ServiceSettings
from orchestrator.plan import Plan
from orchestrator.tosca import FetchSettings, LoadOptions, load_template
from orchestrator.tosca.fetch import (
    TEST_CA_ENV,
    TEST_LOOPBACK_ENV,
    Fetcher,
    FetchError,
    address_refusal,
)
from tests.conftest import codes
from tests.fakes.https_files import HTTPSFiles

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"
TYPES = (HEADER + """
node_types:
  my.nodes.Thing:
    derived_from: tosca.nodes.SoftwareComponent
""").encode()
YAML = {"Content-Type": "application/yaml"}


def _template(url: str) -> str:
    return HEADER + f"""
imports:
  - {url}
topology_template:
  node_templates:
    thing: {{type: my.nodes.Thing}}
"""


@pytest.fixture
def files(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    with HTTPSFiles(tmp_path) as server:
        server.routes["/types.yaml"] = (200, YAML, TYPES)
        monkeypatch.setenv(TEST_CA_ENV, str(server.ca))
        yield server


@pytest.fixture
def loopback(monkeypatch):
    monkeypatch.setenv(TEST_LOOPBACK_ENV, "1")


def _rendered(result) -> str:
    return "\n".join(d.render() for d in result.diagnostics)


def _fetch_error(result) -> str:
    found = [d.message for d in result.diagnostics if d.code == "import-fetch-failed"]
    assert found, _rendered(result)
    return found[0]


def test_fetch_then_cache_hit_then_refresh_records_the_sha256(write, files, loopback,
                                                             tmp_path):
    url = files.url("/types.yaml")
    path = write("main.yaml", _template(url))
    options = LoadOptions(allow_remote_imports=True)
    first = load_template(path, options=options)
    assert first.ok, _rendered(first)
    sha = hashlib.sha256(TYPES).hexdigest()
    assert first.remote_imports == {url: sha}
    assert files.hits["/types.yaml"] == 1
    assert list((tmp_path / "cache" / "orchestrator" / "imports").glob("*.body"))

    again = load_template(path, options=options)
    assert again.ok and again.remote_imports == {url: sha}
    assert files.hits["/types.yaml"] == 1, "the cached bytes were not used"

    files.routes["/types.yaml"] = (200, YAML, TYPES + b"# changed\n")
    refreshed = load_template(path, options=LoadOptions(allow_remote_imports=True,
                                                        refresh_imports=True))
    assert refreshed.ok and files.hits["/types.yaml"] == 2
    assert refreshed.remote_imports == {url: hashlib.sha256(TYPES + b"# changed\n").hexdigest()}

    report = service.validate(path, options=options)
    assert report.valid and report.remote_imports == refreshed.remote_imports


def test_http_is_refused(write, files, loopback):
    path = write("main.yaml", _template(f"http://localhost:{files.port}/types.yaml"))
    result = load_template(path, options=LoadOptions(allow_remote_imports=True))
    assert "only https://" in _fetch_error(result)
    assert not files.hits


def test_redirects_are_followed_and_each_hop_is_checked(write, files, loopback):
    files.routes["/moved"] = (302, {"Location": "/types.yaml"}, b"")
    files.routes["/to-private"] = (302, {"Location": "https://10.1.2.3/types.yaml"}, b"")
    files.routes["/to-metadata"] = (302, {"Location": "https://169.254.169.254/x"}, b"")
    files.routes["/to-http"] = (302, {"Location": files.url("/types.yaml").replace(
        "https:", "http:")}, b"")
    files.routes["/loop"] = (302, {"Location": "/loop"}, b"")
    options = LoadOptions(allow_remote_imports=True)
    moved = load_template(write("a.yaml", _template(files.url("/moved"))), options=options)
    assert moved.ok, _rendered(moved)
    for route, why in (("/to-private", "private"), ("/to-metadata", "link-local"),
                       ("/to-http", "only https://"), ("/loop", "redirects")):
        result = load_template(write("b.yaml", _template(files.url(route))), options=options)
        assert why in _fetch_error(result), route


def test_a_redirect_to_loopback_is_refused_without_the_test_switch(monkeypatch):
    """The first hop is public; the redirect names 127.0.0.1: refused before connecting."""
    monkeypatch.delenv(TEST_LOOPBACK_ENV, raising=False)
    addresses = {"public.example": "93.184.216.34", "127.0.0.1": "127.0.0.1",
                 "sneaky.example": "10.0.0.7"}

    def resolve(host, port, type=None):
        return [(2, 1, 6, "", (addresses[host], port))]

    fetcher = Fetcher(FetchSettings(cache_dir="/nonexistent-cache"), resolve=resolve)
    connected = []

    def request(host, port, target, checked, deadline):
        connected.append((host, checked))
        return 302, {"public.example": "https://127.0.0.1/x",
                     "127.0.0.1": None}[host] or "https://sneaky.example/", b""

    monkeypatch.setattr(fetcher, "_request", request)
    with pytest.raises(FetchError, match="loopback"):
        fetcher._download("https://public.example/t.yaml")
    assert connected == [("public.example", ["93.184.216.34"])]


def test_a_name_resolving_to_loopback_is_refused_without_the_switch(write, files,
                                                                    monkeypatch):
    monkeypatch.delenv(TEST_LOOPBACK_ENV, raising=False)
    path = write("main.yaml", _template(files.url("/types.yaml")))
    result = load_template(path, options=LoadOptions(allow_remote_imports=True))
    assert "loopback" in _fetch_error(result)
    assert not files.hits


def test_the_connection_goes_to_the_checked_address(files, loopback, monkeypatch):
    """Resolution happens once per hop: a second lookup would get another answer."""
    answers = iter([[(2, 1, 6, "", ("127.0.0.1", files.port))]])

    def resolve_once(host, port, type=None):
        return next(answers)  # a second call raises StopIteration

    fetched = Fetcher(resolve=resolve_once).get(files.url("/types.yaml"))
    assert fetched.data == TYPES and not fetched.from_cache


@pytest.mark.parametrize("headers", [{}, {"X-No-Length": "1"}], ids=["length", "streamed"])
def test_an_oversized_file_is_refused(files, loopback, headers):
    files.routes["/big.yaml"] = (200, headers, b"#" * 5000)
    with pytest.raises(FetchError, match="limit"):
        Fetcher(FetchSettings(max_bytes=1000)).get(files.url("/big.yaml"))


def test_a_slow_server_times_out(files, loopback):
    def slow(handler):
        time.sleep(2)
        return 200, YAML, TYPES

    files.routes["/slow.yaml"] = slow
    started = time.monotonic()
    with pytest.raises(FetchError, match="timed out"):
        Fetcher(FetchSettings(total_timeout_s=0.5)).get(files.url("/slow.yaml"))
    assert time.monotonic() - started < 1.8


def test_an_untrusted_certificate_is_refused(files, loopback, monkeypatch):
    monkeypatch.delenv(TEST_CA_ENV)
    with pytest.raises(FetchError, match="TLS"):
        Fetcher().get(files.url("/types.yaml"))


@pytest.mark.parametrize("address", [
    "127.0.0.1", "::1", "10.0.0.1", "172.16.0.1", "192.168.1.1", "169.254.169.254",
    "224.0.0.1", "0.0.0.0", "240.0.0.1", "100.64.0.1", "::ffff:127.0.0.1", "fe80::1",
    "fc00::1", "::", "ff02::1"])
def test_non_public_addresses_are_refused(address):
    assert address_refusal(address) is not None


def test_public_addresses_pass():
    assert address_refusal("93.184.216.34") is None
    assert address_refusal("2606:2800:220:1:248:1893:25c8:1946") is None
    assert address_refusal("127.0.0.1", allow_loopback=True) is None
    assert address_refusal("10.0.0.1", allow_loopback=True) is not None


def test_only_the_allowed_hosts_are_fetched(write, files, loopback):
    path = write("main.yaml", _template(files.url("/types.yaml")))
    refused = load_template(path, options=service.service_import_options(("example.org",)))
    assert "not one of the allowed import hosts" in _fetch_error(refused)
    assert not files.hits
    allowed = load_template(path, options=service.service_import_options(("localhost",)))
    assert allowed.ok, _rendered(allowed)


def test_the_service_fetches_nothing_without_import_hosts(write, files, loopback):
    path = write("main.yaml", _template(files.url("/types.yaml")))
    report = service.validate_inputs(path, {})
    assert "import-remote-unmapped" in codes(report)
    assert not files.hits


def test_import_hosts_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_IMPORT_HOSTS", "raw.githubusercontent.com, *.infn.it")
    settings = ServiceSettings.from_env()
    assert settings.import_hosts == ("raw.githubusercontent.com", "*.infn.it")
    assert ServiceSettings.from_json(settings.to_json()).import_hosts == settings.import_hosts
    monkeypatch.delenv("ORCHESTRATOR_IMPORT_HOSTS")
    assert ServiceSettings.from_env().import_hosts == ()


def test_the_plan_records_remote_imports_and_reads_old_plans():
    sha = hashlib.sha256(TYPES).hexdigest()
    plan = Plan(deployment="d", template="t.yaml", template_digest="x", base_serial=0,
                steps=(), remote_imports={"https://example.org/t.yaml": sha})
    data = json.loads(plan.to_json())
    assert data["remote_imports"] == {"https://example.org/t.yaml": sha}
    schema = service.schema("plan")
    jsonschema.validate(data, schema)
    assert Plan.from_dict(data).remote_imports == plan.remote_imports
    del data["remote_imports"]
    jsonschema.validate(data, schema)
    assert Plan.from_dict(data).remote_imports == {}
    empty = Plan(deployment="d", template="t.yaml", template_digest="x", base_serial=0,
                 steps=())
    assert "remote_imports" not in empty.to_dict()
