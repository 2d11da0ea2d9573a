"""Ansible contextualisation: inventories from host descriptions, one ansible-runner run
per TOSCA operation, and the ``AnsibleConfigurator`` the engine drives.

ansible-runner and ansible-core are optional (the ``ansible`` extra); they are imported
lazily, so importing this package never needs them.
"""
from orchestrator.contextualize.configurator import AnsibleConfigurator, host_name
from orchestrator.contextualize.inventory import build_inventory
from orchestrator.contextualize.runner import OperationResult, run_operation

__all__ = ["AnsibleConfigurator", "OperationResult", "build_inventory", "host_name",
           "run_operation"]
