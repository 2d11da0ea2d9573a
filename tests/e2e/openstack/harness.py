"""A real OpenStack on 127.0.0.1 for the OpenStack provider's tests and benchmark.

``cloud-up.sh`` (beside this file) starts Keystone, Glance, Placement, Nova (fake virt
driver), Neutron and Cinder from Debian's packages in a directory of their own (about
4.5 minutes, 1.8 GB); ``cloud-down.sh`` stops them by PID. This module runs them, seeds
the cloud with what the tests use (projects, a user, an external network, GPU and
InfiniBand flavors, images with OS metadata) and writes a ``clouds.yaml``.

    python -m tests.e2e.openstack.harness up DIR     # start (or reuse) and seed
    python -m tests.e2e.openstack.harness down DIR   # stop

``ORCHESTRATOR_OPENSTACK_DIR=DIR`` makes the tests reuse a cloud already running from
DIR (started by ``up``) and leave it running.
"""
from __future__ import annotations

import io
import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
ENV_DIR = "ORCHESTRATOR_OPENSTACK_DIR"
PORTS = (5000, 5672, 8774, 8776, 8778, 9292, 9696)
PACKAGES = ("python3-nova", "python3-neutron", "python3-cinder", "python3-glance",
            "python3-keystone", "python3-placement", "rabbitmq-server", "uwsgi-plugin-python3")
AUTH_URL = "http://127.0.0.1:5000/v3"
ADMIN_PASSWORD = "secret"  # the throwaway local cloud's own admin password (loopback only)
USER, USER_PASSWORD = "orch", "orch-local-only"
#: projects the tests use: main (deployments), a/b (failover), quota (one instance)
PROJECTS = {"orch-main": {}, "orch-a": {}, "orch-b": {}, "orch-quota": {"instances": 1}}
EXTERNAL_NETWORK, EXTERNAL_CIDR = "public", "172.24.4.0/24"

FLAVORS = {  # name: (vcpus, ram MiB, disk GiB, extra_specs)
    "m1.tiny": (1, 512, 1, {}),
    "m1.small": (2, 2048, 5, {}),
    "m1.medium": (4, 4096, 10, {}),
    "g1.a100x2": (8, 8192, 10, {"resources:PGPU": "2", "gpu_model": "A100"}),
    "g1.v100x1": (4, 8192, 10, {"pci_passthrough:alias": "v100:1"}),
    "g1.vgpu": (4, 4096, 10, {"resources:VGPU": "1"}),
    "hpc.ib": (4, 4096, 10, {"trait:CUSTOM_INFINIBAND": "required", "infiniband": "true"}),
}
IMAGES = {  # name: properties (public images)
    "ubuntu-22.04": {"os_distro": "ubuntu", "os_version": "22.04"},
    "ubuntu-22.04-cuda": {"os_distro": "ubuntu", "os_version": "22.04", "gpu_driver": "535",
                          "cuda_version": "12.2"},
}
#: private images: project -> (name, properties); orch-a's cannot be scheduled (it needs a
#: trait no host has), so its servers go to ERROR with Nova's "No valid host" fault
PRIVATE_IMAGES = {
    "orch-a": ("rocky-9", {"os_distro": "rocky", "os_version": "9",
                           "trait:CUSTOM_NO_SUCH_HOST": "required"}),
    "orch-b": ("rocky-9", {"os_distro": "rocky", "os_version": "9"}),
}


@dataclass
class LocalCloud:
    base: Path
    started_here: bool
    clouds_file: Path

    def connection(self, cloud: str = "admin"):
        import openstack
        from openstack import config

        region = config.OpenStackConfig(config_files=[str(self.clouds_file)]).get_one(cloud)
        return openstack.connection.Connection(config=region)

    def stop(self) -> None:
        if self.started_here:
            stop(self.base)


def missing_packages() -> list[str]:
    if not shutil.which("dpkg"):
        return list(PACKAGES)
    done = subprocess.run(["dpkg", "-s", *PACKAGES], capture_output=True, text=True,
                          check=False)
    if done.returncode == 0:
        return []
    return [p for p in PACKAGES if f"package '{p}' is not installed" in done.stderr
            or f"Package: {p}\n" not in done.stdout]


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def running(base: Path) -> bool:
    return (base / "adminrc").is_file() and (base / "run" / "keystone.pid").is_file() \
        and port_open(5000) and port_open(8774)


def start(base: Path) -> None:
    """Run cloud-up.sh in ``base`` (an empty or earlier cloud directory); its output goes
    to ``<base>-up.log`` beside it."""
    busy = [p for p in PORTS if port_open(p)]
    if busy:
        raise RuntimeError(f"ports {busy} on 127.0.0.1 are taken: another OpenStack (or "
                           "RabbitMQ) runs here; stop it or set " + ENV_DIR)
    base.mkdir(parents=True, exist_ok=True)
    log = base.parent / f"{base.name}-up.log"
    try:
        with open(log, "wb") as out:
            done = subprocess.run(["bash", str(HERE / "cloud-up.sh")], cwd=base, stdout=out,
                                  stderr=subprocess.STDOUT, timeout=1200, check=False,
                                  env={**_clean_env(), "OS_BASE": str(base)})
    except subprocess.TimeoutExpired:
        stop(base)
        raise RuntimeError("the local OpenStack did not start within 20 minutes") from None
    if done.returncode != 0:
        stop(base)
        lines = "".join(log.read_text(errors="replace").splitlines(True)[-15:])
        raise RuntimeError(f"cloud-up.sh failed ({done.returncode}); see {log} and "
                           f"{base}/log/:\n{lines}")


