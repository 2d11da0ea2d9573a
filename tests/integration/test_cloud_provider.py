"""The ``cloud`` provider (apache-libcloud's EC2 driver) against moto's EC2 API emulator,
started on 127.0.0.1 in its own virtual environment, through the real engine.

moto runs no virtual machines: servers reach "running" with made-up addresses and nothing
answers SSH on them, so these tests cover the cloud API side (sizes, images, key pair,
security group, tags, spot, polling, retries, resume, clean-up) and no contextualisation.
Throttling cannot be asked of moto, so a loopback HTTP proxy between libcloud and moto
answers chosen requests with EC2's own RequestLimitExceeded / 503 replies (a protocol
double) and forwards everything else.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import yaml

from orchestrator.providers.base import (
    ACTIVE,
    DELETED,
    TAG_DEPLOYMENT,
    ProviderError,
    ResourceSpec,
    TransientProviderError,
)
from orchestrator.providers.cloud import CloudProvider
from orchestrator.sites import Site, load_sites
from tests import engine_support as es
from tests.conftest import ROOT
from tests.fakes.moto_server import EC2_NS, MotoServer, moto_python, moto_venv

if moto_python() is None and not os.environ.get("CI"):
    pytest.skip(f"moto is not installed in {moto_venv()} (run scripts/test-deps.d/40-moto.sh);"
                " in CI these tests run", allow_module_level=True)

THROTTLED = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>'
             'RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error>'
             '</Errors><RequestID>throttled</RequestID></Response>')
UNAVAILABLE = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>'
               'Unavailable</Code><Message>The server is overloaded.</Message></Error>'
               '</Errors><RequestID>unavailable</RequestID></Response>')


class Ec2Proxy:
    """Forwards EC2 query requests to moto; counts actions; answers the next N requests of
    an action with a throttling (or 503) reply instead, or forwards and THEN fails."""

    def __init__(self, target: str):
        self.target = target
        self.calls: Counter = Counter()
        self.faults: dict[str, list[str]] = {}
        self.lock = threading.Lock()
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                proxy.handle(self, b"")

            def do_POST(self):
                proxy.handle(self, self.rfile.read(int(self.headers.get("Content-Length", 0))))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def fail(self, action: str, *kinds: str) -> None:
        with self.lock:
            self.faults.setdefault(action, []).extend(kinds)

    def handle(self, handler: BaseHTTPRequestHandler, body: bytes) -> None:
        query = urllib.parse.urlsplit(handler.path).query
        params = urllib.parse.parse_qs(query + "&" + body.decode("latin-1"))
        action = (params.get("Action") or ["?"])[0]
        with self.lock:
            self.calls[action] += 1
            pending = self.faults.get(action) or []
            fault = pending.pop(0) if pending else None
        if fault == "throttle":
            return self.reply(handler, 503, THROTTLED.encode())
        if fault == "unavailable":
            return self.reply(handler, 503, UNAVAILABLE.encode())
        request = urllib.request.Request(self.target + handler.path, data=body or None,
                                         method=handler.command, headers={
                                             k: v for k, v in handler.headers.items()
                                             if k.lower() not in ("host", "content-length")})
        try:
            with urllib.request.urlopen(request, timeout=60) as answer:
                status, data = answer.status, answer.read()
        except urllib.error.HTTPError as exc:
            status, data = exc.code, exc.read()
        if fault == "after":  # the cloud acted, the caller hears of a failure
            return self.reply(handler, 503, UNAVAILABLE.encode())
        self.reply(handler, status, data)

    @staticmethod
    def reply(handler, status: int, data: bytes) -> None:
        handler.send_response(status)
        handler.send_header("Content-Type", "text/xml")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def moto(tmp_path_factory):
    server = MotoServer.start(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def images(moto):
    """Two Ubuntu images (moto serves none of ours until they are registered)."""
    ids = {}
    for stamp in ("20240101", "20240301"):
        root = moto.ec2("RegisterImage", Name=f"orch-test-ubuntu-22.04-{stamp}",
                        RootDeviceName="/dev/sda1", Architecture="x86_64",
                        **{"BlockDeviceMapping.1.DeviceName": "/dev/sda1",
                           "BlockDeviceMapping.1.Ebs.VolumeSize": "8"})
        ids[stamp] = root.findtext(f"{EC2_NS}imageId")
    return ids


@pytest.fixture
def proxy(moto):
    double = Ec2Proxy(moto.url)
    yield double
    double.stop()


def site_entry(tmp_path, endpoint: str, name: str = "aws-moto") -> dict:
    args = tmp_path / "ec2-args.yaml"
    args.write_text(yaml.safe_dump({"key": "AKIDTESTING", "secret": "not-a-real-secret-0001",
                                    "endpoint": endpoint}))
    return {"name": name, "provider": "cloud", "concurrency": 8,
            "credentials": {"driver": "ec2", "region": "us-east-1", "args_file": str(args)},
            "images": [{"name": "orch-test-ubuntu-22.04-*", "aliases": ["ubuntu-22.04"],
                        "distribution": "ubuntu", "version": "22.04"}],
            "options": {"size_families": ["t3", "p4d", "g5"], "image_owner": "self"}}


def provider_for(tmp_path, endpoint: str) -> CloudProvider:
    path = es.write_sites(tmp_path, site_entry(tmp_path, endpoint))
    catalogue = load_sites(path)
    catalogue.raise_on_error()
    return CloudProvider(catalogue.get("aws-moto"))


def ours_left(moto: MotoServer, deployment: str) -> dict:
    """What moto still holds of a deployment, asked through the EC2 API."""
    live = moto.ec2("DescribeInstances", **{
        "Filter.1.Name": f"tag:{TAG_DEPLOYMENT}", "Filter.1.Value.1": deployment,
        "Filter.2.Name": "instance-state-name", "Filter.2.Value.1": "pending",
        "Filter.2.Value.2": "running", "Filter.2.Value.3": "stopped"})
    instances = [i.text for i in live.iter(f"{EC2_NS}instanceId")]
    # (moto's DescribeTags keeps the tags of deleted groups and volumes: ask each kind)
    tag = {"Filter.1.Name": f"tag:{TAG_DEPLOYMENT}", "Filter.1.Value.1": deployment}
    volumes = [v.text for v in moto.ec2("DescribeVolumes", **tag).iter(f"{EC2_NS}volumeId")]
    keys = moto.ec2("DescribeKeyPairs")
    key_names = [k.text for k in keys.iter(f"{EC2_NS}keyName") if deployment in (k.text or "")]
    groups = moto.ec2("DescribeSecurityGroups")
    group_names = [g.text for g in groups.iter(f"{EC2_NS}groupName")
                   if deployment in (g.text or "")]
    tagged_groups = [g.text for g in moto.ec2("DescribeSecurityGroups", **tag).iter(
        f"{EC2_NS}groupId")]
    return {"instances": instances, "volumes": volumes, "key_pairs": key_names,
            "security_groups": sorted(set(group_names + tagged_groups))}


def instances_of(moto: MotoServer, deployment: str) -> list[dict]:
    root = moto.ec2("DescribeInstances", **{
        "Filter.1.Name": f"tag:{TAG_DEPLOYMENT}", "Filter.1.Value.1": deployment,
        "Filter.2.Name": "instance-state-name", "Filter.2.Value.1": "pending",
        "Filter.2.Value.2": "running"})
    found = []
    for item in root.iter(f"{EC2_NS}instancesSet"):
        for instance in item.findall(f"{EC2_NS}item"):
            tags = {t.findtext(f"{EC2_NS}key"): t.findtext(f"{EC2_NS}value")
                    for t in instance.iter(f"{EC2_NS}item") if t.find(f"{EC2_NS}key") is not None}
            found.append({"id": instance.findtext(f"{EC2_NS}instanceId"),
                          "type": instance.findtext(f"{EC2_NS}instanceType"),
                          "image": instance.findtext(f"{EC2_NS}imageId"),
                          "key": instance.findtext(f"{EC2_NS}keyName"),
                          "groups": [g.findtext(f"{EC2_NS}groupName") for g in
                                     instance.iter(f"{EC2_NS}item")
                                     if g.find(f"{EC2_NS}groupName") is not None],
                          "lifecycle": instance.findtext(f"{EC2_NS}instanceLifecycle"),
                          "tags": tags})
    return found


TEMPLATE = """
topology_template:
  inputs:
    count: {type: integer, default: 3}
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 2, mem_size: 2 GB, preemptible: %s}}
        os: {properties: {distribution: ubuntu, version: "22.04"}}
        endpoint:
          properties:
            public_ip: true
            ports: {web: {port: 8888, remote_cidr: 10.0.0.0/8}, dns: {port: 53, protocol: udp}}
        scalable: {properties: {count: {get_input: count}}}
  outputs:
    addresses: {value: {get_attribute: [vm, public_address]}}
