"""Secrets as a taint (orchestrator.tosca.secret): values computed from a secret input,
property, attribute or operation output stay secret through the intrinsic functions, are
masked wherever they are shown, and outputs made of them are kept apart to be sealed."""
from __future__ import annotations

import json
import pickle
import stat

import pytest

from orchestrator import service
from orchestrator.contextualize.configurator import evaluate_inputs
from orchestrator.engine.outputs import make_lookup, show_outputs, split_outputs
from orchestrator.sealing import SealingError, default_sealer
from orchestrator.topology.secrets import MASK, mask, mask_topology
from orchestrator.tosca.functions import Deferred, resolve_deferred
from orchestrator.tosca.secret import Secret, keep_taint, taint, tainted

TEMPLATE = """tosca_definitions_version: tosca_simple_yaml_1_3
node_types:
  example.App:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      connection: {type: string}
      admin_password: {type: string, required: false}
      label: {type: string, required: false}
topology_template:
  inputs:
    db_password: {type: string}
    dbkey: {type: string, metadata: {secret: true}}
    region: {type: string, default: eu}
  node_templates:
    vm: {type: tosca.nodes.Compute}
    app:
      type: example.App
      requirements: [{host: vm}]
      properties:
        connection: {concat: ["postgres://admin:", {get_input: db_password}, "@db/x"]}
        admin_password: literal-pass
        label: {get_input: region}
      interfaces:
        Standard:
          configure:
            implementation: playbooks/base.yml
            inputs:
              dsn: {join: [["u", {get_input: dbkey}], ":"]}
              host: {token: [{get_property: [SELF, connection]}, "@", 1]}
              region: {get_input: region}
  outputs:
    direct: {value: {get_input: db_password}}
    joined: {value: {concat: ["dsn=", {get_input: dbkey}]}}
    through_property: {value: {get_property: [app, admin_password]}}
    live: {value: {concat: [{get_attribute: [vm, private_address]}, ":",
                            {get_input: db_password}]}}
    plain: {value: {get_input: region}}
"""


