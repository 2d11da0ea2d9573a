"""The kubernetes provider's API flow against a loopback server that speaks the
Kubernetes REST protocol (tests/fakes/kube_apiserver.py, a protocol test double): the
real kubernetes client, kubeconfig and token; create/poll/find/update/attach/delete,
one pod list per poll, idempotent creates (409), clear errors (401, 403, 422, the
scheduler's reasons, image pulls, crash loops), watches; then whole deployments through
the real engine: deploy, scale, delete, rollback, and kill -9 with resume."""
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter

import pytest

from orchestrator.providers.base import (
    ACTIVE,
    DELETED,
    ERROR,
    NotFoundError,
    ProviderError,
    ResourceSpec,
    TransientProviderError,
)
from orchestrator.providers.kubernetes import KubernetesProvider
from orchestrator.sites import Site
from tests import engine_support as es
from tests.conftest import ROOT
from tests.fakes.kube_apiserver import FakeKubeApiServer, node

A100 = "NVIDIA-A100-SXM4-80GB"
MANAGED = "app.kubernetes.io/managed-by=tosca-orchestrator"
KINDS = ("namespaces", "statefulsets", "pods", "services", "secrets",
         "persistentvolumeclaims", "ingresses")


def cluster_nodes():
    return [node("cpu-1"), node("cpu-2"), node("gpu-1", cpus="16", memory="64Gi", gpus=2,
                                              gpu_product=A100)]


@pytest.fixture
def fake():
    with FakeKubeApiServer(nodes=cluster_nodes()) as server:
        yield server


@pytest.fixture
def kubeconfig(fake, tmp_path):
    return fake.write_kubeconfig(tmp_path / "kubeconfig")


def make_provider(kubeconfig, **options) -> KubernetesProvider:
    return KubernetesProvider(Site(name="k8s", provider="kubernetes",
                                   credentials={"kubeconfig": kubeconfig, "context": "fake"},
                                   options=options))


@pytest.fixture
def provider(kubeconfig):
    made = make_provider(kubeconfig, service_type="NodePort", ingress_domain="apps.example.org")
    yield made
    made.close()


def ours(fake) -> dict:
    """Every object of ours (and every pod) still in the fake cluster."""
    found = {kind: [o["metadata"]["name"] for o in fake.objects(kind, selector=MANAGED)]
             for kind in KINDS if kind != "pods"}
    found["namespaces"] = [o["metadata"]["name"] for o in fake.objects("namespaces")]
    found["pods"] = [o["metadata"]["name"] for o in fake.objects("pods")]
    return {k: v for k, v in found.items() if v}


