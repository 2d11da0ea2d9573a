"""Real Ansible printing secrets: a playbook that shows its secret operation inputs (``debug:
var=db_password``), hands one back in an operation output, or fails with it in the message
must leave only ****** in the node's log, its events and the error, and the output that holds
the secret is marked a secret attribute. Same containers as test_contextualize.py."""
from __future__ import annotations

import pytest

from orchestrator.engine.outputs import SECRET_ATTRIBUTES
from orchestrator.errors import ContextualizationError
from orchestrator.topology.model import Operation
from orchestrator.tosca.secret import taint
from tests.integration import test_contextualize as ctx
from tests.integration.test_contextualize import FIXTURES, _connection, _node, _step, _topology

nodes, cluster = ctx.nodes, ctx.cluster  # the same containers' fixtures

pytestmark = pytest.mark.slow
CANARY = "canary-ansible-5c03e1"
PIN = 8264019375
PROPERTY = "canary-property-77ab2"


def _printing_node(**extra):
    inputs = {"db_password": taint(CANARY), "pin": taint(PIN), **extra}
    return _node("app", [Operation("Standard", "configure",
                                   str(FIXTURES / "print_secret.yml"), inputs)],
                 properties={"api_secret": taint(PROPERTY)})


def test_a_playbook_printing_its_secret_inputs_is_masked(cluster, tmp_path):
    from orchestrator.contextualize.configurator import AnsibleConfigurator

    configurator = AnsibleConfigurator(tmp_path / "data")
    attributes = configurator.configure(_step("app"), _topology(_printing_node()),
                                        _connection(cluster[0]), {})
    log = (tmp_path / "data" / "logs" / "app-0.log").read_text()
    assert "db_password" in log and "the pin is ******" in log, log
    assert CANARY not in log and str(PIN) not in log
    assert attributes["dsn"] == f"postgres://admin:{CANARY}@db/x"  # what it gave back
    assert attributes[SECRET_ATTRIBUTES] == ["dsn"]  # ... is a secret attribute


def test_a_failure_message_with_a_secret_is_masked(cluster, tmp_path):
    from orchestrator.contextualize.configurator import AnsibleConfigurator

    configurator = AnsibleConfigurator(tmp_path / "data")
    with pytest.raises(ContextualizationError) as caught:
        configurator.configure(_step("app"), _topology(_printing_node(fail_now=True)),
                               _connection(cluster[1]), {})
    assert "cannot log in with ******" in str(caught.value)
    assert CANARY not in str(caught.value)
    assert CANARY not in (tmp_path / "data" / "logs" / "app-0.log").read_text()
