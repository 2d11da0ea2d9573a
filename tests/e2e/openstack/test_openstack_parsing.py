"""What the OpenStack provider reads from a cloud's answers, without a cloud: GPUs and
InfiniBand from flavor extra_specs, image metadata, quotas, error translation and the
cloud-init user data."""
import base64

import pytest
import yaml

from orchestrator.providers.base import (
    Flavor,
    GpuOffer,
    Image,
    NotFoundError,
    ProviderError,
    QuotaExceededError,
    Quotas,
    TransientProviderError,
)
from orchestrator.providers.openstack import flavors, userdata
from orchestrator.providers.openstack.session import translate


@pytest.mark.parametrize("specs, expected", [
    ({"pci_passthrough:alias": "a100:2"}, GpuOffer(2, "NVIDIA", "A100")),
    ({"pci_passthrough:alias": "nvidia-h100:4"}, GpuOffer(4, "NVIDIA", "H100")),
    ({"pci_passthrough:alias": "mi250:1,mlx5:1"}, GpuOffer(1, "AMD", "MI250")),
    ({"resources:PGPU": "2", "gpu_model": "A100"}, GpuOffer(2, "NVIDIA", "A100")),
    ({"resources1:VGPU": "1"}, GpuOffer(1, None, None)),
    ({"gpu_count": "8", "gpu_vendor": "nvidia", "gpu_model": "V100"},
     GpuOffer(8, "NVIDIA", "V100")),
    ({"aggregate_instance_extra_specs:gpu_model": "T4", "has_gpu": "true"},
     GpuOffer(1, "NVIDIA", "T4")),
    ({"hw:cpu_policy": "dedicated"}, GpuOffer()),
])
def test_gpus_from_extra_specs(specs, expected):
    assert flavors.gpus_from_specs(specs) == expected


@pytest.mark.parametrize("specs, expected", [
    ({"trait:CUSTOM_INFINIBAND": "required"}, True),
    ({"trait:CUSTOM_INFINIBAND": "forbidden"}, False),
    ({"infiniband": "true"}, True),
    ({"aggregate_instance_extra_specs:has_infiniband": "yes"}, True),
    ({"pci_passthrough:alias": "mlx5-vf:1"}, True),
    ({"pci_passthrough:alias": "a100:1"}, False),
    ({}, False),
])
def test_infiniband_from_extra_specs(specs, expected):
    assert flavors.infiniband_from_specs(specs) is expected


class _Cloud:
    def __init__(self, **fields):
        self.__dict__.update(fields)


def test_flavors_merge_with_the_site_catalogue():
    live = [_Cloud(name="g1.t4", id="f1", vcpus=8, ram=32768, disk=100,
                   extra_specs={"resources:VGPU": "1"}),
            _Cloud(name="m1", id="f2", vcpus=2, ram=4096, disk=20, extra_specs={}),
            _Cloud(name="off", id="f3", vcpus=2, ram=4096, disk=20, extra_specs={},
                   is_disabled=True)]
    declared = [Flavor("g1.t4", 8, 32768, gpus=GpuOffer(1, "NVIDIA", "T4"), infiniband=True),
                Flavor("absent", 1, 1)]
    merged = {f.name: f for f in flavors.merged_flavors(live, declared)}
    assert set(merged) == {"g1.t4", "m1"}  # disabled and cloud-less flavors are left out
    assert merged["g1.t4"].gpus == GpuOffer(1, "NVIDIA", "T4") and merged["g1.t4"].infiniband
    assert merged["m1"].id == "f2" and merged["m1"].memory_mib == 4096


def test_images_read_os_and_cuda_metadata():
    live = [_Cloud(name="u22", id="i1", status="active", os_distro="Ubuntu", os_version="22.04",
                   architecture="x86_64", properties={"gpu_driver": "535", "cuda": "12.2"}),
            _Cloud(name="queued", id="i2", status="queued", properties={})]
    merged = flavors.merged_images(live, [Image("u22", aliases=("ubuntu",))])
    assert merged == (Image("u22", "i1", "ubuntu", "22.04", "x86_64", "535", "12.2",
                            ("ubuntu",)),)


def test_quotas_take_the_lower_limit_and_the_usage():
    compute = _Cloud(instances=10, cores=-1, ram=51200,
                     usage={"instances": 3, "cores": 6, "ram": 6144})
    volume = _Cloud(volumes=5, gigabytes=100, usage={"volumes": 1, "gigabytes": 10})
    quotas = flavors.merged_quotas(compute, volume, Quotas(instances=4, gpus=2))
    assert (quotas.instances, quotas.cores, quotas.memory_mib, quotas.gpus) == \
        (4, None, 51200, 2)
    assert quotas.remaining("instances") == 1 and quotas.remaining("volume_gib") == 90


def _http_error(status: int, message: str):
    """The exception openstacksdk raises for an HTTP error response."""
    import requests
    from openstack import exceptions

    response = requests.Response()
    response.status_code, response.url = status, "http://cloud.example/v2.1/servers"
    response._content = b"{}"
    return exceptions.HttpException(message=message, response=response)


@pytest.mark.parametrize("status, message, kind", [
    (403, "Quota exceeded for instances: Requested 1, but already used 2 of 2 instances",
     QuotaExceededError),
    (409, "Quota exceeded for resources: ['floatingip'].", QuotaExceededError),
    (413, "VolumeLimitExceeded: Maximum number of volumes allowed (10) exceeded",
     QuotaExceededError),
    (409, "Security group 1234 in use.", TransientProviderError),
    (503, "Service Unavailable", TransientProviderError),
    (404, "Server abc could not be found.", NotFoundError),
    (400, "Invalid key_name provided.", ProviderError),
])
def test_sdk_errors_become_the_right_provider_errors(status, message, kind):
    error = translate(_http_error(status, message), "cnaf", "create server vm[0]")
    assert type(error) is kind
    assert "site 'cnaf'" in str(error) and message.split(":")[0] in str(error)


def test_quota_errors_name_the_quota_and_secrets_are_masked():
    error = translate(_http_error(403, "Quota exceeded for cores: Requested 4, but already "
                                       "used 20 of 20 cores"), "s", "create server")
    assert "quota 'cores'" in str(error)
    leaked = translate(RuntimeError("auth failed: password=hunter2 token: abc"), "s", "x")
    assert "hunter2" not in str(leaked) and "abc" not in str(leaked)


def test_connection_failures_are_transient():
    from keystoneauth1 import exceptions

    error = translate(exceptions.ConnectFailure("Unable to establish connection"), "s",
                      "list servers")
    assert isinstance(error, TransientProviderError)


def test_cloud_init_carries_the_key_hostname_and_user():
    text = userdata.cloud_config("Worker_Node", 3, "ssh-ed25519 AAAA key", "cloudadm",
                                 ["data"], {"packages": ["htop"]})
    config = yaml.safe_load(text)
    assert text.startswith("#cloud-config\n")
    assert config["hostname"] == "worker-node-3"
    assert config["ssh_authorized_keys"] == ["ssh-ed25519 AAAA key"]
    assert config["users"][1]["name"] == "cloudadm"
    assert config["packages"] == ["python3", "htop"] and config["disable_root"] is False
    assert base64.b64decode(userdata.encoded(text)).decode() == text
