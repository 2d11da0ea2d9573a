"""The kubernetes provider's manifests: every generated object validated against the
real Kubernetes OpenAPI schemas of several Kubernetes versions (kubernetes-validate,
strict: unknown fields are errors), the mapping of requirements to resources, and the
same pods, secrets and claims run for real under ``podman kube play``."""
import base64
import copy
import os
import shutil
import socket
import subprocess
import time
import urllib.request
import uuid

import kubernetes_validate
import pytest
import yaml

from orchestrator.providers.base import ResourceSpec
from orchestrator.providers.kubernetes import cluster
from orchestrator.providers.kubernetes import manifests as mf

VERSIONS = ("1.25.0", "1.28.0", "1.31.0", "1.34.0")
DEPLOYMENT = "5f0c1d2e3a4b5c6d7e8f9a0b1c2d3e4f"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForManifestTests test@orchestrator"
FULL = mf.Settings(service_type="NodePort", public_service_type="LoadBalancer",
                   ingress_domain="apps.example.org", ingress_class="nginx",
                   rdma_resource="rdma/hca_shared_devices_a", cvmfs_storage_class="cvmfs",
                   storage_class="ceph-rbd")


def compute(node="worker", index=0, **props) -> ResourceSpec:
    return ResourceSpec("compute", DEPLOYMENT, node, index, properties=props)


def gpu_cluster_node() -> ResourceSpec:
    return compute("trainer", 1, ports=[{"port": 8888, "protocol": "tcp",
                                         "remote_cidr": "192.0.2.0/24"},
                                        {"port": 6000, "end_port": 6002, "protocol": "udp"}],
                   public_ip=True, ssh_public_key=SSH_KEY, requirements={
                       "cpus": 7.5, "memory_mib": 65536, "gpus": {"count": 2, "model": "A100"},
                       "infiniband": True, "cvmfs": {"repositories": ["cms.cern.ch",
                                                                      "sft.cern.ch"]}})


def all_manifests() -> dict[str, dict]:
    """A name -> manifest for every kind of object the provider makes."""
    gpu = mf.Container(image="nvcr.io/nvidia/pytorch:24.01-py3", keep_alive=False, cpus=7.5,
                       memory_mib=65536, gpus=2, gpu_products=("NVIDIA-A100-SXM4-80GB",),
                       infiniband=True)
    two_products = mf.Container(image="debian:bookworm", gpus=1,
                                gpu_products=("NVIDIA-A100-PCIE-40GB", "NVIDIA-A100-SXM4-80GB"))
    namespace = mf.namespace_name(DEPLOYMENT, FULL)
    found = {"namespace": mf.namespace_manifest(namespace, DEPLOYMENT)}
    for manifest in mf.compute_manifests(gpu_cluster_node(), namespace, gpu, FULL):
        found[f"gpu-{manifest['kind']}-{manifest['metadata']['name']}"] = manifest
    plain = compute("Login Node_with.odd#name", 0)  # names and labels must be mapped
    for manifest in mf.compute_manifests(plain, namespace, mf.Container("debian"), mf.Settings()):
        found[f"plain-{manifest['kind']}"] = manifest
    found["affinity"] = mf.compute_manifests(compute("g", 0), namespace, two_products,
                                             mf.Settings())[-1]
    volume = ResourceSpec("volume", DEPLOYMENT, "scratch", 0, properties={"size_gib": 50})
    claim = mf.volume_claim_manifest(volume, namespace, "scratch-0", FULL)
    found["volume"] = claim
    sts = found["plain-StatefulSet"]
    found["attached"] = cluster.with_volume(copy.deepcopy(sts), "scratch-0", "/mnt/scratch")
    return found


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_is_valid(version):
    manifests = all_manifests()
    assert {m["kind"] for m in manifests.values()} == {
        "Namespace", "StatefulSet", "Service", "Secret", "PersistentVolumeClaim", "Ingress"}
    for name, manifest in manifests.items():
        try:
            kubernetes_validate.validate(manifest, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{name} is not a valid {manifest['kind']} for Kubernetes {version}: "
                        f"{exc.message} at {list(exc.path)}")


def test_an_invalid_manifest_is_caught():
    """The validation really checks: a wrong field fails it."""
    broken = copy.deepcopy(all_manifests()["plain-StatefulSet"])
    broken["spec"]["replicas"] = "one"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, VERSIONS[-1], strict=True)


