"""Generate synthetic TOSCA 1.3 templates for the front-end benchmark.

    python benchmarks/generate.py 1000 > /tmp/n1000.yaml

A template of size N has N distinct ``tosca.nodes.Compute`` node templates
(``vm_0`` .. ``vm_{N-1}``), each with ``host`` (num_cpus, mem_size, disk_size) and
``os`` (type, distribution, version, architecture) capability properties varied per
node, and N ``tosca.nodes.SoftwareComponent`` node templates (``app_i``), each
hosted on ``vm_i``. A handful of inputs are used through ``get_input`` (some node
properties, all software versions) and every compute has an output using
``get_attribute``. Only normative types are used, so no imports are needed and
tosca-parser can load exactly the same file.
"""
from __future__ import annotations

import sys

CPUS = (1, 2, 4, 8, 16, 32)
MEMS = ("2 GB", "4 GB", "8 GB", "16 GB", "32 GB", "64 GB", "512 MB", "3 GiB")
DISKS = ("10 GB", "20 GB", "40 GB", "80 GB", "100 GB", "250 GB", "1 TB")
DISTROS = (("ubuntu", "22.04"), ("ubuntu", "24.04"), ("rocky", "9"),
           ("almalinux", "9.3"), ("debian", "12"))
ARCHS = ("x86_64", "aarch64")


def _compute(i: int) -> str:
    distro, version = DISTROS[i % len(DISTROS)]
    # every third node takes its size / distribution from the inputs
    if i % 3 == 0:
        num_cpus = "{ get_input: default_cpus }"
        distribution = "{ get_input: default_distribution }"
    else:
        num_cpus = str(CPUS[i % len(CPUS)])
        distribution = distro
    mem = MEMS[(i * 7) % len(MEMS)]
    disk = "{ get_input: default_disk }" if i % 5 == 0 else DISKS[(i * 3) % len(DISKS)]
    return f"""\
    vm_{i}:
      type: tosca.nodes.Compute
      metadata:
        index: "{i}"
      capabilities:
        host:
          properties:
            num_cpus: {num_cpus}
            mem_size: {mem}
            disk_size: {disk}
        os:
          properties:
            type: linux
            distribution: {distribution}
            version: "{version}"
            architecture: {ARCHS[i % len(ARCHS)]}
"""


def _software(i: int) -> str:
    return f"""\
    app_{i}:
      type: tosca.nodes.SoftwareComponent
      description: Application instance {i}
      properties:
        component_version: {{ get_input: app_version }}
      requirements:
        - host: vm_{i}
"""


def _output(i: int) -> str:
    attribute = "public_address" if i % 2 else "private_address"
    return f"""\
    vm_{i}_address:
      description: Address of vm_{i}
      value: {{ get_attribute: [vm_{i}, {attribute}] }}
"""


HEADER = """\
tosca_definitions_version: tosca_simple_yaml_1_3

description: Synthetic benchmark template with {n} compute nodes and {n} software components.

metadata:
  template_name: benchmark-{n}
  template_author: benchmarks/generate.py
  template_version: 1.0.0

topology_template:

  inputs:
    default_cpus:
      type: integer
      default: 2
      constraints:
        - valid_values: [1, 2, 4, 8, 16, 32]
    default_disk:
      type: scalar-unit.size
      default: 20 GB
      constraints:
        - in_range: [10 GB, 500 GB]
    default_distribution:
      type: string
      default: ubuntu
      constraints:
        - valid_values: [ubuntu, rocky, almalinux, debian]
    app_version:
      type: version
      default: 1.2.3
    cluster_name:
      type: string
      default: bench
      required: false

  node_templates:

"""


def generate(n: int) -> str:
    """The text of a template with ``n`` computes and ``n`` software components."""
    if n < 1:
        raise ValueError("n must be at least 1")
    parts = [HEADER.format(n=n)]
    for i in range(n):
        parts.append(_compute(i))
        parts.append(_software(i))
    parts.append("\n  outputs:\n\n")
    parts.extend(_output(i) for i in range(n))
    return "".join(parts)


def write(n: int, path: str) -> str:
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(generate(n))
    return path


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python benchmarks/generate.py N")
    sys.stdout.write(generate(int(sys.argv[1])))
