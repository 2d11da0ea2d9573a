"""The ``cloud`` provider: public clouds (EC2, GCE, Azure and other libcloud drivers).

provider.py holds the one code path; adapters/ the per-driver differences; credentials.py
reads the driver's arguments from the site's reference. See docs/cloud.md.
"""
from orchestrator.providers.cloud.provider import CloudProvider

__all__ = ["CloudProvider"]