def test_requirements_become_resources_and_placement():
    manifests = all_manifests()
    sts = next(m for k, m in manifests.items() if k.startswith("gpu-StatefulSet"))
    pod = sts["spec"]["template"]["spec"]
    main = pod["containers"][0]
    assert main["resources"] == {
        "requests": {"cpu": "7500m", "memory": "65536Mi"},
        "limits": {"cpu": "7500m", "memory": "65536Mi", "nvidia.com/gpu": "2",
                   "rdma/hca_shared_devices_a": "1"}}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert "command" not in main  # an application image runs its own entrypoint
    mounts = {m["mountPath"]: m for m in main["volumeMounts"]}
    assert mounts["/cvmfs/cms.cern.ch"]["subPath"] == "cms.cern.ch"
    assert mounts["/cvmfs/sft.cern.ch"]["mountPropagation"] == "HostToContainer"
    assert mounts["/root/.ssh"]["readOnly"] is True
    assert sts["spec"]["replicas"] == 1 and sts["spec"]["serviceName"] == "trainer-1"
    affinity = manifests["affinity"]["spec"]["template"]["spec"]["affinity"]
    term = affinity["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][
        "nodeSelectorTerms"][0]["matchExpressions"][0]
    assert term["operator"] == "In" and len(term["values"]) == 2
    plain = manifests["plain-StatefulSet"]["spec"]["template"]["spec"]["containers"][0]
    assert plain["command"] == list(mf.KEEP_ALIVE) and "resources" not in plain


def test_ports_services_ingress_secret_and_claims():
    manifests = all_manifests()
    by_kind = {}
    for key, manifest in manifests.items():
        if key.startswith("gpu-"):
            by_kind.setdefault(manifest["kind"], []).append(manifest)
    headless, exposed = sorted(by_kind["Service"], key=lambda s: s["metadata"]["name"])
    assert headless["spec"]["clusterIP"] == "None"
    assert exposed["spec"]["type"] == "LoadBalancer"  # public_ip: the site's public policy
    assert exposed["spec"]["loadBalancerSourceRanges"] == ["192.0.2.0/24"]
    assert [(p["port"], p["protocol"]) for p in exposed["spec"]["ports"]] == [
        (8888, "TCP"), (6000, "UDP"), (6001, "UDP"), (6002, "UDP")]
    plain_ports = mf.ports_service_manifest(compute(ports=[{"port": 80}]), "ns", "w-0", FULL)
    assert plain_ports["spec"]["type"] == "NodePort"  # not public: the site's default policy
    ingress = by_kind["Ingress"][0]
    assert ingress["spec"]["ingressClassName"] == "nginx"
    assert [r["host"].endswith(".apps.example.org") for r in ingress["spec"]["rules"]] == [True]
    secret = by_kind["Secret"][0]
    assert secret["stringData"]["authorized_keys"].strip() == SSH_KEY
    cvmfs = by_kind["PersistentVolumeClaim"][0]
    assert cvmfs["spec"]["storageClassName"] == "cvmfs"
    assert cvmfs["spec"]["accessModes"] == ["ReadOnlyMany"]
    assert manifests["volume"]["spec"] == {"accessModes": ["ReadWriteOnce"], "storageClassName":
                                           "ceph-rbd", "resources": {"requests":
                                                                     {"storage": "50Gi"}}}


def test_labels_are_valid_kubernetes_labels_and_tags_survive():
    manifests = all_manifests()
    for manifest in manifests.values():
        labels = manifest["metadata"]["labels"]
        assert labels["app.kubernetes.io/managed-by"] == "tosca-orchestrator"
        for value in labels.values():
            assert mf._LABEL_VALUE.match(value) and len(value) <= 63, value
    odd = manifests["plain-StatefulSet"]
    assert odd["metadata"]["labels"]["orchestrator/node"] != "Login Node_with.odd#name"
    assert mf.tags_of(odd)["orchestrator-node"] == "Login Node_with.odd#name"
    name = odd["metadata"]["name"]
    assert len(name) <= 52 and name == name.lower() and name[0].isalpha(), name
    assert mf.selector({"orchestrator-deployment": DEPLOYMENT}) == \
        f"orchestrator/deployment={DEPLOYMENT}"
    long_value = "x" * 80
    assert len(mf.label_value(long_value)) <= 63
    assert mf.label_value(long_value) != mf.label_value("x" * 81)


