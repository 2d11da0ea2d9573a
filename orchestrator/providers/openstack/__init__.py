"""The ``openstack`` provider (openstacksdk): see docs/openstack.md."""
from orchestrator.providers.openstack.provider import OpenStackProvider

__all__ = ["OpenStackProvider"]
