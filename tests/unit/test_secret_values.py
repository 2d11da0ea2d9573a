"""Secrets that are not strings (a PIN, a map of credentials, a flag), attributes that are
secret (declared so by their type, or found holding a secret at run time) and the plan's
digests of secret properties (keyed, so they change with the secret but reveal nothing)."""
from __future__ import annotations

import json
import pickle

import pytest

from orchestrator import service
from orchestrator.contextualize.configurator import evaluate_inputs
from orchestrator.contextualize.runner import OperationResult, _redact
from orchestrator.engine.outputs import resolve_outputs, split_outputs
from orchestrator.plan.build import digest
from orchestrator.providers import simulated
from orchestrator.sealing import Sealer
from orchestrator.topology.secrets import MASK, mask, mask_topology
from orchestrator.tosca.secret import (
    SecretBool,
    SecretFloat,
    SecretInt,
    secret_texts,
    taint,
    tainted,
    untaint,
)
from tests import engine_support as es

TEMPLATE = """tosca_definitions_version: tosca_simple_yaml_1_3
node_types:
  example.App:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      port: {type: integer}
      settings: {type: map, required: false}
      debug: {type: boolean, required: false}
    attributes:
      conn_string: {type: string, metadata: {secret: true}}
      admin_pass: {type: string}
      address: {type: string}
topology_template:
  inputs:
    pin: {type: integer, metadata: {secret: true}}
    creds: {type: map, metadata: {secret: true}}
    flag: {type: boolean, metadata: {secret: true}}
  node_templates:
    vm: {type: tosca.nodes.Compute}
    app:
      type: example.App
      requirements: [{host: vm}]
      properties:
        port: {get_input: pin}
        settings: {get_input: creds}
        debug: {get_input: flag}
      interfaces:
        Standard:
          configure:
            implementation: playbooks/base.yml
            inputs:
              pin: {get_input: pin}
              creds: {get_input: creds}
              pin_text: {concat: ["pin=", {get_input: pin}]}
  outputs:
    pin: {value: {get_input: pin}}
    creds: {value: {get_input: creds}}
    port: {value: {get_property: [app, port]}}
    declared: {value: {concat: ["c=", {get_attribute: [app, conn_string]}]}}
    by_name: {value: {get_attribute: [app, admin_pass]}}
    marked: {value: {concat: [{get_attribute: [app, address]}, "/x"]}}
"""
SETS = ["pin=4812", 'creds={"user": "admin", "key": "k-38a7f1", "port": 6612}', "flag=true"]


def _topology(tmp_path, sets=SETS):
    path = tmp_path / "t.yaml"
    path.write_text(TEMPLATE)
    report = service.validate(str(path), sets=sets)
    assert report.valid, [d.render() for d in report.diagnostics]
    return report.topology


def test_numbers_booleans_and_maps_carry_the_taint():
    pin, ratio, flag = taint(4812), taint(0.5), taint(True)
    assert type(pin) is SecretInt and type(ratio) is SecretFloat and type(flag) is SecretBool
    assert pin == 4812 and f"{pin}" == "4812" and str(flag) == "True" and flag
    assert json.dumps({"p": pin, "r": ratio}) == '{"p": 4812, "r": 0.5}'
    assert "4812" not in repr([pin]) and "0.5" not in repr(ratio)
    assert type(pickle.loads(pickle.dumps(pin))) is SecretInt
    assert untaint({"a": [pin, flag, ratio]}) == {"a": [4812, True, 0.5]}
    assert type(untaint(flag)) is bool and type(untaint(pin)) is int
    assert mask({"anything": pin, "list": [flag], "plain": 7}) == {
        "anything": MASK, "list": [MASK], "plain": 7}
    assert secret_texts({"a": [pin, flag, "x"], "b": taint("abcd")}) == {"4812", "abcd"}


def test_secret_numbers_and_maps_flow_to_properties_inputs_and_outputs(tmp_path):
    topology = _topology(tmp_path)
    app = topology.nodes["app"]
    assert type(app.properties["port"]) is SecretInt  # checked as an integer, still secret
    assert type(app.properties["debug"]) is SecretBool
    assert tainted(app.properties["settings"]) and app.properties["settings"]["port"] == 6612
    shown = json.dumps(mask_topology(topology.to_dict()))
    assert "4812" not in shown and "k-38a7f1" not in shown and "6612" not in shown
    inputs = app.operations[0].inputs
    assert inputs["pin_text"] == "pin=4812" and tainted(inputs["pin_text"])
    found: set = set()
    extravars = evaluate_inputs(inputs, lambda ref: None, found)
    assert extravars["pin"] == 4812 and type(extravars["pin"]) is int
    assert type(extravars["creds"]["port"]) is int and {"4812", "k-38a7f1"} <= found
    shown, sealed = split_outputs(resolve_outputs(topology, []), MASK)
    assert {shown[k] for k in ("pin", "creds", "port")} == {MASK}
    assert sealed["pin"] == 4812 and sealed["creds"]["key"] == "k-38a7f1"


