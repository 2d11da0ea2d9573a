"""Inputs (-i, --set, types, constraints) and intrinsic functions."""
import pytest

from orchestrator.errors import TemplateError
from orchestrator.tosca import load_template
from orchestrator.tosca.functions import Deferred, resolve_deferred
from orchestrator.validation import require_inputs, validate
from tests.conftest import codes, errors

TEMPLATE = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    cpus:
      type: integer
      description: Number of virtual CPUs
      constraints:
        - in_range: [1, 64]
    flavour:
      type: string
      default: small
      constraints:
        - valid_values: [small, large]
    repos:
      type: list
      entry_schema: {type: string}
      default: [cms.cern.ch, sft.cern.ch]
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        host:
          properties:
            num_cpus: {get_input: cpus}
            mem_size: 4 GB
        os:
          properties: {distribution: ubuntu, version: "22.04", type: linux}
    db:
      type: tosca.nodes.DBMS
      properties:
        port: {get_property: [HOST, host, num_cpus]}
        root_password: {concat: [{get_property: [SELF, port]}, "-", {get_input: [repos, 1]}]}
      requirements:
        - host: vm
    app:
      type: tosca.nodes.SoftwareComponent
      properties:
        component_version: {token: [{get_property: [vm, os, version]}, ".", 1]}
      requirements:
        - host: vm
        - dependency: db
  outputs:
    joined: {value: {join: [[{get_input: flavour}, {get_property: [db, port]}], ":"]}}
    url: {value: {concat: ["http://", {get_attribute: [vm, public_address]}, ":8000"]}}
    first_ip: {value: {get_attribute: [vm, networks, private, addresses, 0]}}
    out_op: {value: {get_operation_output: [db, Standard, create, token]}}
"""


def test_missing_required_input_names_it_and_its_description(write):
    path = write("t.yaml", TEMPLATE)
    result = load_template(path)
    diag = next(d for d in result.diagnostics if d.code == "missing-input")
    assert "'cpus'" in diag.message and "Number of virtual CPUs" in diag.message
    assert diag.line == 4


def test_set_and_input_files(write):
    path = write("t.yaml", TEMPLATE)
    inputs = write("in.yaml", "cpus: 8\nflavour: large\n")
    result = load_template(path, [inputs], ["cpus=4"])
    assert result.ok, [d.render() for d in result.diagnostics]
    vm = result.template.nodes["vm"]
    assert vm.capabilities["host"]["num_cpus"] == 4  # --set wins over the file
    assert result.template.inputs["flavour"].value == "large"


def test_input_constraints_and_types(write):
    path = write("t.yaml", TEMPLATE)
    assert "constraint-violation" in codes(load_template(path, sets=["cpus=100"]))
    assert "type-mismatch" in codes(load_template(path, sets=["cpus=many"]))
    assert "constraint-violation" in codes(load_template(path, sets=["cpus=2", "flavour=huge"]))
    unknown = load_template(path, sets=["cpus=2", "cpu=3"])
    assert unknown.ok and "unknown-input" in codes(unknown)
    assert "invalid-input-file" in codes(load_template(path, sets=["cpus"]))


def test_static_functions_are_evaluated(write):
    path = write("t.yaml", TEMPLATE)
    result = load_template(path, sets=["cpus=2"])
    assert result.ok, [d.render() for d in result.diagnostics]
    db = result.template.nodes["db"]
    assert db.properties["port"] == 2  # HOST -> vm's host capability
    assert db.properties["root_password"] == "2-sft.cern.ch"
    assert result.template.nodes["app"].properties["component_version"] == "04"
    assert result.template.outputs["joined"]["value"] == "small:2"


def test_deferred_functions_resolve_later(write):
    path = write("t.yaml", TEMPLATE)
    result = load_template(path, sets=["cpus=2"])
    url = result.template.outputs["url"]["value"]
    assert isinstance(url, Deferred) and url.function == "concat"
    state = {("vm", "public_address"): "10.0.0.7",
             ("vm", "networks"): {"private": {"addresses": ["192.168.1.4"]}}}

    def lookup(ref: Deferred):
        if ref.function == "get_attribute":
            value = state[(ref.node, ref.args[1])]
            for step in ref.args[2:]:
                value = value[step]
            return value
        return "op-output"

    assert resolve_deferred(url, lookup) == "http://10.0.0.7:8000"
    first = result.template.outputs["first_ip"]["value"]
    assert resolve_deferred(first, lookup) == "192.168.1.4"
    assert resolve_deferred(result.template.outputs["out_op"]["value"], lookup) == "op-output"


def test_bad_references(write):
    text = TEMPLATE.replace("{get_attribute: [vm, public_address]}",
                            "{get_attribute: [vn, public_address]}")
    text = text.replace("[db, Standard, create, token]", "[db, Standard, nope, token]")
    text = text.replace("{get_input: [repos, 1]}", "{get_input: [repos, 7]}")
    result = load_template(write("t.yaml", text), sets=["cpus=2"])
    found = codes(result)
    assert "unknown-node" in found
    unknown = next(d for d in result.diagnostics if d.code == "unknown-node")
    assert unknown.hint == "did you mean 'vm'?"
    assert found.count("unresolved-reference") >= 1  # the operation that does not exist
    # an index past the end of an input's list depends on the inputs: a warning that
    # names the index and the length; plan refuses it (test_unresolved_path_*)
    [path] = [d for d in result.diagnostics if d.code == "unresolved-path"]
    assert path.severity.value == "warning"
    assert "index 7 is out of range of a list of" in path.message


INDEXED = """
tosca_definitions_version: tosca_simple_yaml_1_3
topology_template:
  inputs:
    users: {type: list, entry_schema: {type: string}, default: []}
  node_templates:
    vm:
      type: tosca.nodes.Compute
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{host: vm}]
      interfaces:
        Standard:
          create:
            implementation: playbooks/base.yml
            inputs:
              first: {get_input: [users, 0]}
  outputs:
    first_user: {value: {get_input: [users, 0]}}
