"""Native implementations (playbooks/native.yaml): our playbooks standing in for the
upstream operations of INDIGO / INFN-Cloud node types, chosen per deployment
(--implementation native|upstream) and named in the plan."""
import json
import subprocess
import sys

import pytest

from orchestrator import service
from orchestrator.diagnostics import Diagnostics
from orchestrator.plan import Plan
from orchestrator.tosca import LoadOptions, native
from orchestrator.tosca.types import TypeRegistry
from orchestrator.tosca.yamlsource import load_yaml
from orchestrator.validation import validate
from tests.conftest import ROOT

TEMPLATE = """
tosca_definitions_version: tosca_simple_yaml_1_0
imports:
  - indigo: https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml
topology_template:
  node_templates:
    front_end:
      type: tosca.nodes.indigo.LRMS.FrontEnd.Slurm
      requirements: [{host: fe_server}]
    wn:
      type: tosca.nodes.indigo.LRMS.WorkerNode.Slurm
      properties:
        front_end_ip: {get_attribute: [fe_server, private_address, 0]}
      requirements: [{host: wn_server}, {dependency: front_end}]
    custom:
      type: tosca.nodes.indigo.LRMS.FrontEnd.Slurm
      requirements: [{host: fe_server}]
      interfaces:
        Standard:
          configure: my_own.yml
    fe_server: {type: tosca.nodes.indigo.Compute}
    wn_server: {type: tosca.nodes.indigo.Compute}
"""


def _topology(write, implementation):
    path = write("t.yaml", TEMPLATE)
    write("my_own.yml", "- hosts: all\n  tasks: []\n")
    report = validate(path, options=LoadOptions(implementation=implementation))
    assert report.valid, [d.render() for d in report.diagnostics]
    return report.topology


def _ops(node):
    return {f"{o.interface}.{o.name}": o for o in node.operations}


def test_native_operations_replace_the_upstream_ones(write):
    nodes = _topology(write, "native").nodes
    front, wn = nodes["front_end"], nodes["wn"]
    assert front.implementation == "native: tosca.nodes.indigo.LRMS.FrontEnd.Slurm"
    assert {o.implementation for o in front.operations} == {"playbooks/slurm.yml"}
    assert _ops(front)["Standard.configure"].inputs["role"] == "controller"
    worker = _ops(wn)["Standard.configure"].inputs
    assert worker["role"] == "worker"
    assert worker["controller_address"].args == ("fe_server", "private_address", 0)
    assert worker["slurm_conf"].args == ("SELF", "dependency", "slurm_conf")
    assert front.artifacts == {}  # the upstream roles are not needed


def test_a_template_operation_still_wins_over_the_native_one(write):
    custom = _topology(write, "native").nodes["custom"]
    assert _ops(custom)["Standard.configure"].implementation == "my_own.yml"
    assert _ops(custom)["Standard.create"].implementation == "playbooks/slurm.yml"


def test_upstream_keeps_the_types_own_operations_and_roles(write):
    front = _topology(write, "upstream").nodes["front_end"]
    assert front.implementation == "upstream: tosca.nodes.indigo.LRMS.FrontEnd.Slurm"
    [configure] = front.operations
    assert configure.implementation.startswith("https://raw.githubusercontent.com/indigo-dc/")
    assert "slurm_role" in front.artifacts


def test_every_native_entry_names_a_bundled_type_and_an_existing_playbook():
    registry = TypeRegistry(Diagnostics())
    for path in sorted((ROOT / "tosca_types").rglob("*.yaml")):
        if path.name != "import-map.yaml":
            registry.add_document(load_yaml(path.read_text(), str(path), Diagnostics()))
    listed = native.table()
    assert listed
    for type_name, interfaces in listed.items():
        assert registry.resolve("node_types", type_name), type_name
        for operations in interfaces.values():
            for operation in operations.values():
                implementation = operation["implementation"]
                assert (ROOT / implementation).is_file(), (type_name, implementation)


@pytest.mark.parametrize("implementation", ["native", "upstream"])
def test_the_plan_records_the_choice(write, tmp_path, implementation):
    path = write("t.yaml", TEMPLATE)
    write("my_own.yml", "- hosts: all\n  tasks: []\n")
    sites = tmp_path / "sites.yaml"
    sites.write_text("sites:\n  - {name: sim, provider: simulated, flavors: [{name: s, cpus: 4, "
                     "memory_mib: 8192}], images: [{name: u, distribution: ubuntu, "
                     "version: '22.04', aliases: [ubuntu]}]}\n")
    orch = service.orchestrator(db=f"sqlite:///{tmp_path}/s.db", sites=str(sites))
    plan = orch.plan(path, name="x", import_options=LoadOptions(
        implementation=implementation)).plan
    data = plan.to_dict()
    assert data.get("implementation", "native") == implementation
    assert Plan.from_dict(json.loads(json.dumps(data))).implementation == implementation
    configure = next(s for s in plan.steps if s.node == "front_end")
    assert configure.details["implementation"].startswith(implementation + ": ")


def test_cli_refuses_an_upstream_remote_playbook_it_cannot_run(tmp_path):
    """On a site reached over SSH, a remote playbook is refused at plan time, saying how."""
    template = tmp_path / "t.yaml"
    template.write_text(TEMPLATE.replace(
        "      interfaces:\n        Standard:\n          configure: my_own.yml\n", ""))
    sites = ROOT / "tests" / "fixtures" / "sites" / "local-foreign-os.yaml"
    env = {"XDG_DATA_HOME": str(tmp_path / "d"), "XDG_CONFIG_HOME": str(tmp_path / "c"),
           "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    done = subprocess.run([sys.executable, "-m", "orchestrator", "--sites", str(sites), "plan",
                           str(template), "--implementation", "upstream"],
                          capture_output=True, text=True, env=env, timeout=120, check=False)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "is the remote playbook https://" in done.stderr
    assert "--implementation native" in done.stderr and "Traceback" not in done.stderr