def test_volume_mounts_are_added_and_removed():
    sts = all_manifests()["plain-StatefulSet"]
    attached = cluster.with_volume(copy.deepcopy(sts), "data-0", "/mnt/data")
    assert cluster.mounted_claims(attached) == {"data-0": "/mnt/data"}
    assert cluster.with_volume(copy.deepcopy(attached), "data-0", "/mnt/data") == attached
    assert cluster.mounted_claims(cluster.without_volume(attached, "data-0")) == {}


# --- the same manifests under podman kube play ------------------------------------------------

PODMAN = shutil.which("podman")
NODE_IMAGE = "localhost/orchestrator-node:bookworm"
WEB_IMAGE = "localhost/orchestrator-k8s-web:test"
needs_podman = pytest.mark.skipif(
    not PODMAN and not os.environ.get("CI"),
    reason="podman is not installed (run .ci/containers.sh); in CI these tests run")


def podman(*args, env=None, check=False, timeout=300) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=env,
                          check=check, timeout=timeout)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def for_podman(manifests: list[dict], host_ports: dict[int, int]) -> list[dict]:
    """What podman can play of a deployment's objects: each StatefulSet becomes the pod its
    controller would make (name ``<statefulset>-0``, the template unchanged); Secrets and
    claims pass as they are; a NodePort Service becomes what it does on a node (the
    container port published on 127.0.0.1); Namespace, headless Services and Ingress have
    no podman counterpart."""
    played = []
    for manifest in manifests:
        kind = manifest["kind"]
        if kind == "Secret":
            played.append(podman_secret(manifest))
        elif kind == "PersistentVolumeClaim":
            played.append(manifest)
        elif kind == "StatefulSet":
            template = copy.deepcopy(manifest["spec"]["template"])
            for container in template["spec"]["containers"]:
                for port in container.get("ports") or ():
                    if port["containerPort"] in host_ports:
                        port.update(hostIP="127.0.0.1",
                                    hostPort=host_ports[port["containerPort"]])
            played.append({"apiVersion": "v1", "kind": "Pod", "metadata": {
                "name": f"{manifest['metadata']['name']}-0", **template["metadata"]},
                "spec": template["spec"]})
    return played


def podman_secret(secret: dict) -> dict:
    """The Secret as the API server stores it (``stringData`` folded into base64 ``data``),
    which is the only form podman 4 reads."""
    played = {k: v for k, v in secret.items() if k != "stringData"}
    played["data"] = {k: base64.b64encode(v.encode()).decode()
                      for k, v in (secret.get("stringData") or {}).items()}
    return played


def mounted_secret(text: str) -> str:
    """A mounted Secret file's content: podman 4 writes the base64 form of the value."""
    version = podman("version", "--format", "{{.Client.Version}}").stdout.strip()
    return base64.b64decode(text).decode() if version.startswith("4.") else text


@pytest.fixture(scope="module")
def node_images(tmp_path_factory):
    if not PODMAN:
        pytest.fail("podman is required in CI")
    from orchestrator.providers.local.image import ensure_image

    ensure_image(NODE_IMAGE)
    before = podman_leftovers()
    if podman("image", "exists", WEB_IMAGE).returncode != 0:  # an application image
        folder = tmp_path_factory.mktemp("web-image")
        (folder / "Containerfile").write_text(
            f"FROM {NODE_IMAGE}\nCMD [\"python3\", \"-m\", \"http.server\", \"8080\"]\n")
        podman("build", "-q", "-t", WEB_IMAGE, str(folder), check=True)
    yield NODE_IMAGE, WEB_IMAGE
    # what these tests made beside their pods: the web image, the pause image podman
    # builds for pods when no registry answers, and the network `kube play` creates
    made = podman_leftovers() - before
    for kind, name in sorted(made, key=lambda item: item[0] != "network"):
        podman(kind, "rm", "-f", name)
    assert not podman_leftovers() - before


