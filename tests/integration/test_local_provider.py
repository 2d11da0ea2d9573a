"""The local provider against a real podman: base image, containers reachable over SSH,
volumes, labels, one-call polling, complete clean-up, and a deployment end to end."""
import json
import os
import shutil
import subprocess
import time
import uuid

import pytest

from orchestrator.providers.base import (
    ACTIVE,
    DELETED,
    TAG_DEPLOYMENT,
    Image,
    ProviderError,
    ResourceSpec,
)
from orchestrator.providers.local import LocalProvider
from orchestrator.providers.local.image import DEFAULT_IMAGE, ensure_image
from orchestrator.providers.local.provider import host_gpus, parse_gpus
from orchestrator.sites import Site
from tests import engine_support as es

PODMAN = shutil.which("podman")
if not PODMAN and not os.environ.get("CI"):
    pytest.skip("podman is not installed (run .ci/containers.sh); in CI these tests run",
                allow_module_level=True)

SSH_OPTIONS = ["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
               "-o", "LogLevel=ERROR", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10"]


def podman(*args) -> str:
    return subprocess.run(["podman", *args], capture_output=True, text=True,
                          check=False).stdout


def leftovers(deployment: str) -> dict:
    """Everything podman still holds that is labelled with this deployment."""
    label = f"label={TAG_DEPLOYMENT}={deployment}"
    return {"containers": podman("ps", "-a", "-q", "--filter", label).split(),
            "volumes": podman("volume", "ls", "-q", "--filter", label).split(),
            "networks": podman("network", "ls", "-q", "--filter", label).split()}


def remove_all(deployment: str) -> None:
    label = f"label={TAG_DEPLOYMENT}={deployment}"
    ids = podman("ps", "-a", "-q", "--filter", label).split()
    if ids:
        podman("rm", "-f", "-t", "0", *ids)
    for volume in podman("volume", "ls", "-q", "--filter", label).split():
        podman("volume", "rm", "-f", volume)
    for network in podman("network", "ls", "-q", "--filter", label).split():
        podman("network", "rm", "-f", network)


@pytest.fixture
def deployment():
    """A unique deployment id; whatever it left in podman is removed afterwards."""
    ident = f"t{uuid.uuid4().hex[:11]}"
    yield ident
    remove_all(ident)


@pytest.fixture(scope="module")
def image():
    started = time.monotonic()
    lines: list[str] = []
    name = ensure_image(DEFAULT_IMAGE, progress=lines.append)
    print(f"base image ready in {time.monotonic() - started:.1f} s: {lines}")
    return name


@pytest.fixture
def provider(image):
    return LocalProvider(Site(name="local-test", provider="local"))


@pytest.fixture
def ssh_key(tmp_path):
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key


def wait_active(provider, ids, timeout=60.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        states = provider.poll(ids)
        if all(r.status != "building" for r in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.2)


def ssh(key, port, command, options: dict | None = None) -> subprocess.CompletedProcess:
    extra = [f"-o{name}={value}" for name, value in (options or {}).items()]
    return subprocess.run(["ssh", "-i", str(key), "-p", str(port), *SSH_OPTIONS, *extra,
                           "root@127.0.0.1", command], capture_output=True, text=True,
                          timeout=60, check=False)


def test_base_image_exists(image):
    assert ensure_image(image) == DEFAULT_IMAGE
    assert subprocess.run(["podman", "image", "exists", DEFAULT_IMAGE],
                          check=False).returncode == 0


def test_offer_and_check(provider):
    offer = provider.offer()
    assert {f.name for f in offer.flavors} >= {"local"}
    assert offer.images[0].name == "debian-12" and "bookworm" in offer.images[0].aliases
    assert offer.quotas.instances is None
    result = provider.check()
    assert result.reachable and result.credentials_valid, result.message
    assert "present" in result.message


def test_containers_and_volume_lifecycle(provider, deployment, ssh_key):
    public_key = ssh_key.with_suffix(".pub").read_text()
    started = time.monotonic()
    servers = [provider.create(ResourceSpec(
        "compute", deployment, "node", index, flavor="local", image="debian-12",
        properties={"ssh_public_key": public_key, "ports": [{"port": 8888, "protocol": "tcp"}],
                    "volumes": ["data"] if index == 0 else [],
                    "volume_locations": {"data": "/srv/data"}})) for index in range(2)]
    volume = provider.create(ResourceSpec("volume", deployment, "data", 0,
                                          properties={"size_gib": 1}))
    assert volume.status == ACTIVE
    ids = [s.provider_id for s in servers]
    states = wait_active(provider, ids)
    print(f"two containers active in {time.monotonic() - started:.1f} s")
    assert [states[i].status for i in ids] == [ACTIVE, ACTIVE], states

    # labels, network, hostnames, published ports
    for index, server_id in enumerate(ids):
        info = json.loads(podman("container", "inspect", server_id))[0]
        labels = info["Config"]["Labels"]
        assert labels[TAG_DEPLOYMENT] == deployment
        assert (labels["orchestrator-node"], labels["orchestrator-index"]) == ("node", str(index))
        assert labels["orchestrator-kind"] == "compute"
        assert list(info["NetworkSettings"]["Networks"]) == [f"orch-{deployment[:12]}"]
        attrs = states[server_id].attributes
        assert attrs["ssh_host"] == "127.0.0.1" and attrs["ssh_user"] == "root"
        assert attrs["private_address"] and attrs["endpoints"]["8888/tcp"].startswith("127.0.0.1:")
        # reached over loopback only: the cheaper key exchange, which the node's sshd takes
        assert attrs["ssh_options"] == {"KexAlgorithms": "curve25519-sha256"}
        done = ssh(ssh_key, attrs["ssh_port"], "hostname; python3 -c 'print(1+1)'",
                   attrs["ssh_options"])
        assert done.returncode == 0, done.stderr
        assert done.stdout.split() == [f"node-{index}", "2"]

    # the volume is mounted in the first container, at the attachment's location
    attachment = provider.attach(ids[0], volume.provider_id)
    assert attachment.status == ACTIVE and attachment.attributes["location"] == "/srv/data"
    done = ssh(ssh_key, states[ids[0]].attributes["ssh_port"], "findmnt -n -o TARGET /srv/data")
    assert done.stdout.strip() == "/srv/data", done.stderr
    assert attachment.provider_id == f"{ids[0]}/{volume.provider_id}"
    with pytest.raises(ProviderError, match="not mounted"):
        provider.attach(ids[1], volume.provider_id)

    # a retried create returns the same container
    again = provider.create(ResourceSpec("compute", deployment, "node", 0, flavor="local",
                                         image="debian-12"))
    assert again.provider_id == ids[0]

    # find() sees everything by its tags
    found = provider.find(deployment)
    assert sorted((r.kind, r.tags["orchestrator-node"], r.tags["orchestrator-index"])
                  for r in found) == [("compute", "node", "0"), ("compute", "node", "1"),
                                      ("volume", "data", "0")]

    # poll() of both containers is one podman call
    calls = []
    real_run = provider.runtime.run

    def counting(args, **kwargs):
        calls.append(list(args))
        return real_run(args, **kwargs)

    provider.runtime.run = counting
    polled = provider.poll(ids)
    assert len(calls) == 1 and calls[0][:2] == ["ps", "-a"], calls
    assert all(polled[i].status == ACTIVE for i in ids)
    provider.runtime.run = real_run

    # delete removes containers, the volume and the deployment's network
    for server_id in ids:
        provider.delete(server_id)
    provider.delete(volume.provider_id)
    provider.delete(ids[0])  # deleting what is gone is fine
    provider.delete(volume.provider_id)
    assert all(r.status == DELETED for r in provider.poll(ids + [volume.provider_id]).values())
    assert leftovers(deployment) == {"containers": [], "volumes": [], "networks": []}


def test_container_without_key_runs_sshd(provider, deployment):
    server = provider.create(ResourceSpec("compute", deployment, "bare", 0))
    state = wait_active(provider, [server.provider_id])[server.provider_id]
    assert state.status == ACTIVE, state
    provider.delete(server.provider_id)
    assert leftovers(deployment)["networks"] == []


def test_exited_container_is_an_error_with_its_logs(provider, deployment):
    server = provider.create(ResourceSpec("compute", deployment, "dies", 0))
    assert wait_active(provider, [server.provider_id])[server.provider_id].status == ACTIVE
    podman("exec", server.provider_id, "kill", "1")  # sshd (PID 1) terminates
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        state = provider.poll([server.provider_id])[server.provider_id]
        if state.status == "error":
            break
        time.sleep(0.2)
    assert state.status == "error" and "exited" in state.fault, state
    assert "signal 15" in state.fault  # sshd's last log line


def test_failures_are_provider_errors(provider, deployment):
    with pytest.raises(ProviderError, match="failed"):
        provider.runtime.run(["no-such-subcommand"])
    site = Site(name="local-bad", provider="local",
                images=(Image("broken", id="localhost/no-such-image:none"),))
    with pytest.raises(ProviderError, match="cannot be pulled"):
        LocalProvider(site).create(ResourceSpec("compute", deployment, "vm", 0, image="broken"))
    assert leftovers(deployment)["containers"] == []
    with pytest.raises(ProviderError, match="unknown local option"):
        LocalProvider(Site(name="x", provider="local", options={"engin": "podman"}))


def test_gpu_listing_is_parsed():
    listing = ("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-1a2b)\n"
               "GPU 1: NVIDIA H100 80GB HBM3 (UUID: GPU-3c4d)\n")
    assert parse_gpus(listing) == (2, "H100 80GB HBM3")
    assert parse_gpus("") == (0, None)


LOCAL_SITES = {"sites": [{"name": "laptop", "provider": "local"}]}


def test_gpu_request_without_gpus_fails_placement_clearly(tmp_path):
    if host_gpus()[0]:
        pytest.skip("this machine has NVIDIA GPUs, so a GPU request can be placed")
    import yaml

    from orchestrator.errors import PlacementError
    sites = tmp_path / "sites.yaml"
    sites.write_text(yaml.safe_dump(LOCAL_SITES))
    orch = es.orchestrator(tmp_path, str(sites))
    template = es.write_template(tmp_path, """
        topology_template:
          node_templates:
            gpu:
              type: orchestrator.nodes.Compute
              capabilities:
                host: {properties: {num_cpus: 1, gpus: {count: 1, vendor: NVIDIA, model: A100}}}
        """)
    with pytest.raises(PlacementError, match="the site has no GPU flavors"):
        result = orch.plan(template, name=f"gpu{uuid.uuid4().hex[:6]}")
        if result.plan is not None:  # pragma: no cover - placement must refuse
            pytest.fail("a GPU node was placed on a site without GPUs")


def test_deployment_end_to_end(tmp_path, image):
    import yaml

    sites = tmp_path / "sites.yaml"
    sites.write_text(yaml.safe_dump(LOCAL_SITES))
    orch = es.orchestrator(tmp_path, str(sites), poll_interval_s=0.2)
    template = es.write_template(tmp_path, """
        topology_template:
          node_templates:
            vm:
              type: orchestrator.nodes.Compute
              capabilities:
                host: {properties: {num_cpus: 1}}
                scalable: {properties: {count: 2}}
          outputs:
            addresses: {value: {get_attribute: [vm, private_address]}}
        """)
    name = f"local-e2e-{uuid.uuid4().hex[:6]}"
    ident = None
    try:
        started = time.monotonic()
        result = orch.plan(template, name=name)
        applied = orch.apply(result.plan)
        ident = applied.deployment.id
        assert applied.run.ok, applied.run.failed
        print(f"two-node deployment applied in {time.monotonic() - started:.1f} s")
        rows = [r for r in orch.store.resources(ident) if r.kind == "compute"]
        assert len(rows) == 2 and all(r.status == ACTIVE for r in rows)
        assert len(leftovers(ident)["containers"]) == 2
        assert len(leftovers(ident)["networks"]) == 1
        addresses = orch.outputs(name)["addresses"]
        assert sorted(addresses) == sorted(r.attributes["private_address"] for r in rows)
        assert orch.delete(name).ok
        assert leftovers(ident) == {"containers": [], "volumes": [], "networks": []}
    finally:
        if ident:
            remove_all(ident)


@pytest.fixture
def docker_api(tmp_path, monkeypatch):
    """A Docker Engine API on a unix socket, served by podman (``podman system service``),
    for the real ``docker`` command line: the provider's docker code path end to end."""
    if not shutil.which("docker"):
        if os.environ.get("CI"):
            pytest.fail("the docker command line is missing (.ci/containers.sh installs it)")
        pytest.skip("the docker command line is not installed")
    socket = tmp_path / "docker.sock"
    service = subprocess.Popen(["podman", "--runtime", "runc", "system", "service",
                                "--time=0", f"unix://{socket}"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{socket}")
    deadline = time.monotonic() + 30
    while subprocess.run(["docker", "version"], capture_output=True,
                         check=False).returncode != 0:
        assert time.monotonic() < deadline, "the Docker API did not come up"
        time.sleep(0.3)
    yield
    service.terminate()
    service.wait(timeout=30)


def test_docker_engine(image, docker_api, deployment, ssh_key):
    provider = LocalProvider(Site(name="local-docker", provider="local",
                                  options={"engine": "docker"}))
    assert provider.runtime.engine == "docker"
    result = provider.check()
    assert result.reachable, result.message
    server = provider.create(ResourceSpec(
        "compute", deployment, "node", 0, flavor="local", image="debian-12",
        properties={"ssh_public_key": ssh_key.with_suffix(".pub").read_text(),
                    "ports": [{"port": 8888, "protocol": "tcp"}]}))
    state = wait_active(provider, [server.provider_id])[server.provider_id]
    assert state.status == ACTIVE, state
    assert state.attributes["endpoints"]["8888/tcp"].startswith("127.0.0.1:")
    done = ssh(ssh_key, state.attributes["ssh_port"], "hostname")
    assert done.returncode == 0 and done.stdout.strip() == "node-0", done.stderr
    assert [r.provider_id for r in provider.find(deployment)] == [server.provider_id]
    assert provider.create(ResourceSpec("compute", deployment, "node", 0, flavor="local",
                                        image="debian-12")).provider_id == server.provider_id
    provider.delete(server.provider_id)
    assert provider.poll([server.provider_id])[server.provider_id].status == DELETED
    assert leftovers(deployment) == {"containers": [], "volumes": [], "networks": []}
