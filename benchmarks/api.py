"""REST API latency under load: p50/p99 of GET /v1/deployments/{id} and throughput with
100 concurrent clients on loopback, first with the service idle (the reference), then while
a 500-node simulated deployment is planned and applied by the same server's workers.

    python benchmarks/api.py [--clients 100] [--seconds 10] [--nodes 500] [--json]

Target: p99 under 50 ms while busy. Printed, never asserted."""
from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests import engine_support as es  # noqa: E402
from tests.fakes.oidc_issuer import OIDCIssuer  # noqa: E402
from tests.integration import api_server as support  # noqa: E402

TARGET_P99_MS = 50.0


async def _load(url: str, token: str, path: str, clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=30,
                                 headers={"Authorization": f"Bearer {token}"}) as client:
        async def one_client():
            nonlocal errors
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                response = await client.get(path)
                latencies.append(time.perf_counter() - start)
                errors += response.status_code != 200

        began = time.perf_counter()
        await asyncio.gather(*(one_client() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {"requests": len(latencies), "errors": errors,
            "p50_ms": 1000 * statistics.median(latencies),
            "p99_ms": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "throughput_rps": len(latencies) / elapsed}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-api-") as folder, OIDCIssuer() as issuer:
        tmp = Path(folder)
        sites = es.write_sites(tmp, es.site("sim", tmp, latency={"boot": 0.5, "create": 0.02}))
        server = support.start_server(tmp, db=f"sqlite:///{tmp / 'state.db'}", sites=sites,
                                      issuer=issuer.url, workers=2)
        token = issuer.token("bench")
        try:
            api = support.client(server, token)
            small = api.post("/v1/deployments", json={"name": "target",
                                                      "template": support.template_text()})
            target = small.json()["id"]
            support.wait_for(api, target)
            path = f"/v1/deployments/{target}"
            print("measuring idle ...", file=sys.stderr)
            idle = asyncio.run(_load(server.url, token, path, args.clients, args.seconds))
            big = api.post("/v1/deployments", json={
                "name": "big", "template": support.template_text(
                    es.cluster(workers=args.nodes - 1))})
            assert big.status_code == 202, big.text
            print(f"measuring while a {args.nodes}-node deployment runs ...", file=sys.stderr)
            busy = asyncio.run(_load(server.url, token, path, args.clients, args.seconds))
            state = api.get(f"/v1/deployments/{big.json()['id']}").json()
            busy["big_deployment_status_after"] = state["status"]
        finally:
            server.stop()
    result = {"clients": args.clients, "seconds": args.seconds, "nodes": args.nodes,
              "idle": idle, "busy": busy, "p99_ratio_busy_to_idle": busy["p99_ms"] / idle["p99_ms"],
              "target_p99_ms": TARGET_P99_MS, "target_met": busy["p99_ms"] < TARGET_P99_MS}
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    for label, data in (("idle", idle), ("busy", busy)):
        print(f"{label:5} p50 {data['p50_ms']:7.1f} ms  p99 {data['p99_ms']:7.1f} ms  "
              f"{data['throughput_rps']:7.0f} req/s  ({data['requests']} requests, "
              f"{data['errors']} errors)")
    print(f"busy/idle p99 ratio {result['p99_ratio_busy_to_idle']:.2f}; big deployment was "
          f"'{busy['big_deployment_status_after']}' at the end; target p99 < {TARGET_P99_MS:.0f}"
          f" ms: {'met' if result['target_met'] else 'NOT met'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