def podman_leftovers() -> set[tuple[str, str]]:
    images = podman("images", "--format", "{{.Repository}}:{{.Tag}}").stdout.split()
    networks = podman("network", "ls", "--format", "{{.Name}}").stdout.split()
    return ({("image", name) for name in images
             if name == WEB_IMAGE or name.startswith("localhost/podman-pause:")}
            | {("network", name) for name in networks if name == "podman-default-kube-network"})


@pytest.fixture
def containers_conf(tmp_path):
    """podman settings this machine needs (runc; ulimits within the hard limit)."""
    conf = tmp_path / "containers.conf"
    conf.write_text('[containers]\ndefault_ulimits=["nofile=10000:10000",'
                    '"nproc=10000:10000"]\n[engine]\nruntime="runc"\n')
    return {**os.environ, "CONTAINERS_CONF": str(conf)}


def remove_played(documents: list[dict]) -> None:
    for document in documents:
        name, kind = document["metadata"]["name"], document["kind"]
        if kind == "Pod":
            podman("pod", "rm", "-f", "-t", "0", name)
        elif kind == "Secret":
            podman("secret", "rm", name)
            podman("volume", "rm", "-f", name)  # podman mounts a secret through a volume
        elif kind == "PersistentVolumeClaim":
            podman("volume", "rm", "-f", name)


@needs_podman
def test_manifests_run_under_podman_kube_play(node_images, containers_conf, tmp_path):
    node_image, web_image = node_images
    settings = mf.Settings(shared_namespace="podman", service_type="NodePort")
    deployment = f"p{uuid.uuid4().hex[:11]}"
    web = ResourceSpec("compute", deployment, "web", 0,
                       properties={"ports": [{"port": 8080, "protocol": "tcp"}]})
    shell = ResourceSpec("compute", deployment, "shell", 0,
                         properties={"ssh_public_key": SSH_KEY})
    volume = ResourceSpec("volume", deployment, "data", 0, properties={"size_gib": 1})
    claim_name = mf.instance_name(deployment, "data", 0, settings)
    manifests = mf.compute_manifests(web, "podman", mf.Container(web_image, keep_alive=False),
                                     settings)
    shell_manifests = mf.compute_manifests(shell, "podman", mf.Container(
        node_image, cpus=0.5, memory_mib=256), settings)
    shell_manifests[-1] = cluster.with_volume(shell_manifests[-1], claim_name, "/mnt/data")
    manifests += shell_manifests + [mf.volume_claim_manifest(volume, "podman", claim_name,
                                                             settings)]
    for manifest in manifests:
        kubernetes_validate.validate(manifest, VERSIONS[-1], strict=True)
    port = free_port()
    played = for_podman(manifests, {8080: port})
    played.sort(key=lambda d: d["kind"] == "Pod")  # secrets and claims before their pods
    path = tmp_path / "deployment.yaml"
    path.write_text(yaml.safe_dump_all(played))
    try:
        done = podman("kube", "play", str(path), env=containers_conf)
        assert done.returncode == 0, done.stderr
        pods = [d["metadata"]["name"] for d in played if d["kind"] == "Pod"]
        deadline = time.monotonic() + 60
        body = None
        while time.monotonic() < deadline and body is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as reply:
                    body = reply.read().decode()
            except OSError:
                time.sleep(0.5)
        assert body is not None and "Directory listing" in body, "the published port is silent"
        for pod in pods:
            state = podman("pod", "inspect", pod, "--format", "{{.State}}").stdout.strip()
            assert state == "Running", (pod, state)
        shell_container = f"{mf.instance_name(deployment, 'shell', 0, settings)}-0-node"
        keys = podman("exec", shell_container, "cat", "/root/.ssh/authorized_keys")
        assert mounted_secret(keys.stdout).strip() == SSH_KEY, keys.stderr
        memory = podman("inspect", shell_container, "--format", "{{.HostConfig.Memory}}")
        assert memory.stdout.strip() == str(256 * 2**20)  # the pod's resources apply
        wrote = podman("exec", shell_container, "sh", "-c", "echo ok > /mnt/data/f && "
                       "cat /mnt/data/f && printenv ORCHESTRATOR_NODE")
        assert wrote.stdout.split() == ["ok", "shell"], wrote.stderr
    finally:
        remove_played(played)
    left = podman("pod", "ps", "-q", "--filter", f"name={pods[0]}").stdout.strip()
    assert left == ""