def stop(base: Path) -> None:
    subprocess.run(["bash", str(HERE / "cloud-down.sh")], env={**_clean_env(),
                   "OS_BASE": str(base)}, capture_output=True, timeout=180, check=False)


def _clean_env() -> dict:
    return {k: v for k, v in os.environ.items() if not k.startswith("OS_")
            and k not in ("VIRTUAL_ENV", "PYTHONPATH")} | {
        "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}


def clouds(base: Path) -> dict:
    common = {"auth_url": AUTH_URL, "user_domain_name": "Default",
              "project_domain_name": "Default"}
    entries = {"admin": {"auth": {**common, "username": "admin", "password": ADMIN_PASSWORD,
                                  "project_name": "admin"}}}
    for project in PROJECTS:
        entries[project] = {"auth": {**common, "username": USER, "password": USER_PASSWORD,
                                     "project_name": project}}
    for entry in entries.values():
        entry.update(region_name="RegionOne", identity_api_version=3)
    return {"clouds": entries}


def seed(cloud: LocalCloud) -> None:
    """Projects, user, quotas, external network, flavors and images (idempotent)."""
    admin = cloud.connection("admin")
    identity = admin.identity
    user = find(identity.find_user, USER, domain_id="default") or identity.create_user(
        name=USER, password=USER_PASSWORD, domain_id="default")
    member = find(identity.find_role, "member")
    for name, quotas in PROJECTS.items():
        project = find(identity.find_project, name, domain_id="default") or \
            identity.create_project(name=name, domain_id="default")
        identity.assign_project_role_to_user(project, user, member)
        admin.compute.update_quota_set(project.id, **({"instances": 60, "cores": 400,
                                                       "ram": 1024000} | quotas))
        admin.network.update_quota(project.id, security_groups=100, security_group_rules=1000,
                                   routers=50, floating_ips=100, networks=100, subnets=100,
                                   ports=500)
    _external_network(admin)
    for name, (vcpus, ram, disk, specs) in FLAVORS.items():
        flavor = find(admin.compute.find_flavor, name) or \
            admin.compute.create_flavor(name=name, vcpus=vcpus, ram=ram, disk=disk)
        if specs:
            admin.compute.create_flavor_extra_specs(flavor, specs)
    for name, props in IMAGES.items():
        _image(admin, name, props, "public")
    for project, (name, props) in PRIVATE_IMAGES.items():
        _image(cloud.connection(project), name, props, "private")


def find(function, name: str, **filters):
    """A find_* call of openstacksdk without its deprecated ignore_missing=True."""
    from openstack import exceptions

    try:
        return function(name, ignore_missing=False, **filters)
    except exceptions.NotFoundException:
        return None


def _external_network(admin) -> None:
    network = find(admin.network.find_network, EXTERNAL_NETWORK)
    if network is None:
        network = admin.network.create_network(
            name=EXTERNAL_NETWORK, is_router_external=True, is_shared=False,
            provider_network_type="flat", provider_physical_network="public")
    if not list(admin.network.subnets(network_id=network.id)):
        admin.network.create_subnet(network_id=network.id, ip_version=4, cidr=EXTERNAL_CIDR,
                                    enable_dhcp=False, gateway_ip="172.24.4.1",
                                    allocation_pools=[{"start": "172.24.4.10",
                                                       "end": "172.24.4.250"}])


def _image(conn, name: str, props: dict, visibility: str) -> None:
    if any(i.name == name for i in conn.image.images(owner=conn.current_project_id)):
        return
    conn.image.create_image(name, data=io.BytesIO(b"\0" * 4096), disk_format="raw",
                            container_format="bare", visibility=visibility,
                            allow_duplicates=True, wait=True, timeout=120, meta=props)


def up(base: Path | None = None) -> LocalCloud:
    """A seeded local cloud: the one in $ORCHESTRATOR_OPENSTACK_DIR when it runs, else a
    new one in ``base`` (stopped by LocalCloud.stop())."""
    reuse = os.environ.get(ENV_DIR)
    if reuse and running(Path(reuse)):
        base, started = Path(reuse), False
    else:
        base = Path(reuse) if reuse else base
        if base is None:
            raise RuntimeError("no directory for the local OpenStack")
        started = time.monotonic()
        start(base)
        print(f"local OpenStack started in {time.monotonic() - started:.0f} s", file=sys.stderr)
        started = not reuse
    clouds_file = base / "clouds.yaml"
    clouds_file.write_text(yaml.safe_dump(clouds(base)))
    clouds_file.chmod(0o600)
    cloud = LocalCloud(base, bool(started), clouds_file)
    seed(cloud)
    return cloud


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("up", "down"):
        print(__doc__)
        return 2
    base = Path(argv[1]).resolve()
    if argv[0] == "down":
        stop(base)
        return 0
    os.environ[ENV_DIR] = str(base)
    cloud = up(base)
    print(f"clouds.yaml: {cloud.clouds_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
