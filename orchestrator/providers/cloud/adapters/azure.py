"""Microsoft Azure (Resource Manager) through libcloud's ``azure_arm`` driver (built from its
sites.yaml entry and checked without network access; not exercised end to end here).

- Servers go into ``options.resource_group``, on ``options.network``/``options.subnet``
  when given; tags are Azure tags.
- The deployment's key is the admin user's key (``ssh_user``, default ``azureuser``).
- Ports are opened by the network security group the site's subnet carries: libcloud has
  no call to add rules to one, so this adapter manages no firewall.
- Images are ``Publisher:Offer:Sku:Version`` URNs; libcloud's azure_arm cannot ask for
  spot VMs, so preemptible requests are refused.
"""
from __future__ import annotations

from typing import Any

from orchestrator.providers.cloud.adapters import Adapter


class AzureAdapter(Adapter):
    name = "azure_arm"
    default_ssh_user = "azureuser"

    def image(self, driver: Any, image_id: str | None, pattern: str | None) -> Any | None:
        from libcloud.compute.drivers.azure_arm import AzureImage

        urn = image_id or pattern or ""
        parts = urn.split(":")
        if len(parts) != 4:
            return None
        return AzureImage(version=parts[3], sku=parts[2], offer=parts[1], publisher=parts[0],
                          location=self.options.get("zone") or driver.default_location,
                          driver=driver)

    def server_kwargs(self) -> dict:
        kwargs = {"ex_user_name": self.options.get("ssh_user") or self.default_ssh_user,
                  "ex_resource_group": self.options.get("resource_group"),
                  "ex_use_managed_disks": True}
        for option in ("network", "subnet"):
            if self.options.get(option):
                kwargs[f"ex_{option}"] = self.options[option]
        return kwargs

    def tag_kwargs(self, tags: dict) -> dict:
        return {"ex_tags": dict(tags)}

    def location(self, driver: Any) -> Any | None:
        wanted = self.options.get("zone")
        if not wanted:
            return None
        from libcloud.compute.base import NodeLocation

        return NodeLocation(wanted, wanted, "", driver)