"""


def test_unresolved_path_is_a_warning_until_inputs_are_known(write):
    path = write("t.yaml", INDEXED)
    report = validate(path)
    assert report.valid, [d.render() for d in report.diagnostics]
    [warned] = [d for d in report.diagnostics if d.code == "unresolved-path"]
    assert warned.severity.value == "warning" and warned.node == "app"
    assert "index 0 is out of range of a list of 0 item(s)" in warned.message
    with pytest.raises(TemplateError) as refused:
        require_inputs(report)
    assert "do not resolve" in str(refused.value)
    assert [d.code for d in refused.value.diagnostics] == ["unresolved-path"]
    assert all(d.is_error for d in refused.value.diagnostics)
    given = validate(path, sets=['users=["ana", "bo"]'])
    assert not [d for d in given.diagnostics if d.code.startswith("unresolved")]
    require_inputs(given)
    outputs = {o.name: o.value for o in given.topology.outputs}
    assert outputs["first_user"] == "ana"


def test_an_unresolved_output_is_null_and_does_not_stop_a_plan(write):
    """INFN-Cloud's single VM outputs os_users[0] while the users input defaults to []."""
    text = INDEXED.replace("              first: {get_input: [users, 0]}\n",
                           "              first: {get_input: users}\n")
    report = validate(write("t.yaml", text))
    assert report.valid, [d.render() for d in report.diagnostics]
    [warned] = [d for d in report.diagnostics if d.code.startswith("unresolved")]
    assert (warned.code, warned.severity.value) == ("unresolved-output", "warning")
    assert "output 'first_user'" in warned.message and "the output is null" in warned.message
    require_inputs(report)  # nothing deployed depends on an output
    assert {o.name: o.value for o in report.topology.outputs}["first_user"] is None


def test_get_property_cycle(write):
    text = """
    tosca_definitions_version: tosca_simple_yaml_1_3
    topology_template:
      node_templates:
        a:
          type: tosca.nodes.SoftwareComponent
          properties:
            component_version: {get_property: [b, component_version]}
        b:
          type: tosca.nodes.SoftwareComponent
          properties:
            component_version: {get_property: [a, component_version]}
    """
    result = load_template(write("t.yaml", text))
    assert "function-cycle" in codes(result)


def test_misspelt_function_is_hinted(write):
    text = TEMPLATE.replace("{get_input: cpus}", "{get_inputs: cpus}")
    result = load_template(write("t.yaml", text), sets=["cpus=2"])
    diag = next(d for d in result.diagnostics if d.code == "unknown-function")
    assert diag.hint == "did you mean 'get_input'?"
    assert ("type-mismatch", 24) in errors(result)
    assert ("constraint-violation", 24) not in errors(result)