"""


def test_offer_sizes_gpus_and_images(tmp_path, moto, images):
    provider = provider_for(tmp_path, moto.url)
    offer = provider.offer()
    flavors = {f.name: f for f in offer.flavors}
    assert flavors["p4d.24xlarge"].gpus.count == 8 and flavors["p4d.24xlarge"].gpus.model \
        == "A100"
    assert flavors["g5.xlarge"].gpus.model == "A10G" and flavors["t3.micro"].gpus.count == 0
    assert not any(name.startswith("t4g") for name in flavors)  # other families left out
    registered = {i.name: i for i in offer.images if i.id}
    assert {images["20240101"], images["20240301"]} <= {i.id for i in registered.values()}
    assert registered["orch-test-ubuntu-22.04-20240301"].distribution == "ubuntu"
    result = provider.check()
    assert result.reachable and result.credentials_valid, result.message


def test_provider_create_find_poll_delete(tmp_path, moto, images, proxy):
    provider = provider_for(tmp_path, proxy.url)
    deployment = uuid.uuid4().hex
    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIDWz9y5xa0Tq0pbYm0O1Ew1m6vN5c0P7mXKfXv1Qk6xe t"
    spec = ResourceSpec("compute", deployment, "vm", 0, flavor="t3.micro",
                        image="orch-test-ubuntu-22.04-*",
                        properties={"ssh_public_key": key, "ports": [{"port": 8888}],
                                    "requirements": {"preemptible": True}})
    server = provider.create(spec)
    assert provider.create(spec).provider_id == server.provider_id  # found by its tags
    (made,) = instances_of(moto, deployment)
    assert made["image"] == images["20240301"], "the newest image matching the pattern"
    assert made["lifecycle"] == "spot" and made["type"] == "t3.micro"
    assert made["key"] == f"orch-{deployment}" and set(made["groups"]) == {f"orch-{deployment}"}
    assert made["tags"]["orchestrator-node"] == "vm" and made["tags"]["orchestrator-index"] == "0"
    volume = provider.create(ResourceSpec("volume", deployment, "data", 0,
                                          properties={"size_gib": 2}))
    # one DescribeInstances per poll, whatever the number of servers
    before = proxy.calls["DescribeInstances"]
    states = provider.poll([server.provider_id, volume.provider_id, "i-00000000000000000"])
    assert proxy.calls["DescribeInstances"] - before == 1
    assert states[server.provider_id].status == ACTIVE
    assert states["i-00000000000000000"].status == DELETED
    attrs = states[server.provider_id].attributes
    assert attrs["public_address"] and attrs["private_address"] and attrs["spot"] is True
    assert attrs["ssh_host"] == attrs["public_address"] and attrs["ssh_user"] == "ubuntu"
    assert sorted(r.kind for r in provider.find(deployment)) == ["compute", "volume"]
    attachment = provider.attach(server.provider_id, volume.provider_id)
    provider.detach(attachment.provider_id)
    provider.delete(volume.provider_id)
    provider.delete(server.provider_id)
    provider.delete(server.provider_id)  # deleting what is gone is fine
    assert ours_left(moto, deployment) == {"instances": [], "volumes": [], "key_pairs": [],
                                           "security_groups": []}


def test_errors_are_translated_without_secrets(tmp_path, moto, images, proxy):
    provider = provider_for(tmp_path, proxy.url)
    proxy.fail("DescribeInstances", "throttle")
    with pytest.raises(TransientProviderError, match="RequestLimitExceeded"):
        provider.find("nothing")
    with pytest.raises(ProviderError, match="no image named like") as caught:
        provider.create(ResourceSpec("compute", uuid.uuid4().hex, "vm", 0, flavor="t3.micro",
                                     image="no-such-image-*"))
    assert "not-a-real-secret" not in str(caught.value)
    unreachable = provider_for(tmp_path, f"http://127.0.0.1:{_closed_port()}")
    with pytest.raises(TransientProviderError, match="aws-moto"):
        unreachable.find("nothing")
    assert not unreachable.check().reachable


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_deploy_scale_retry_and_delete_through_the_engine(tmp_path, moto, images, proxy):
    sites = es.write_sites(tmp_path, site_entry(tmp_path, proxy.url))
    events: list = []
    orch = es.orchestrator(tmp_path, sites, events, poll_interval_s=0.1)
    template = es.write_template(tmp_path, TEMPLATE % "false")
    # a throttled create, a 503 on a poll, and a create the cloud carried out but whose
    # answer was lost: all retried, with no duplicate server
    proxy.fail("RunInstances", "throttle", "after")
    proxy.fail("DescribeInstances", "unavailable")
    started = time.monotonic()
    applied = orch.apply(orch.plan(template, name="burst").plan)
    ident = applied.deployment.id
    try:
        assert applied.run.ok, applied.run.failed
        print(f"3 servers on moto in {time.monotonic() - started:.1f} s")
        assert [e for e in events if e.get("kind") == "retry"], "a throttled call was retried"
        made = instances_of(moto, ident)
        assert sorted(m["tags"]["orchestrator-index"] for m in made) == ["0", "1", "2"]
        assert {m["key"] for m in made} == {f"orch-{ident}"}
        assert all(m["lifecycle"] != "spot" for m in made)
        groups = moto.ec2("DescribeSecurityGroups", **{"GroupName.1": f"orch-{ident}"})
        ports = sorted((p.findtext(f"{EC2_NS}ipProtocol"), p.findtext(f"{EC2_NS}fromPort"))
                       for p in groups.iter(f"{EC2_NS}item")
                       if p.find(f"{EC2_NS}fromPort") is not None)
        assert ports == [("tcp", "22"), ("tcp", "8888"), ("udp", "53")]
        addresses = orch.outputs("burst")["addresses"]
        assert len(addresses) == 3 and all(addresses)
        # scale out to 5, then in to 2
        for count in (5, 2):
            result = orch.apply(orch.plan(template, sets=[f"count={count}"], name="burst").plan)
            assert result.run.ok, result.run.failed
            assert len(instances_of(moto, ident)) == count
        assert f"orch-{ident}" in ours_left(moto, ident)["security_groups"]  # still in use
        assert orch.delete("burst").ok
        assert ours_left(moto, ident) == {"instances": [], "volumes": [], "key_pairs": [],
                                          "security_groups": []}
    finally:
        _terminate_all(moto, ident)


def _terminate_all(moto: MotoServer, deployment: str) -> None:
    ids = [m["id"] for m in instances_of(moto, deployment)]
    if ids:
        moto.ec2("TerminateInstances", **{f"InstanceId.{n}": i for n, i in enumerate(ids, 1)})


def _cli(tmp_path, sites_file, *args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", "--db", f"sqlite:///{tmp_path / 'state.db'}",
         "--sites", sites_file, *args], capture_output=True, text=True, cwd=ROOT, timeout=300,
        env=env)


def test_kill_mid_deploy_and_resume_without_duplicates(tmp_path, moto, images):
    """SIGKILL the CLI once two servers exist, then ``deploy --resume``: three servers."""
    sites = es.write_sites(tmp_path, site_entry(tmp_path, moto.url))
    template = es.write_template(tmp_path, TEMPLATE % "true")
    process = subprocess.Popen(
        [sys.executable, "-m", "orchestrator", "--db", f"sqlite:///{tmp_path / 'state.db'}",
         "--sites", sites, "deploy", template, "--name", "spot", "--yes"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and process.poll() is None:
            if len(_all_ours(moto)) >= 2:
                process.kill()
                break
            time.sleep(0.05)
        process.wait(timeout=30)
        resumed = _cli(tmp_path, sites, "deploy", "--resume", "spot", "--yes")
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        status = _cli(tmp_path, sites, "status", "spot", "--format", "json")
        ident = yaml.safe_load(status.stdout)["deployment"]["id"]
        made = instances_of(moto, ident)
        indexes = Counter(m["tags"]["orchestrator-index"] for m in made)
        assert indexes == Counter({"0": 1, "1": 1, "2": 1}), indexes
        assert all(m["lifecycle"] == "spot" for m in made)
        gone = _cli(tmp_path, sites, "delete", "spot", "--yes")
        assert gone.returncode == 0, gone.stdout + gone.stderr
        assert ours_left(moto, ident) == {"instances": [], "volumes": [], "key_pairs": [],
                                          "security_groups": []}
    finally:
        if process.poll() is None:
            process.kill()
        for ident in {m["tags"].get(TAG_DEPLOYMENT) for m in _all_ours(moto)}:
            _terminate_all(moto, ident)


def _all_ours(moto: MotoServer) -> list[dict]:
    root = moto.ec2("DescribeInstances", **{
        "Filter.1.Name": "tag:orchestrator-node", "Filter.1.Value.1": "vm",
        "Filter.2.Name": "instance-state-name", "Filter.2.Value.1": "pending",
        "Filter.2.Value.2": "running"})
    found = []
    for instance in root.iter(f"{EC2_NS}instancesSet"):
        for item in instance.findall(f"{EC2_NS}item"):
            tags = {t.findtext(f"{EC2_NS}key"): t.findtext(f"{EC2_NS}value")
                    for t in item.iter(f"{EC2_NS}item") if t.find(f"{EC2_NS}key") is not None}
            if tags.get("orchestrator-kind") == "compute" and "spot" in (
                    item.findtext(f"{EC2_NS}instanceLifecycle") or ""):
                found.append({"id": item.findtext(f"{EC2_NS}instanceId"), "tags": tags})
    return found


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to open a connection fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[1:] if len(args) > 1 else args}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)


def test_drivers_not_tested_end_to_end_are_built_from_sites_yaml(tmp_path, no_network,
                                                                 monkeypatch):
    from libcloud.compute.drivers.azure_arm import AzureNodeDriver
    from libcloud.compute.drivers.gce import GCENodeDriver

    from orchestrator.providers.cloud.adapters.azure import AzureAdapter
    from orchestrator.providers.cloud.adapters.gce import GceAdapter

    monkeypatch.setenv("AZ_TENANT", "tenant-0001")
    monkeypatch.setenv("AZ_SUBSCRIPTION", "sub-0001")
    monkeypatch.setenv("AZ_CLIENT", "client-0001")
    monkeypatch.setenv("AZ_SECRET", "azure-secret-value-0001")
    gce_args = tmp_path / "gce.yaml"
    gce_args.write_text(yaml.safe_dump({"user_id": "sa@project.iam.gserviceaccount.com",
                                        "key": str(tmp_path / "sa.json"),
                                        "project": "research-burst"}))
    path = es.write_sites(tmp_path, {
        "name": "azure", "provider": "cloud",
        "credentials": {"driver": "azure_arm", "region": "westeurope",
                        "env": {"tenant_id": "AZ_TENANT", "subscription_id": "AZ_SUBSCRIPTION",
                                "key": "AZ_CLIENT", "secret": "AZ_SECRET"}},
        "options": {"resource_group": "research", "zone": "westeurope"}}, {
        "name": "gce", "provider": "cloud",
        "credentials": {"driver": "gce", "region": "europe-west4", "args_file": str(gce_args)},
        "options": {"zone": "europe-west4-a"}})
    catalogue = load_sites(path)
    catalogue.raise_on_error()
    azure = CloudProvider(catalogue.get("azure"))
    # the driver class and its arguments are checked now; the driver itself is made at the
    # first call (Azure's and Google's fetch a token as soon as they are made)
    assert isinstance(azure.adapter, AzureAdapter) and not azure.adapter.supports_spot
    assert issubclass(azure.driver_class, AzureNodeDriver)
    assert azure.adapter.tag_kwargs({"a": "b"}) == {"ex_tags": {"a": "b"}}
    gce = CloudProvider(catalogue.get("gce"))
    assert isinstance(gce.adapter, GceAdapter) and gce.adapter.supports_spot
    assert gce.adapter.tag_kwargs({TAG_DEPLOYMENT: "Abc"}) == {
        "ex_labels": {TAG_DEPLOYMENT: "abc"}}
    assert issubclass(gce.driver_class, GCENodeDriver)
    kwargs = gce.adapter.driver_kwargs(gce._args, gce.region)
    assert kwargs["project"] == "research-burst" and "datacenter" not in kwargs
    # arguments a driver does not take are refused by name
    bad = Site(name="bad", provider="cloud", credentials={
        "driver": "azure_arm", "env": {"tenant": "AZ_TENANT"}})
    with pytest.raises(ProviderError, match="does not take the arguments") as caught:
        CloudProvider(bad)
    assert "tenant-0001" not in str(caught.value)
    with pytest.raises(ProviderError, match="no compute driver 'nosuchcloud'"):
        CloudProvider(Site(name="x", provider="cloud", credentials={"driver": "nosuchcloud"}))
    # a missing environment variable is named, never a value
    monkeypatch.delenv("AZ_SECRET")
    with pytest.raises(ProviderError, match="AZ_SECRET"):
        CloudProvider(catalogue.get("azure"))
    with pytest.raises(ProviderError, match="unknown cloud option"):
        CloudProvider(Site(name="x", provider="cloud", credentials={"driver": "ec2"},
                           options={"zones": "a"}))
