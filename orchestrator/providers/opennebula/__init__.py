"""The ``opennebula`` provider: nodes are OpenNebula VMs, driven through pyone (XML-RPC).

See provider.py for the behaviour, vmtemplate.py for the VM template, states.py for the
VM states and docs/opennebula.md for the site options.
"""
from orchestrator.providers.opennebula.provider import OpenNebulaProvider

__all__ = ["OpenNebulaProvider"]