def _topology(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(TEMPLATE)
    report = service.validate(str(path), sets=["db_password=hunter2-x", "dbkey=k3y-value"])
    assert report.valid, [d.render() for d in report.diagnostics]
    return report.topology


def test_taint_spreads_through_functions_and_paths(tmp_path):
    topology = _topology(tmp_path)
    app = topology.nodes["app"]
    assert isinstance(app.properties["connection"], Secret)
    assert isinstance(app.properties["admin_password"], Secret)  # a secret property
    assert not tainted(app.properties["label"])
    inputs = app.operations[0].inputs
    assert isinstance(inputs["dsn"], Secret) and inputs["dsn"] == "u:k3y-value"
    assert isinstance(inputs["host"], Secret) and inputs["host"] == "db/x"  # token of a secret
    assert not tainted(inputs["region"])
    extravars = evaluate_inputs(inputs, lambda ref: None)  # a playbook gets the value itself
    assert extravars["dsn"] == "u:k3y-value" and type(extravars["dsn"]) is str
    outputs = {o.name: o.value for o in topology.outputs}
    assert isinstance(outputs["direct"], Secret) and isinstance(outputs["joined"], Secret)
    assert isinstance(outputs["through_property"], Secret)
    assert isinstance(outputs["live"], Deferred) and tainted(outputs["live"])
    assert not tainted(outputs["plain"])


def test_a_secret_reads_as_text_but_never_shows_in_repr():
    secret = Secret("hunter2")
    assert secret == "hunter2" and f"{secret}" == "hunter2" and json.dumps(secret) == '"hunter2"'
    assert "hunter2" not in repr(secret) and "hunter2" not in repr({"a": secret})
    assert isinstance(pickle.loads(pickle.dumps(secret)), Secret)
    assert taint({"a": ["x", 1]}) == {"a": ["x", 1]} and tainted(taint({"a": ["x", 1]}))
    assert isinstance(keep_taint("ab", ["a", secret]), Secret)
    assert type(keep_taint("ab", ["a", "b"])) is str


def test_run_time_values_keep_and_gain_the_taint():
    concat = Deferred("concat", (Deferred("get_attribute", ("vm", "public_address"), "vm"),
                                 ":", Secret("pw")), "vm")
    resolved = resolve_deferred(concat, lambda ref: "10.0.0.1")
    assert resolved == "10.0.0.1:pw" and isinstance(resolved, Secret)
    token = Deferred("token", (Deferred("get_attribute", ("vm", "x"), "vm"), ":", 0), "vm")
    assert type(resolve_deferred(token, lambda ref: "a:b")) is str

    class Row:
        node, index, kind, status, provider_id = "db", 0, "compute", "active", "i-1"
        attributes = {"admin_password": "generated", "public_address": "10.0.0.9",
                      "operation_outputs": {"Standard.create": {"api_token": "t0k"}}}

    lookup = make_lookup([Row()], _EmptyTopology())
    assert isinstance(lookup(Deferred("get_attribute", ("db", "admin_password"), "db")),
                      Secret)
    assert type(lookup(Deferred("get_attribute", ("db", "public_address"), "db"))) is str
    assert isinstance(lookup(Deferred("get_operation_output",
                                      ("db", "Standard", "create", "api_token"), "db")), Secret)


class _EmptyTopology:
    nodes: dict = {}
    relationships: tuple = ()


def test_masking_covers_tainted_values_and_secrets_inside_text(tmp_path):
    data = mask_topology(_topology(tmp_path).to_dict())
    text = json.dumps(data)
    assert "hunter2-x" not in text and "k3y-value" not in text
    assert data["nodes"]["app"]["properties"]["connection"] == MASK
    assert data["nodes"]["app"]["properties"]["label"] == "eu"
    live = next(o for o in data["outputs"] if o["name"] == "live")["value"]
    assert live["concat"][2] == MASK and live["concat"][0] == {
        "get_attribute": ["vm", "private_address"]}
    assert mask({"dsn": "postgres://u:hunter2-x@h"}, frozenset({"hunter2-x"})) == {"dsn": MASK}
    assert mask({"k": "a"}, frozenset({"a"})) == {"k": MASK}  # a short one only when whole
    assert mask({"k": "banana"}, frozenset({"a"})) == {"k": "banana"}


def test_secret_outputs_are_split_off_and_shown_only_when_revealed():
    outputs = {"dsn": Secret("dsn=pw"), "nested": {"a": [Secret("x")]}, "ip": "10.0.0.1",
               "api_token": "by-name", "none": None}
    shown, secret = split_outputs(outputs, MASK)
    assert shown == {"dsn": MASK, "nested": MASK, "ip": "10.0.0.1", "api_token": MASK,
                     "none": None}
    assert secret == {"dsn": "dsn=pw", "nested": {"a": ["x"]}, "api_token": "by-name"}
    assert all(type(v) is not Secret for v in secret.values())
    # read back later: the live values lost the secret inputs (never stored); the sealed
    # copy is what the owner sees on request
    live = {"dsn": "dsn=", "nested": None, "ip": "10.0.0.1", "api_token": "by-name",
            "none": None}
    masked, revealed = show_outputs(live, shown, {}, MASK, reveal=False)
    assert masked == shown and revealed == []
    opened, revealed = show_outputs(live, shown, secret, MASK, reveal=True)
    assert opened == {**secret, "ip": "10.0.0.1", "none": None}
    assert revealed == ["dsn", "nested", "api_token"]


def test_the_local_sealing_key_is_private_to_its_owner(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("ORCHESTRATOR_SECRET_KEY", raising=False)
    sealer = default_sealer()
    key = tmp_path / "orchestrator" / "server.key"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    sealed = sealer.seal({"dsn": "dsn=pw"})
    assert "dsn=pw" not in sealed
    assert default_sealer().open(sealed) == {"dsn": "dsn=pw"}  # the same key, read back
    monkeypatch.setenv("ORCHESTRATOR_SECRET_KEY", "Hq2y0iGMW8tqHcD7mbLwcl1UNm-Gz1yQWzsHdvAzvxk=")
    with pytest.raises(SealingError):
        default_sealer().open(sealed)  # the service's key, where one is set, wins
