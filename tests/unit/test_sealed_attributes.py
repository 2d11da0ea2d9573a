"""Attributes that hold a secret (a playbook's set_stats output carrying an operation's
secret) are sealed at rest: the state database holds them masked and sealed, the run that
made them and a run that resumes from the database see the real values."""
from __future__ import annotations

from cryptography.fernet import Fernet

from orchestrator.engine.outputs import SECRET_ATTRIBUTES, make_lookup
from orchestrator.engine.sealed_attributes import SEALED, open_attributes, seal_attributes
from orchestrator.engine.steps import StepContext
from orchestrator.plan.model import Plan, Step
from orchestrator.sealing import Sealer
from orchestrator.state import Store
from orchestrator.topology.model import Node, Topology
from orchestrator.topology.secrets import MASK
from orchestrator.tosca.functions import Deferred

CANARY = "canary-attribute-51d2e0"
ATTRIBUTES = {"state": "started", "dsn": f"postgres://admin:{CANARY}@db/x", "plain": "hi",
              "operation_outputs": {"Standard.configure": {"dsn": f"x:{CANARY}", "plain": "hi"}},
              SECRET_ATTRIBUTES: ["dsn"]}


def test_secret_attributes_are_masked_and_sealed_and_open_again():
    sealer = Sealer(Fernet.generate_key())
    stored = seal_attributes(ATTRIBUTES, sealer.seal, MASK)
    assert CANARY not in repr({k: v for k, v in stored.items() if k != SEALED})
    assert CANARY not in stored[SEALED]  # ciphertext
    assert stored["dsn"] == MASK and stored["plain"] == "hi"
    assert stored["operation_outputs"]["Standard.configure"] == {"dsn": MASK, "plain": "hi"}
    assert open_attributes(stored, sealer.open) == ATTRIBUTES
    assert seal_attributes({"plain": "hi"}, sealer.seal, MASK) == {"plain": "hi"}


def _context(store, deployment_id, sealer):
    plan = Plan(deployment="d", template="t.yaml", template_digest="x", base_serial=0,
                steps=())
    topology = Topology(file="t.yaml", version="tosca_simple_yaml_1_3", description=None,
                        metadata={}, inputs=(), nodes={"app": Node("app", "x", ("x",),
                                                                   "software")},
                        relationships=(), outputs=(), policies=(), groups=(),
                        order=("app",))
    return StepContext(store, deployment_id, plan, topology, lambda site: None, {},
                       seal=sealer.seal, open_sealed=sealer.open)


def test_the_database_never_holds_the_secret_and_a_resumed_run_sees_it(tmp_path):
    sealer = Sealer(Fernet.generate_key())
    path = tmp_path / "state.db"
    with Store(f"sqlite:///{path}") as store:
        record = store.create_deployment("d", template_path="t.yaml", template_text="x: 1")
        step = Step(id="configure software app[0]", action="configure", kind="software",
                    node="app")
        ctx = _context(store, record.id, sealer)
        row = ctx.record(step, status="configured", attributes=dict(ATTRIBUTES))
        assert row.attributes["dsn"] == ATTRIBUTES["dsn"]  # the run keeps the real value
        stored = {r.node: r for r in store.resources(record.id)}["app"].attributes
        assert stored["dsn"] == MASK and SEALED in stored
        ctx.record(step, status="started")  # a later update of the row keeps it opened
        assert ctx.current(step).attributes["dsn"] == ATTRIBUTES["dsn"]
        resumed = _context(store, record.id, sealer)
        lookup = make_lookup(resumed.rows(), resumed.topology)
        assert lookup(Deferred("get_attribute", ("app", "dsn"), "app")) == ATTRIBUTES["dsn"]
    for name in (path, path.with_name("state.db-wal")):
        if name.exists():
            assert CANARY.encode() not in name.read_bytes()
