"""Constructs of real INDIGO-DataCloud / INFN-Cloud templates and type files that
tosca-parser and IM accept: taken with a warning that says what was assumed, while what
is ambiguous or misspelt stays an error. Each case is a small template of the same shape
as the corpus file it comes from."""
import pytest

from orchestrator.diagnostics import Severity
from orchestrator.errors import TemplateError
from orchestrator.tosca import versions
from orchestrator.validation import require_inputs, validate

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_0\n"


def _check(write, text: str, *, name: str = "t.yaml", **files):
    for other, body in files.items():
        write(other, body)
    return validate(write(name, HEADER + text))


def _only(report, code: str):
    found = [d for d in report.diagnostics if d.code == code]
    assert len(found) == 1, [d.render() for d in report.diagnostics]
    return found[0]


# -- versions ---------------------------------------------------------------------------
VERSION_INPUT = """
topology_template:
  inputs:
    os_version:
      type: version
      default: 20.04
      constraints:
        - valid_values: [ 18.04, 20.04, 22.04, 7, 9 ]
  node_templates:
    vm:
      type: tosca.nodes.Compute
      capabilities:
        os: {properties: {version: {get_input: os_version}}}
"""


@pytest.mark.parametrize("given", [None, "os_version=20.04", 'os_version="20.04"',
                                   "os_version=7", 'os_version="9"'])
def test_version_valid_values_compare_as_versions(write, given):
    path = write("t.yaml", HEADER + VERSION_INPUT)
    report = validate(path, sets=[given] if given else [])
    assert report.valid, [d.render() for d in report.diagnostics]


def test_a_version_outside_valid_values_is_refused(write):
    report = validate(write("t.yaml", HEADER + VERSION_INPUT), sets=["os_version=21.04"])
    diag = _only(report, "constraint-violation")
    assert diag.is_error and "21.04" in diag.message and "20.04" in diag.message


def test_versions_order_by_their_parts():
    assert versions.satisfies("20.04", "greater_than", 18.10)
    assert versions.satisfies(9, "in_range", ["7", "9.1"])
    assert not versions.satisfies("1.10", "less_than", "1.9")
    assert versions.satisfies("2.0.1.beta-3", "greater_than", "2.0.1.alpha-9")
    with pytest.raises(ValueError):
        versions.satisfies("1.0", "valid_values", ["x.y"])


# -- constraints as a map, booleans as strings --------------------------------------------
def test_constraints_written_as_a_map_are_read_with_a_warning(write):
    report = _check(write, """
topology_template:
  inputs:
    size:
      type: scalar-unit.size
      default: 20 GB
      constraints:
        in_range: [1 GB, 100 GB]
  node_templates:
    data: {type: tosca.nodes.BlockStorage, properties: {size: {get_input: size}}}
""")
    assert report.valid
    diag = _only(report, "invalid-type-definition")
    assert diag.severity is Severity.WARNING and diag.line == 9  # the map itself
    refused = validate(report.file, sets=["size=200 GB"])
    assert _only(refused, "constraint-violation").is_error


def test_a_boolean_default_of_a_string_input_reads_as_text(write):
    report = _check(write, """
topology_template:
  inputs:
    docker_privileged:
      type: string
      default: false
      constraints:
        - valid_values: [false, true]
  node_templates:
    vm: {type: tosca.nodes.Compute}
  outputs:
    privileged: {value: {get_input: docker_privileged}}
""")
    assert report.valid, [d.render() for d in report.diagnostics]
    diag = _only(report, "type-mismatch")
    assert diag.severity is Severity.WARNING and "'false'" in diag.message
    assert {o.name: o.value for o in report.topology.outputs}["privileged"] == "false"


def test_a_list_where_a_string_is_declared_is_still_an_error(write):
    report = _check(write, """
topology_template:
  inputs:
    name: {type: string, default: [a]}
  node_templates:
    vm: {type: tosca.nodes.Compute}
""")
    assert not report.valid and _only(report, "type-mismatch").is_error


# -- requirements ---------------------------------------------------------------------------
STORAGE = """
topology_template:
  node_templates:
    cache:
      type: tosca.nodes.SoftwareComponent
      requirements:
        - host: vm
        - REQ:
            node: volume
            capability: tosca.capabilities.Attachment
            relationship: {type: tosca.relationships.AttachesTo,
                           properties: {location: /data}}
    vm: {type: tosca.nodes.Compute}
    volume: {type: tosca.nodes.BlockStorage, properties: {size: 10 GB}}
"""


def test_an_undeclared_requirement_naming_a_node_is_taken_with_a_warning(write):
    report = _check(write, STORAGE.replace("REQ", "local_storage"))
    assert report.valid, [d.render() for d in report.diagnostics]
    diag = _only(report, "unknown-requirement")
    assert diag.severity is Severity.WARNING and "node 'volume'" in diag.message
    kinds = {(r.source, r.target): r.kind for r in report.topology.relationships}
    assert ("cache", "volume") in kinds


def test_a_misspelt_requirement_stays_an_error(write):
    report = _check(write, STORAGE.replace("REQ", "dependecy"))
    diag = _only(report, "unknown-requirement")
    assert diag.is_error and "dependency" in (diag.hint or "")


HOSTED_ON_SOFTWARE = """
topology_template:
  node_templates:
    client:
      type: tosca.nodes.SoftwareComponent
      requirements: [{host: worker}]
    worker:
      type: tosca.nodes.SoftwareComponent
      requirements: [{host: vm}]
    vm: {type: tosca.nodes.Compute}
"""


