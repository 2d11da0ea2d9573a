"""Text and JSON views of validation reports, topologies and the catalogue.

The text view is rendered from the same JSON-able data the JSON view prints."""
from __future__ import annotations

from orchestrator.diagnostics import Diagnostics, Severity
from orchestrator.topology.secrets import mask_topology

FORMAT_VERSION = 1


def diagnostics_text(diagnostics: Diagnostics) -> str:
    return "\n".join(d.render() for d in diagnostics.sorted())


def warning_count(report) -> int:
    return sum(1 for d in report.diagnostics if d.severity is Severity.WARNING)


def validation_text(report, strict: bool = False) -> str:
    lines = [diagnostics_text(report.diagnostics)] if len(report.diagnostics) else []
    errors = len(report.diagnostics.errors)
    warnings = len(report.diagnostics) - errors
    if report.valid and strict and warning_count(report):
        lines.append(f"{report.file}: invalid under --strict ({warning_count(report)} "
                     "warning(s), no errors)")
    elif report.valid:
        nodes = len(report.topology.nodes)
        lines.append(f"{report.file}: valid ({nodes} node{'s' if nodes != 1 else ''}"
                     f"{f', {warnings} warning(s)' if warnings else ''})")
    else:
        lines.append(f"{report.file}: invalid ({errors} error{'s' if errors != 1 else ''}"
                     f"{f', {warnings} warning(s)' if warnings else ''})")
    return "\n".join(lines)


def validation_json(report, with_topology: bool = False, strict: bool = False) -> dict:
    data = {
        "format_version": FORMAT_VERSION,
        "file": report.file,
        "valid": report.valid and not (strict and warning_count(report)),
        "errors": len(report.diagnostics.errors),
        "warnings": len(report.diagnostics) - len(report.diagnostics.errors),
        "diagnostics": [d.to_dict() for d in report.diagnostics.sorted()],
    }
    if with_topology:
        data["topology"] = mask_topology(report.topology.to_dict()) if report.topology else None
    return data


