"""Text views of plans, runs, deployments, events and sites (JSON views print the same
data with json.dumps)."""
from __future__ import annotations

import datetime

# the same symbols as orchestrator.plan.SYMBOLS, kept here so --help stays light
SYMBOLS = {"create": "+", "update": "~", "replace": "-/+", "delete": "-", "configure": "*",
           "noop": "="}


def duration(seconds: float) -> str:
    if seconds < 10:
        return f"{seconds:.1f}s"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def plan_text(data: dict, verbose: bool = False) -> str:
    placement = data.get("placement") or {}
    site = placement.get("site")
    ranked = [s for s in placement.get("ranked_sites", []) if s != site]
    lines = [f"Plan for deployment '{data['deployment']}'"
             + (f" on site {site}" if site else "")
             + (f" (failover: {', '.join(ranked)})" if ranked else "")]
    for node, placed in (placement.get("nodes") or {}).items():
        lines.append(f"  {node}: site {placed['site']}, flavor {placed['flavor']}, "
                     f"image {placed['image'] or '(provider default)'}")
    lines.append("")
    shown = 0
    for step in data["steps"]:
        if step["kind"] == "outputs" or (step["action"] == "noop" and not verbose):
            continue
        shown += 1
        symbol = SYMBOLS[step["action"]]
        what = f"{step['action']} {step['kind']} {step['node']}[{step['index']}]"
        extra = []
        details = step.get("details") or {}
        if step["kind"] == "compute" and step["action"] != "delete":
            extra.append(f"flavor {details.get('flavor')}")
            if details.get("image"):
                extra.append(f"image {details.get('image')}")
        if step["kind"] == "software" and details.get("implementation"):
            extra.append(details["implementation"])
        if step.get("site"):
            extra.append(f"site {step['site']}")
        line = f"  {symbol:>3} {what}"
        if extra:
            line += f" ({', '.join(extra)})"
        if step.get("reason") and step["reason"] not in ("new", "unchanged"):
            line += f": {step['reason']}"
        lines.append(line)
    if not shown:
        lines.append("  No changes: the deployment matches the template.")
    summary = data["summary"]
    lines.append("")
    line = (f"Plan: {summary['create'] + summary['replace']} to create, {summary['update']} "
            f"to update, {summary['delete'] + summary['replace']} to delete")
    if summary.get("configure"):
        line += f", {summary['configure']} to configure"
    line += f". Estimated duration: {duration(data.get('estimated_duration_s', 0))}."
    lines.append(line)
    return "\n".join(lines)


def event_line(event: dict) -> str:
    ts = event.get("ts")
    if isinstance(ts, str):
        try:
            ts = datetime.datetime.fromisoformat(ts)
        except ValueError:
            ts = None
    stamp = ts.strftime("%H:%M:%S") if isinstance(ts, datetime.datetime) else "--:--:--"
    level = event.get("level", "info")
    marker = {"error": "ERROR ", "warning": "WARN  "}.get(level, "")
    return f"[{stamp}] {marker}{event.get('message', '')}"


def deployments_text(records: list[dict]) -> str:
    if not records:
        return "No deployments."
    rows = [("NAME", "STATUS", "UPDATED", "ID")]
    for rec in records:
        rows.append((rec["name"], rec["status"], str(rec.get("updated_at", ""))[:19],
                     rec["id"][:12]))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip() for row in rows)


def status_text(data: dict) -> str:
    dep = data["deployment"]
    lines = [f"Deployment {dep['name']} ({dep['id']})",
             f"  status: {dep['status']}" + (f": {dep['status_reason']}"
                                             if dep.get("status_reason") else ""),
             f"  template: {dep.get('template_path')}",
             f"  updated: {dep.get('updated_at')}", "", "Resources:"]
    if not data["resources"]:
        lines.append("  (none)")
    for res in data["resources"]:
        address = (res.get("attributes") or {}).get("public_address") or \
            (res.get("attributes") or {}).get("private_address") or ""
        lines.append(f"  {res['node']}[{res['index']}]  {res['kind']:<8} {res['status']:<11} "
                     f"site {res.get('site') or '-'}  {res.get('provider_id') or '-'}  {address}"
                     .rstrip())
    return "\n".join(lines)


def outputs_text(outputs: dict) -> str:
    if not outputs:
        return "No outputs."
    return "\n".join(f"{k} = {v}" for k, v in outputs.items())


def sites_text(sites: list[dict]) -> str:
    lines = []
    for site in sites:
        lines.append(f"{site['name']}  provider {site['provider']}  priority {site['priority']}"
                     f"  concurrency {site['concurrency']}")
        for flavor in site.get("flavors", []):
            gpus = flavor.get("gpus") or {}
            gpu = f", {gpus['count']} x {gpus.get('model') or 'GPU'}" if gpus.get("count") else ""
            ib = ", InfiniBand" if flavor.get("infiniband") else ""
            lines.append(f"    flavor {flavor['name']}: {flavor['cpus']:g} cpus, "
                         f"{flavor['memory_mib']:g} MiB{gpu}{ib}")
        for image in site.get("images", []):
            os_text = " ".join(str(image[k]) for k in ("distribution", "version") if image.get(k))
            lines.append(f"    image {image['name']}" + (f": {os_text}" if os_text else ""))
    return "\n".join(lines) or "No sites."


def check_text(results: list[dict]) -> str:
    lines = []
    for res in results:
        ok = res["reachable"] and res["credentials_valid"]
        offer = res.get("offer") or {}
        what = (f"{len(offer.get('flavors', []))} flavors, {len(offer.get('images', []))} images"
                if offer else "")
        lines.append(f"{'ok  ' if ok else 'FAIL'} {res['site']}: "
                     + ("reachable, credentials valid" if ok else res.get("message") or "failed")
                     + (f"; offers {what}" if what else ""))
    return "\n".join(lines)