def wait(provider, ids, timeout=10.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        states = provider.poll(ids)
        if all(r.status != "building" for r in states.values()) or time.monotonic() > deadline:
            return states
        time.sleep(0.03)


def compute(deployment, node_name="web", index=0, **props) -> ResourceSpec:
    return ResourceSpec("compute", deployment, node_name, index, properties=props)


# --- the provider on its own ------------------------------------------------------------------

def test_offer_and_check_come_from_the_cluster(provider):
    offer = provider.offer()
    gpu = next(f for f in offer.flavors if f.gpus.count)
    assert (gpu.cpus, gpu.memory_mib, gpu.gpus.count, gpu.gpus.model) == (16, 65536, 2, A100)
    assert any(f.cpus == 8 and not f.gpus.count for f in offer.flavors)
    result = provider.check()
    assert result.reachable and result.credentials_valid, result.message
    assert "v1.30.0-fake" in result.message and "context fake" in result.message


def test_instance_lifecycle(provider, fake):
    dep = uuid.uuid4().hex
    web = provider.create(compute(dep, ports=[{"port": 8888, "protocol": "tcp"}],
                                  public_ip=True, requirements={"cpus": 1, "memory_mib": 512}))
    other = provider.create(compute(dep, "web", 1))
    volume = provider.create(ResourceSpec("volume", dep, "data", 0, properties={"size_gib": 5}))
    ids = [web.provider_id, other.provider_id]
    namespace = web.attributes["namespace"]
    assert fake.objects("namespaces")[0]["metadata"]["labels"][
        "orchestrator/deployment"] == dep

    before = fake.count("GET", f"/namespaces/{namespace}/pods")
    states = wait(provider, ids)
    assert [states[i].status for i in ids] == [ACTIVE, ACTIVE], states
    polls = fake.count("GET", f"/namespaces/{namespace}/pods") - before
    calls_before = len(fake.requests)
    provider.poll(ids)  # one pod list (and one Service list: web exposes a port)
    assert [r[1].rsplit("/", 1)[-1] for r in fake.requests[calls_before:]] == ["pods",
                                                                               "services"]
    assert polls >= 1
    attrs = states[web.provider_id].attributes
    assert attrs["private_address"].startswith("10.244.")
    assert attrs["endpoints"]["8888/tcp"].startswith("198.18.")  # LoadBalancer: public policy
    assert attrs["public_address"] == attrs["endpoints"]["8888/tcp"].split(":")[0]
    assert fake.objects("ingresses", namespace)[0]["spec"]["rules"][0]["host"].endswith(
        ".apps.example.org")

    # a retried create finds the instance by its name and tags: no second StatefulSet
    again = provider.create(compute(dep, ports=[{"port": 8888, "protocol": "tcp"}]))
    assert again.provider_id == web.provider_id
    assert len(fake.objects("statefulsets", namespace)) == 2

    # attach mounts the claim (the StatefulSet's pod is replaced with the mount)
    attachment = provider.attach(web.provider_id, volume.provider_id)
    assert attachment.attributes["location"] == "/mnt/data"
    assert provider.attach(web.provider_id, volume.provider_id).provider_id == \
        attachment.provider_id
    assert wait(provider, [web.provider_id])[web.provider_id].status == ACTIVE
    pod = fake.objects("pods", namespace, "orchestrator/node=web,orchestrator/index=0")[0]
    assert {"name": "v-data-0", "persistentVolumeClaim": {"claimName": "data-0"}} in \
        pod["spec"]["volumes"]

    found = provider.find(dep)
    assert sorted((r.kind, r.tags["orchestrator-node"], r.tags["orchestrator-index"])
                  for r in found) == [("compute", "web", "0"), ("compute", "web", "1"),
                                      ("volume", "data", "0")]

    # update: resize the instance, grow the volume, refuse to shrink it
    resized = provider.update(other.provider_id, compute(dep, "web", 1, requirements={
        "cpus": 2, "memory_mib": 2048}))
    assert resized.status in (ACTIVE, "building")
    sts = fake.objects("statefulsets", namespace, "orchestrator/index=1")[0]
    assert sts["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "2", "memory": "2048Mi"}
    grown = provider.update(volume.provider_id, ResourceSpec("volume", dep, "data", 0,
                                                             properties={"size_gib": 8}))
    assert grown.attributes["size_gib"] == 8
    with pytest.raises(ProviderError, match="cannot shrink"):
        provider.update(volume.provider_id, ResourceSpec("volume", dep, "data", 0,
                                                         properties={"size_gib": 2}))

    provider.detach(attachment.provider_id)
    provider.detach(attachment.provider_id)  # detaching what is detached is fine
    for provider_id in ids + [volume.provider_id]:
        provider.delete(provider_id)
    assert fake.objects("namespaces")[0]["status"]["phase"] == "Terminating"
    provider.delete(web.provider_id)  # deleting what is gone (and its namespace) is fine
    assert all(r.status == DELETED for r in provider.poll(ids + [volume.provider_id]).values())
    time.sleep(fake.namespace_delete_s * 2)
    assert ours(fake) == {}
    with pytest.raises(NotFoundError):
        provider.update(web.provider_id, compute(dep))


def test_conflict_on_create_is_idempotent(provider, fake):
    dep = uuid.uuid4().hex
    # the API server makes the StatefulSet but the reply says 409 (a concurrent retry)
    fake.faults.append({"verb": "create", "resource": "statefulsets", "status": 409,
                        "after": True})
    made = provider.create(compute(dep))
    assert wait(provider, [made.provider_id])[made.provider_id].status == ACTIVE
    assert len(fake.objects("statefulsets")) == 1
    # an object of that name that is not ours is refused, not adopted
    foreign = fake.objects("statefulsets")[0]
    provider.delete(made.provider_id)
    time.sleep(fake.namespace_delete_s * 2)
    namespace = foreign["metadata"]["namespace"]
    made = provider.create(compute(dep, "db"))  # recreates the namespace
    foreign["metadata"] = {"name": "web-0", "labels": {"app": "someone-else"}}
    foreign["spec"]["selector"]["matchLabels"] = {"app": "someone-else"}
    foreign["spec"]["template"]["metadata"]["labels"] = {"app": "someone-else"}
    assert provider.api.create("statefulsets", namespace, foreign) is not None
    with pytest.raises(ProviderError, match="did not make"):
        provider.create(compute(dep))


def test_forbidden_is_a_clear_error(provider, fake):
    fake.forbidden.add(("create", "statefulsets"))
    with pytest.raises(ProviderError) as caught:
        provider.create(compute(uuid.uuid4().hex))
    text = str(caught.value)
    assert "site 'k8s'" in text and "forbidden (403)" in text
    assert 'User "alice" cannot create resource "statefulsets" in API group "apps"' in text
    assert "RBAC" in text and not isinstance(caught.value, TransientProviderError)
    assert fake.token not in text


def test_refused_credentials_and_invalid_objects(fake, tmp_path, provider):
    wrong = make_provider(fake.write_kubeconfig(tmp_path / "wrong", token="not-the-token"))
    result = wrong.check()
    assert result.reachable and not result.credentials_valid
    assert "401 Unauthorized" in result.message and "not-the-token" not in result.message
    bad = {"apiVersion": "v1", "kind": "Secret", "metadata": {
        "name": "x", "labels": {"bad key!": "v"}}}
    provider.create(compute(dep := uuid.uuid4().hex))
    with pytest.raises(ProviderError, match=r"refused as invalid \(422\).*metadata.labels"):
        provider.api.create("secrets", f"orch-{dep[:16]}", bad)


def test_unreachable_server_is_transient(tmp_path):
    with FakeKubeApiServer() as gone:
        path = gone.write_kubeconfig(tmp_path / "kubeconfig")
    provider = make_provider(path, timeout=2)
    assert not provider.check().reachable
    with pytest.raises(TransientProviderError, match="cannot be reached"):
        provider.create(compute(uuid.uuid4().hex))


def test_unschedulable_gpu_pod_reports_the_scheduler(provider, fake):
    dep = uuid.uuid4().hex
    server = provider.create(compute(dep, "trainer", requirements={
        "gpus": {"count": 4, "model": "A100"}}))
    state = wait(provider, [server.provider_id])[server.provider_id]
    assert state.status == ERROR
    assert "cannot be scheduled: 0/3 nodes are available" in state.fault
    assert "1 Insufficient nvidia.com/gpu" in state.fault
    assert "2 node(s) didn't match Pod's node affinity/selector" in state.fault
    events = fake.objects("events", state.attributes["namespace"])
    assert events[0]["reason"] == "FailedScheduling"
    fits = provider.create(compute(dep, "small", requirements={"gpus": {"count": 2,
                                                                        "model": "A100"}}))
    state = wait(provider, [fits.provider_id])[fits.provider_id]
    assert state.status == ACTIVE and state.attributes["kubernetes_node"] == "gpu-1"
    patient = make_provider(provider.site.credentials["kubeconfig"], unschedulable_grace_s=600)
    assert patient.poll([server.provider_id])[server.provider_id].status == "building"


def test_image_pull_and_crash_loop_are_errors(kubeconfig, fake):
    provider = make_provider(kubeconfig)
    provider.site = Site(name="k8s", provider="kubernetes", credentials=provider.site.credentials)
    fake.image_faults.update({"registry.example/missing:1": "ImagePullBackOff",
                              "registry.example/crashes:1": "CrashLoopBackOff"})
    dep = uuid.uuid4().hex
    pull = provider.create(ResourceSpec("compute", dep, "a", 0,
                                        image="registry.example/missing:1"))
    crash = provider.create(ResourceSpec("compute", dep, "b", 0,
                                         image="registry.example/crashes:1"))
    time.sleep(fake.pod_start_s * 3)
    states = wait(provider, [pull.provider_id, crash.provider_id])
    assert states[pull.provider_id].status == ERROR
    assert 'ImagePullBackOff: Back-off pulling image "registry.example/missing:1"' in \
        states[pull.provider_id].fault
    assert states[crash.provider_id].status == ERROR
    assert "CrashLoopBackOff" in states[crash.provider_id].fault
    assert "last exit code 1" in states[crash.provider_id].fault


def test_watch_streams_pod_changes(provider, fake, kubeconfig):
    """The test server's watch speaks the protocol the kubernetes client's Watch reads."""
    from kubernetes import client, config, watch

    api = client.CoreV1Api(config.new_client_from_config(kubeconfig, persist_config=False))
    dep = uuid.uuid4().hex
    made = provider.create(compute(dep))
    namespace = made.attributes["namespace"]
    phases = []
    for event in watch.Watch().stream(api.list_namespaced_pod, namespace,
                                      label_selector=MANAGED, timeout_seconds=3):
        phases.append((event["type"], event["object"].status.phase))
        if event["object"].status.phase == "Running":
            break
    assert phases[0] == ("ADDED", "Pending") and phases[-1] == ("MODIFIED", "Running")
    listed = api.list_namespaced_pod(namespace, label_selector="orchestrator/node=web")
    assert [p.metadata.name for p in listed.items] == ["web-0-0"]
    assert int(listed.metadata.resource_version) > 0


def test_unknown_option_and_missing_rdma_resource(kubeconfig):
    with pytest.raises(ProviderError, match="unknown kubernetes option 'service_typ'"):
        make_provider(kubeconfig, service_typ="NodePort")
    with pytest.raises(ProviderError, match="must be one of"):
        make_provider(kubeconfig, service_type="Public")
    with pytest.raises(ProviderError, match="no rdma_resource option"):
        make_provider(kubeconfig).create(compute(uuid.uuid4().hex, requirements={
            "infiniband": True}))


# --- through the engine -------------------------------------------------------------------------

def k8s_sites(tmp_path, kubeconfig, **extra) -> str:
    site = {"name": "k8s", "provider": "kubernetes", "concurrency": 10,
            "credentials": {"kubeconfig": kubeconfig, "context": "fake"},
            "images": [{"name": "ubuntu-22.04", "id": "docker.io/library/ubuntu:22.04",
                        "distribution": "ubuntu", "version": "22.04"}], **extra}
    return es.write_sites(tmp_path, site)


def instances(fake) -> Counter:
    return Counter((s["metadata"]["labels"]["orchestrator/node"],
                    s["metadata"]["labels"]["orchestrator/index"])
                   for s in fake.objects("statefulsets", selector=MANAGED))


def test_deploy_scale_and_delete_through_the_engine(tmp_path, fake, kubeconfig):
    orch = es.orchestrator(tmp_path, k8s_sites(tmp_path, kubeconfig))
    result = orch.plan(es.write_template(tmp_path, es.cluster(workers=2)), name="k8s-demo")
    applied = orch.apply(result.plan)
    assert applied.run.ok, applied.run.failed
    assert instances(fake) == Counter({("head", "0"): 1, ("worker", "0"): 1,
                                       ("worker", "1"): 1})
    outputs = orch.outputs("k8s-demo")
    assert outputs["head_ip"].startswith("10.244.") and len(outputs["worker_ips"]) == 2
    head = fake.objects("statefulsets", selector="orchestrator/node=head")[0]
    assert head["spec"]["template"]["spec"]["containers"][0]["image"] == \
        "docker.io/library/ubuntu:22.04"

    scaled = orch.plan(es.write_template(tmp_path, es.cluster(workers=3), "t3.yaml"),
                       name="k8s-demo")
    assert orch.apply(scaled.plan).run.ok
    assert set(instances(fake)) == {("head", "0"), ("worker", "0"), ("worker", "1"),
                                    ("worker", "2")}
    shrunk = orch.plan(es.write_template(tmp_path, es.cluster(workers=1), "t1.yaml"),
                       name="k8s-demo")
    assert orch.apply(shrunk.plan).run.ok
    assert set(instances(fake)) == {("head", "0"), ("worker", "0")}
    assert orch.delete("k8s-demo").ok
    time.sleep(fake.namespace_delete_s * 2)
    assert ours(fake) == {}


GPU_TEMPLATE = """
topology_template:
  node_templates:
    trainer:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {properties: {num_cpus: 4, gpus: {count: 4, model: A100}}}
"""


def test_unschedulable_deployment_fails_with_the_scheduler_reason(tmp_path, fake, kubeconfig):
    sites = k8s_sites(tmp_path, kubeconfig, flavors=[
        {"name": "a100x4", "cpus": 16, "memory_mib": 65536,
         "gpus": {"count": 4, "vendor": "NVIDIA", "model": "A100"}}])
    orch = es.orchestrator(tmp_path, sites)
    result = orch.plan(es.write_template(tmp_path, GPU_TEMPLATE), name="gpu")
    applied = orch.apply(result.plan)
    assert not applied.run.ok
    reason = " ".join(applied.run.failed.values())
    assert "Insufficient nvidia.com/gpu" in reason and "0/3 nodes are available" in reason
    time.sleep(fake.namespace_delete_s * 2)
    assert ours(fake) == {}  # rolled back


def _cli(tmp_path, sites_file, *args, popen=False):
    command = [sys.executable, "-m", "orchestrator", "--db",
               f"sqlite:///{tmp_path / 'state.db'}", "--sites", sites_file, *args]
    if popen:
        return subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, capture_output=True, text=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("resource,kill_after", [
    ("statefulsets", 1), ("statefulsets", 3),
    ("services", 2),  # between an instance's headless Service and its StatefulSet
])
def test_kill_and_resume_without_duplicates(tmp_path, fake, kubeconfig, resource, kill_after):
    sites = k8s_sites(tmp_path, kubeconfig)
    template = es.write_template(tmp_path, es.cluster(workers=3))
    process = None
    made = []

    def kill_on_create(verb, kind, obj):  # SIGKILL right after the cluster made it
        if verb == "create" and kind == resource:
            made.append(obj["metadata"]["name"])
            if len(made) == kill_after and process is not None:
                os.kill(process.pid, signal.SIGKILL)

    fake.hooks.append(kill_on_create)
    process = _cli(tmp_path, sites, "deploy", template, "--name", "demo", "--yes", popen=True)
    try:
        _, stderr = process.communicate(timeout=120)
    finally:
        fake.hooks.clear()
    assert process.returncode == -9, stderr
    # requests already in flight on other threads may still land after the kill
    assert len(instances(fake)) >= (kill_after if resource == "statefulsets" else 0)
    resumed = _cli(tmp_path, sites, "deploy", "--resume", "demo", "--yes")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    counts = instances(fake)
    assert set(counts) == {("head", "0")} | {("worker", str(i)) for i in range(3)}, counts
    assert max(counts.values()) == 1, f"duplicates: {counts}"
    services = Counter(s["metadata"]["name"] for s in fake.objects("services", selector=MANAGED))
    assert len(services) == 4 and max(services.values()) == 1, services
    gone = _cli(tmp_path, sites, "delete", "demo", "--yes")
    assert gone.returncode == 0, gone.stderr
    time.sleep(fake.namespace_delete_s * 2)
    assert ours(fake) == {}


def test_concurrent_creates_of_one_instance_make_one(provider, fake):
    dep = uuid.uuid4().hex
    results, errors = [], []

    def create():
        try:
            results.append(provider.create(compute(dep)).provider_id)
        except ProviderError as exc:  # a namespace race is retried by the engine
            errors.append(exc)

    threads = [threading.Thread(target=create) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(results)) == 1 and len(fake.objects("statefulsets")) == 1, errors


def test_sites_yaml_example_loads(tmp_path, kubeconfig):
    from orchestrator.sites import load_sites

    catalogue = load_sites(k8s_sites(tmp_path, kubeconfig, options={
        "service_type": "NodePort", "rdma_resource": "rdma/hca", "gpu_products": {
            "A100": [A100]}}))
    assert catalogue.ok, [str(d) for d in catalogue.diagnostics]
    site = catalogue.get("k8s")
    assert site.options["gpu_products"] == {"A100": [A100]}
    assert make_provider(kubeconfig, **site.options).settings.rdma_resource == "rdma/hca"


def test_software_with_playbooks_is_refused_before_anything_is_made(tmp_path, fake, kubeconfig):
    """Pods are not logged into: a software node with an Ansible operation on a Kubernetes
    site is refused at plan time, naming the node and the site, and nothing is created."""
    from orchestrator.errors import PlacementError

    orch = es.orchestrator(tmp_path, k8s_sites(tmp_path, kubeconfig))
    body = es.cluster(workers=1).replace(
        "requirements: [{host: worker}]",
        "requirements: [{host: worker}]\n"
        "      interfaces: {Standard: {configure: playbooks/base.yml}}")
    with pytest.raises(PlacementError, match=r"node app: site k8s \(kubernetes\) cannot run "
                                             r"its lifecycle operations"):
        orch.plan(es.write_template(tmp_path, body), name="k8s-playbook")
    assert ours(fake) == {}


def test_unschedulable_pod_fails_over_to_the_next_site(tmp_path, fake, kubeconfig):
    """A pod the cluster cannot schedule hands the instance to the next ranked site, with
    the scheduler's reason kept in the events; nothing of ours stays in the cluster."""
    k8s = {"name": "k8s", "provider": "kubernetes", "priority": 10,
           "credentials": {"kubeconfig": kubeconfig, "context": "fake"},
           "flavors": [{"name": "a100x4", "cpus": 16, "memory_mib": 65536,
                        "gpus": {"count": 4, "vendor": "NVIDIA", "model": "A100"}}]}
    sim = es.site("sim", tmp_path, priority=1)
    sim["flavors"] = sim["flavors"] + [k8s["flavors"][0]]
    orch = es.orchestrator(tmp_path, es.write_sites(tmp_path, k8s, sim))
    plan = orch.plan(es.write_template(tmp_path, GPU_TEMPLATE), name="gpu-failover").plan
    assert [s.site for s in plan.steps if s.kind == "compute"] == ["k8s"]
    applied = orch.apply(plan)
    assert applied.run.ok, applied.run.failed
    rows = orch.store.resources(applied.deployment.id)
    assert [(r.node, r.site) for r in rows if r.kind == "compute"] == [("trainer", "sim")]
    events = " ".join(e.message for e in orch.events("gpu-failover"))
    assert "Insufficient nvidia.com/gpu" in events
    time.sleep(fake.namespace_delete_s * 2)
    assert ours(fake) == {}
    assert orch.delete("gpu-failover").ok