def _fmt_number(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _scalar(value) -> str:
    if isinstance(value, dict) and len(value) == 1:
        key, args = next(iter(value.items()))
        if isinstance(args, list):
            return f"{key}({', '.join(_scalar(a) for a in args)})"
        return f"{key}({_scalar(args)})"
    if isinstance(value, str):
        return repr(value) if value == "" or " " in value else value
    if isinstance(value, list):
        return "[" + ", ".join(_scalar(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_scalar(v)}" for k, v in value.items()) + "}"
    if isinstance(value, bool):
        return "true" if value else "false"
    return "null" if value is None else _fmt_number(value)


def compute_lines(req: dict) -> list[str]:
    sizes = []
    if req.get("cpus") is not None:
        sizes.append(f"{_fmt_number(req['cpus'])} cpus")
    if req.get("memory_mib") is not None:
        sizes.append(f"{_fmt_number(req['memory_mib'])} MiB memory")
    if req.get("disk_gib") is not None:
        sizes.append(f"{_fmt_number(req['disk_gib'])} GiB disk")
    gpus = req.get("gpus") or {}
    if gpus.get("count"):
        what = " ".join(x for x in (gpus.get("vendor"), gpus.get("model")) if x) or "any"
        mig = f" (MIG {gpus['mig_profile']})" if gpus.get("mig_profile") else ""
        sizes.append(f"{gpus['count']} x GPU {what}{mig}")
    flags = [name for name, on in (("infiniband", req.get("infiniband")), ("sgx", req.get("sgx")),
                                   ("preemptible", req.get("preemptible")),
                                   ("public ip", req.get("public_ip"))) if on]
    scaling = req.get("scaling") or {}
    count = f"count {scaling.get('count', 1)}"
    if scaling.get("max_instances") not in (None, scaling.get("count")) or \
            scaling.get("min_instances") not in (None, 1, scaling.get("count")):
        count += f" (min {scaling.get('min_instances')}, max {scaling.get('max_instances')})"
    lines = [", ".join(sizes + flags + [count]) or count]
    osr = req.get("os") or {}
    os_text = " ".join(str(osr[k]) for k in ("distribution", "version", "architecture")
                       if osr.get(k))
    if osr.get("image"):
        os_text += f" image {osr['image']}"
    if osr.get("gpu_driver") not in (None, False):
        os_text += f" gpu driver {osr['gpu_driver']}"
    if osr.get("cuda_version"):
        os_text += f" cuda {osr['cuda_version']}"
    if os_text.strip():
        lines.append("os: " + os_text.strip())
    if req.get("instance_type"):
        lines.append(f"instance type: {req['instance_type']}")
    cvmfs = req.get("cvmfs") or {}
    if cvmfs.get("repositories"):
        extra = f" via {cvmfs['proxy']}" if cvmfs.get("proxy") else ""
        lines.append("cvmfs: " + ", ".join(cvmfs["repositories"]) + extra)
    if req.get("ports"):
        lines.append("ports: " + ", ".join(
            f"{p['port']}{'-' + str(p['end_port']) if p.get('end_port') else ''}/{p['protocol']}"
            f" from {p['remote_cidr']}" for p in req["ports"]))
    if req.get("networks"):
        lines.append("networks: " + ", ".join(req["networks"]))
    for vol in req.get("volumes") or []:
        lines.append(f"volume: {vol['node']}" + (f" {_fmt_number(vol['size_gib'])} GiB"
                                                  if vol.get("size_gib") else "")
                     + (f" at {vol['location']}" if vol.get("location") else ""))
    return lines


def topology_text(topology) -> str:
    data = mask_topology(topology.to_dict())
    out = [f"Template: {data['file']} ({data['version']})"]
    if data.get("description"):
        out.append("  " + data["description"].replace("\n", "\n  "))
    out.append("")
    out.append("Inputs:")
    if not data["inputs"]:
        out.append("  (none)")
    for item in data["inputs"]:
        detail = f"  {item['name']}: {item['type']} = {_scalar(item['value'])}"
        if item.get("default") is not None:
            detail += f"  (default {_scalar(item['default'])})"
        elif item.get("required"):
            detail += "  (required)"
        if item.get("constraints"):
            detail += "  " + ", ".join(_scalar(c) for c in item["constraints"])
        out.append(detail)
        if item.get("description"):
            out.append("      " + item["description"].replace("\n", " "))
    out.append("")
    out.append("Nodes (dependency order):")
    nodes = data["nodes"]
    for name in data["order"]:
        node = nodes[name]
        host = f" on {node['host']}" if node.get("host") else ""
        out.append(f"  {name}  {node['type']}  [{node['kind']}]{host}")
        if node.get("compute"):
            out.extend("      " + line for line in compute_lines(node["compute"]))
        hosted = [r["source"] for r in data["relationships"]
                  if r["kind"] == "HostedOn" and r["target"] == name]
        if hosted:
            out.append("      hosts: " + ", ".join(hosted))
        ops = [f"{o['interface']}.{o['name']}" for o in node["operations"] if o["implementation"]]
        if ops:
            out.append("      operations: " + ", ".join(ops))
    out.append("")
    out.append("Hosting:")
    out.extend(_hosting_tree(data))
    others = [r for r in data["relationships"] if r["kind"] != "HostedOn"]
    if others:
        out.append("")
        out.append("Relationships:")
        for rel in others:
            out.append(f"  {rel['source']} --{rel['requirement']} [{rel['kind']}]--> "
                       f"{rel['target']}")
    if data["policies"]:
        out.append("")
        out.append("Policies:")
        for pol in data["policies"]:
            out.append(f"  {pol['name']}: {pol['type']} -> {', '.join(pol['targets']) or 'all'}"
                       f" {_scalar(pol['properties'])}")
    out.append("")
    out.append("Outputs:")
    if not data["outputs"]:
        out.append("  (none)")
    for output in data["outputs"]:
        out.append(f"  {output['name']} = {_scalar(output['value'])}")
        if output.get("description"):
            out.append("      " + str(output["description"]).strip().replace("\n", " "))
    return "\n".join(out)


def _hosting_tree(data: dict) -> list[str]:
    children: dict[str, list[str]] = {}
    for rel in data["relationships"]:
        if rel["kind"] == "HostedOn":
            children.setdefault(rel["target"], []).append(rel["source"])
    lines = []

    def walk(name: str, depth: int, seen: frozenset) -> None:
        lines.append("  " + "   " * depth + ("└─ " if depth else "") + name)
        for child in children.get(name, []):
            if child not in seen:
                walk(child, depth + 1, seen | {child})

    for name, node in data["nodes"].items():
        if not node.get("host"):
            walk(name, 0, frozenset({name}))
    return lines


def catalogue_json(entries) -> dict:
    return {"format_version": FORMAT_VERSION, "templates": [
        {"name": e.name, "path": e.path, "description": e.description, "metadata": e.metadata,
         "valid": e.valid, "inputs": [mask_topology({"inputs": [i]})["inputs"][0]
                                      for i in e.inputs]} for e in entries]}


def catalogue_text(entries) -> str:
    lines = []
    for entry in entries:
        flag = "" if entry.valid else "  (INVALID: run `orchestrator validate` on it)"
        summary = (entry.description or "").strip().splitlines()
        lines.append(f"{entry.name}{flag}")
        if summary:
            lines.append(f"    {summary[0]}")
        if entry.inputs:
            lines.append("    inputs: " + ", ".join(i["name"] for i in entry.inputs))
    return "\n".join(lines)