def test_host_on_a_hosted_software_node_is_placed_on_its_host(write):
    report = _check(write, HOSTED_ON_SOFTWARE)
    assert report.valid, [d.render() for d in report.diagnostics]
    assert _only(report, "requirement-mismatch").severity is Severity.WARNING
    hosted = {(r.source, r.target) for r in report.topology.relationships
              if r.kind == "HostedOn"}
    assert {("client", "worker"), ("worker", "vm")} <= hosted


def test_host_on_an_unhosted_software_node_stays_an_error(write):
    report = _check(write, HOSTED_ON_SOFTWARE.replace("      requirements: [{host: vm}]\n",
                                                      ""))
    assert _only(report, "requirement-mismatch").is_error


def test_a_left_out_host_is_a_warning(write):
    report = _check(write, """
topology_template:
  node_templates:
    elastic: {type: tosca.nodes.SoftwareComponent}
""")
    assert report.valid
    diag = _only(report, "missing-requirement")
    assert diag.severity is Severity.WARNING and diag.node == "elastic"


# -- types and interfaces of imported files ----------------------------------------------
BROKEN_TYPES = HEADER + """
node_types:
  tosca.nodes.indigo.AnsibleRecipe:
    derived_from: tosca.nodes.ec3.Application
"""


def test_an_imported_type_with_an_unknown_parent_is_a_warning_until_used(write):
    report = _check(write, """
imports: [types.yaml]
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
""", **{"types.yaml": BROKEN_TYPES})
    assert report.valid
    diag = _only(report, "unknown-type")
    assert diag.severity is Severity.WARNING and diag.file.endswith("types.yaml")
    used = _check(write, """
imports: [types.yaml]
topology_template:
  node_templates:
    recipe: {type: tosca.nodes.indigo.AnsibleRecipe}
""", name="u.yaml")
    assert not used.valid
    assert any(d.is_error and d.code == "unknown-type" and d.node == "recipe"
               for d in used.diagnostics)


def test_the_root_template_type_with_an_unknown_parent_is_an_error(write):
    report = _check(write, BROKEN_TYPES[len(HEADER):] + """
topology_template:
  node_templates:
    vm: {type: tosca.nodes.Compute}
""")
    assert _only(report, "unknown-type").is_error


RELATIONSHIP = """
relationship_types:
  acme.Mounts:
    derived_from: tosca.relationships.AttachesTo
    interfaces:
      Configure:
        pre_configure_source:
          implementation: mount.yml
          inputs:
            where: {get_property: [SELF, location]}
            token: {get_property: [TARGET, size]}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.Compute
      requirements:
        - local_storage:
            node: volume
            relationship:
              type: acme.Mounts
              properties: {location: /mnt/disk}
    volume: {type: tosca.nodes.BlockStorage, properties: {size: 10 GB}}
"""


PLAYBOOKS = {"mount.yml": "- hosts: all\n", "after.yml": "- hosts: all\n"}


def test_self_in_a_relationship_interface_is_the_relationship(write):
    report = _check(write, RELATIONSHIP, **PLAYBOOKS)
    assert report.valid, [d.render() for d in report.diagnostics]
    inputs = _operation_inputs(report, "vm", "pre_configure_source")
    assert inputs["where"] == "/mnt/disk"


def test_a_configure_operation_under_standard_is_moved(write):
    text = RELATIONSHIP.replace("              properties: {location: /mnt/disk}\n",
                                "              properties: {location: /mnt/disk}\n"
                                "              interfaces:\n"
                                "                Standard:\n"
                                "                  post_configure_source: after.yml\n")
    report = _check(write, text, **PLAYBOOKS)
    assert report.valid, [d.render() for d in report.diagnostics]
    diag = _only(report, "unknown-operation")
    assert diag.severity is Severity.WARNING and "Configure" in diag.message
    assert _operation_inputs(report, "vm", "post_configure_source") is not None


def _operation_inputs(report, node: str, operation: str):
    data = report.topology.to_dict()
    for relationship in data["relationships"]:
        if relationship["source"] != node:
            continue
        for op in relationship.get("operations") or ():
            if op["name"] == operation:
                return op.get("inputs") or {}
    raise AssertionError(f"no operation {operation} on {node}'s relationships: {data}")


# -- duplicate keys and missing inputs in imported type files -----------------------------
def test_a_duplicate_key_in_an_imported_type_file_is_a_warning(write):
    report = _check(write, """
imports: [types.yaml]
topology_template:
  node_templates:
    app: {type: acme.App, requirements: [{host: vm}]}
    vm: {type: tosca.nodes.Compute}
""", **{"types.yaml": HEADER + """
node_types:
  acme.App:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      flavour:
        type: string
        default: small
        constraints: [{min_length: 1}]
        constraints: [{valid_values: [small, large]}]
"""})
    assert report.valid
    diag = _only(report, "duplicate-key")
    assert diag.severity is Severity.WARNING and diag.file.endswith("types.yaml")
    assert "first at line 10, column 9" in diag.message and diag.line == 11


def test_plan_refuses_missing_inputs_listing_each_with_its_description(write):
    report = _check(write, """
topology_template:
  inputs:
    es_password: {type: string, description: Password for user elastic}
    contact_email: {type: string, description: Your e-mail for notifications}
    size: {type: integer, default: 2}
  node_templates:
    vm: {type: tosca.nodes.Compute}
""")
    assert report.valid and len(report.missing_inputs) == 2
    with pytest.raises(TemplateError) as refused:
        require_inputs(report)
    assert "es_password, contact_email" in str(refused.value)
    messages = [d.message for d in refused.value.diagnostics]
    assert any("Password for user elastic" in m for m in messages)
    assert any("Your e-mail for notifications" in m for m in messages)
