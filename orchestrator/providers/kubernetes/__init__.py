"""The ``kubernetes`` provider: compute instances as StatefulSets in a namespace per
deployment, volumes as PersistentVolumeClaims, ports as Services.

provider.py has the behaviour, manifests.py the objects (pure functions), status.py
how pod states and API errors are read, client.py the REST calls through the
kubernetes client (imported on first use); docs/kubernetes.md the options.
"""
from orchestrator.providers.kubernetes.provider import KubernetesProvider

__all__ = ["KubernetesProvider"]
