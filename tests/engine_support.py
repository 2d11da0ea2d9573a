"""Shared helpers for engine tests: a simulated sites.yaml, an orchestrator on a
temporary SQLite state, and views of the simulated cloud."""
from __future__ import annotations

import textwrap
from pathlib import Path

import yaml

from orchestrator import service
from orchestrator.engine import ExecutorOptions
from orchestrator.providers import simulated

FLAVORS = [
    {"name": "m1.small", "cpus": 2, "memory_mib": 4096, "disk_gib": 20},
    {"name": "m1.large", "cpus": 8, "memory_mib": 16384, "disk_gib": 80},
    {"name": "g1.a100x2", "cpus": 16, "memory_mib": 131072, "disk_gib": 200,
     "gpus": {"count": 2, "vendor": "NVIDIA", "model": "A100"}, "infiniband": True},
]
IMAGES = [{"name": "ubuntu-22.04", "distribution": "ubuntu", "version": "22.04"}]


def site(name: str, tmp: Path | None = None, **options) -> dict:
    data = {"name": name, "provider": "simulated", "priority": options.pop("priority", 0),
            "concurrency": options.pop("concurrency", 50), "flavors": FLAVORS,
            "images": IMAGES, "quotas": options.pop("quotas", {})}
    if tmp is not None:
        options.setdefault("state_file", str(tmp / f"cloud-{name}.json"))
    data["options"] = options
    return data


def write_sites(tmp: Path, *sites: dict) -> str:
    path = tmp / "sites.yaml"
    path.write_text(yaml.safe_dump({"sites": list(sites)}))
    return str(path)


def write_template(tmp: Path, body: str, name: str = "t.yaml") -> str:
    path = tmp / name
    path.write_text("tosca_definitions_version: tosca_simple_yaml_1_3\n"
                    "imports: [orchestrator/all.yaml]\n" + textwrap.dedent(body))
    return str(path)


def orchestrator(tmp: Path, sites_file: str, events: list | None = None, **options):
    orch = service.orchestrator(db=f"sqlite:///{tmp / 'state.db'}", sites=sites_file,
                                on_event=events.append if events is not None else None)
    orch.options = ExecutorOptions(**{"poll_interval_s": 0.02, "backoff_s": 0.01, **options})
    return orch


def alive(orch, site_name: str, deployment_id: str | None = None) -> list[dict]:
    """Resources that exist in the simulated cloud (optionally of one deployment)."""
    found = simulated.resources(orch.catalogue.get(site_name))
    if deployment_id:
        found = [r for r in found if r["tags"].get("orchestrator-deployment") == deployment_id]
    return found


def cluster(workers: int = 2, gpus: bool = False) -> str:
    gpu = "gpus: {count: 2, model: A100}" if gpus else ""
    return f"""
topology_template:
  node_templates:
    head:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {{properties: {{num_cpus: 2}}}}
        os: {{properties: {{distribution: ubuntu}}}}
    worker:
      type: orchestrator.nodes.Compute
      capabilities:
        host: {{properties: {{num_cpus: 2 {"," if gpu else ""} {gpu}}}}}
        scalable: {{properties: {{count: {workers}}}}}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{{host: worker}}]
  outputs:
    head_ip: {{value: {{get_attribute: [head, private_address]}}}}
    worker_ips: {{value: {{get_attribute: [worker, private_address]}}}}
"""