class _Row:
    node, index, kind, status, provider_id = "app", 0, "software", "configured", None

    def __init__(self, attributes):
        self.attributes = attributes


def test_declared_and_run_time_secret_attributes_make_secret_outputs(tmp_path):
    topology = _topology(tmp_path)
    assert topology.nodes["app"].secret_attributes == ("admin_pass", "conn_string")
    rows = [_Row({"conn_string": "pg://k-91d0", "admin_pass": "ap-7731",
                  "address": "10.0.0.5:pw-4471", "secret_attributes": ["address"]})]
    outputs = resolve_outputs(topology, rows)
    assert outputs["declared"] == "c=pg://k-91d0" and tainted(outputs["declared"])
    assert tainted(outputs["by_name"]) and tainted(outputs["marked"])
    shown, sealed = split_outputs(outputs, MASK)
    assert {shown[k] for k in ("declared", "by_name", "marked")} == {MASK}
    assert sealed["marked"] == "10.0.0.5:pw-4471/x"
    rows[0].attributes["secret_attributes"] = []  # not marked at run time: not secret
    assert not tainted(resolve_outputs(topology, rows)["marked"])


def test_what_a_playbook_printed_is_redacted():
    result = OperationResult("Standard.configure", "failed", 2,
                             stdout='ok: "db_password": "s3cr-et\\"x"\nthe pin is 4812',
                             failures={"h": ("use s3cr-et\"x", "bad 4812")},
                             events={"h": [{"stdout": "pin 4812"}]},
                             host_logs={"h": "4812 s3cr-et\"x"})
    _redact(result, secret_texts(taint({"pw": 's3cr-et"x', "pin": 4812})))
    assert result.stdout == 'ok: "db_password": "******"\nthe pin is ******'
    assert result.failures == {"h": ("use ******", "bad ******")}
    assert result.events["h"][0]["stdout"] == "pin ******"
    assert result.host_logs == {"h": "****** ******"}


# -- the plan's digests ---------------------------------------------------------------------
def test_secret_values_enter_a_digest_only_keyed():
    key_a, key_b = Sealer(_new_key()), Sealer(_new_key())
    weak = {"pin": taint(1234), "name": "app"}
    shown = digest(weak, key_a.fingerprint)
    assert shown == digest(weak, key_a.fingerprint)  # stable: no needless reconfiguring
    assert shown != digest({"pin": taint(1235), "name": "app"}, key_a.fingerprint)
    assert shown != digest(weak, key_b.fingerprint)  # it depends on the key ...
    guesses = {digest({"pin": guess, "name": "app"}) for guess in range(10000)}
    guesses |= {digest({"pin": str(guess), "name": "app"}) for guess in range(10000)}
    assert shown not in guesses  # ... so no guess of the secret reproduces it
    assert digest({"name": "app"}) == digest({"name": "app"}, key_a.fingerprint)  # unchanged


def _new_key() -> str:  # noqa: N802
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


@pytest.fixture
def orch(tmp_path, monkeypatch):
    monkeypatch.setenv("ORCHESTRATOR_SECRET_KEY", _new_key())
    simulated.reset_all()
    yield es.orchestrator(tmp_path, es.write_sites(tmp_path, es.site("a")))
    simulated.reset_all()


APP = """
topology_template:
  inputs:
    pin: {type: integer, metadata: {secret: true}}
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
      capabilities: {host: {properties: {num_cpus: 1}}}
    app:
      type: tosca.nodes.SoftwareComponent
      requirements: [{host: vm}]
      interfaces:
        Standard:
          configure: {implementation: marker.yml, inputs: {pin: {get_input: pin}}}
"""


def test_a_changed_secret_reconfigures_through_a_digest_that_hides_it(orch, tmp_path):
    template = es.write_template(tmp_path, APP)
    first = orch.plan(template, sets=["pin=1234"], name="demo").plan
    step = first.step("configure software app[0]")
    plain = digest([untaint(o.to_dict()) for o in orch.plan(
        template, sets=["pin=1234"], name="x").report.topology.nodes["app"].operations])
    assert step.details["operations"] != plain  # not the bare sha256 of the secret
    assert "1234" not in json.dumps(first.to_dict())
    assert orch.apply(first, sets=["pin=1234"]).run.ok
    same = orch.plan(template, sets=["pin=1234"], name="demo").plan
    assert not same.has_changes
    changed = orch.plan(template, sets=["pin=1235"], name="demo").plan
    step = changed.step("configure software app[0]")
    assert step.action == "configure" and step.reason == "properties or operations changed"
