"""Front-end benchmark: our load + validate + topology against bare tosca-parser.

    python benchmarks/frontend.py [--sizes 10,100,500,1000] [--repeat 5]
                                  [--no-reference] [--reference-timeout 300]
                                  [--json] [--strict]

For every size N a synthetic template with N computes and N software components
(see ``benchmarks/generate.py``) is written to a temporary directory, then each
measurement runs in a fresh subprocess: the modules are imported first (timed
separately), then the clock runs around the one call only —
``orchestrator.service.validate(path)`` for ours, ``ToscaTemplate(path)`` for the
reference — and the process reports its peak RSS (``ru_maxrss``) and the growth
over the peak measured right after the imports. Times are medians over
``--repeat`` runs. The targets at N=1000 are printed as PASS/MISS lines; the exit
status is 0 whatever they say unless ``--strict`` is given. See benchmarks/README.md.
"""
from __future__ import annotations

import json
import os
import resource
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# targets, all at N = 1000 (1000 computes + 1000 software components)
TARGET_N = 1000
TARGET_SECONDS = 1.0
TARGET_SPEEDUP = 2.0
TARGET_SCALING = 12.0  # time(1000) / time(100)
TARGET_RSS_MB = 150.0


# --------------------------------------------------------------------------- worker
# Runs in the measured subprocess: keep the module-level imports above minimal so
# the baseline is the interpreter plus the code under test, nothing of ours.

def _maxrss_mb() -> float:
    kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    if sys.platform == "darwin":  # bytes there, KiB on Linux
        kib /= 1024
    return kib / 1024


def _current_rss_mb() -> float | None:
    try:
        with open("/proc/self/statm", encoding="ascii") as handle:
            pages = int(handle.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)
    except (OSError, ValueError, IndexError):
        return None


def _worker(side: str, path: str, expect_nodes: int) -> int:
    result: dict = {"side": side}
    start = time.perf_counter()
    if side == "ours":
        from orchestrator import service
    else:
        from toscaparser.tosca_template import ToscaTemplate
    result["import_s"] = time.perf_counter() - start
    result["baseline_rss_mb"] = _maxrss_mb()
    result["baseline_current_rss_mb"] = _current_rss_mb()

    error = None
    start = time.perf_counter()
    if side == "ours":
        report = service.validate(path)
        elapsed = time.perf_counter() - start
        nodes = len(report.topology.nodes) if report.topology is not None else None
        if not report.valid:
            error = "validate() says the template is invalid:\n" + "\n".join(
                str(d) for d in report.diagnostics)
    else:
        try:
            template = ToscaTemplate(path)
        except Exception as exc:  # noqa: BLE001 - reported to the parent
            elapsed = time.perf_counter() - start
            nodes = None
            error = f"ToscaTemplate raised {type(exc).__name__}: {exc}"
        else:
            elapsed = time.perf_counter() - start
            nodes = len(template.nodetemplates)

    result["elapsed_s"] = elapsed
    result["nodes"] = nodes
    result["peak_rss_mb"] = _maxrss_mb()
    result["rss_delta_mb"] = result["peak_rss_mb"] - result["baseline_rss_mb"]
    if error is None and nodes != expect_nodes:
        error = f"expected {expect_nodes} nodes, got {nodes}"
    result["error"] = error
    sys.stdout.write("\n@@RESULT@@" + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0 if error is None else 3


def _profile_worker(path: str, limit: int) -> int:
    """cProfile one call of ours (fresh process, imports done first)."""
    import cProfile
    import io
    import pstats

    from orchestrator import service

    profiler = cProfile.Profile()
    profiler.enable()
    report = service.validate(path)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(r"orchestrator", limit)
    stats.sort_stats("tottime").print_stats(limit)
    sys.stdout.write(f"valid={report.valid}\n" + out.getvalue())
    return 0 if report.valid else 3


# --------------------------------------------------------------------------- parent

SIDES = {"ours": "orchestrator.service.validate", "reference": "toscaparser ToscaTemplate"}


class BenchmarkError(RuntimeError):
    """Our side failed (invalid template, wrong node count, crash): fail loudly."""


def _run_once(side: str, path: str, expect_nodes: int, timeout: float):
    """One fresh subprocess; returns the worker's result dict, or None on timeout."""
    import subprocess

    cmd = [sys.executable, os.path.abspath(__file__), "--worker",
           "ours" if side == "ours" else "tp", path, str(expect_nodes)]
    try:
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True,
                              timeout=timeout,
                              cwd=os.path.dirname(HERE))
    except subprocess.TimeoutExpired:
        return None
    marker = proc.stdout.rfind("@@RESULT@@")
    if marker < 0:
        raise BenchmarkError(
            f"{SIDES[side]} worker crashed (exit {proc.returncode}) on {path}:\n"
            f"{proc.stderr[-4000:]}")
    result = json.loads(proc.stdout[marker + len("@@RESULT@@"):].strip())
    if result["error"]:
        raise BenchmarkError(f"{SIDES[side]} failed on {path}: {result['error']}")
    return result


def _summary(runs: list[dict]) -> dict:
    from statistics import median

    times = [r["elapsed_s"] for r in runs]
    return {
        "status": "ok",
        "runs_s": times,
        "median_s": median(times),
        "min_s": min(times),
        "max_s": max(times),
        "import_s": median(r["import_s"] for r in runs),
        "baseline_rss_mb": max(r["baseline_rss_mb"] for r in runs),
        "peak_rss_mb": max(r["peak_rss_mb"] for r in runs),
        "rss_delta_mb": max(r["rss_delta_mb"] for r in runs),
    }


def _progress(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def run_benchmark(sizes, repeat, reference, reference_timeout, ours_timeout, workdir):
    sys.path.insert(0, HERE)
    from generate import write

    rows = []
    for n in sizes:
        path = write(n, os.path.join(workdir, f"bench-{n}.yaml"))
        expect = 2 * n
        row = {"n": n, "nodes": expect, "file_bytes": os.path.getsize(path)}
        ours_runs, ref_runs = [], []
        # after one timeout at a size, the remaining runs of tosca-parser there are skipped
        ref_status = "disabled" if not reference else None
        for i in range(repeat):
            _progress(f"N={n}: run {i + 1}/{repeat} ours")
            result = _run_once("ours", path, expect, ours_timeout)
            if result is None:
                raise BenchmarkError(f"ours took longer than {ours_timeout:g} s at N={n}")
            ours_runs.append(result)
            if ref_status is None:
                _progress(f"N={n}: run {i + 1}/{repeat} tosca-parser")
                result = _run_once("reference", path, expect, reference_timeout)
                if result is None:
                    ref_status = "timeout"
                else:
                    ref_runs.append(result)
        row["ours"] = _summary(ours_runs)
        if ref_status is None:
            row["reference"] = _summary(ref_runs)
            row["speedup"] = row["reference"]["median_s"] / row["ours"]["median_s"]
        else:
            row["reference"] = {"status": ref_status}
            if ref_status == "timeout":
                row["reference"]["timeout_s"] = reference_timeout
                # a lower bound: tosca-parser took at least the timeout
                row["speedup_at_least"] = reference_timeout / row["ours"]["median_s"]
        rows.append(row)
    return rows


def _profile(n: int, workdir: str, limit: int = 30) -> str:
    import subprocess

    path = os.path.join(workdir, f"bench-{n}.yaml")
    _progress(f"N={n}: profiling ours")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--profile-worker", path,
                           str(limit)], check=False, capture_output=True, text=True,
                          cwd=os.path.dirname(HERE))
    if proc.returncode != 0:
        raise BenchmarkError(f"profiling failed (exit {proc.returncode}):\n"
                             f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    return proc.stdout


def _scaling(rows, side, big=TARGET_N, small=100):
    by_n = {r["n"]: r for r in rows}
    if big not in by_n or small not in by_n:
        return None
    a, b = by_n[big][side], by_n[small][side]
    if a.get("status") != "ok" or b.get("status") != "ok":
        return None
    return a["median_s"] / b["median_s"]


def evaluate_targets(rows, reference):
    by_n = {r["n"]: r for r in rows}
    row = by_n.get(TARGET_N)
    checks = []

    def check(name, target, value, ok, note=None):
        if value is None:
            status = "SKIP"
        else:
            status = "PASS" if ok else "MISS"
        checks.append({"name": name, "target": target, "value": value,
                       "status": status, "note": note})

    missing = f"N={TARGET_N} not measured"
    if row is None:
        for name, target in (("ours median time", f"<= {TARGET_SECONDS:g} s"),
                             ("speed-up over tosca-parser", f">= {TARGET_SPEEDUP:g}x"),
                             ("scaling time(1000)/time(100)", f"<= {TARGET_SCALING:g}"),
                             ("ours peak RSS", f"<= {TARGET_RSS_MB:g} MB")):
            check(name, target, None, False, missing)
        return checks

    ours = row["ours"]
    check("ours median time", f"<= {TARGET_SECONDS:g} s", ours["median_s"],
          ours["median_s"] <= TARGET_SECONDS)
    if "speedup" in row:
        check("speed-up over tosca-parser", f">= {TARGET_SPEEDUP:g}x", row["speedup"],
              row["speedup"] >= TARGET_SPEEDUP)
    elif "speedup_at_least" in row:
        at_least = row["speedup_at_least"]
        if at_least >= TARGET_SPEEDUP:
            check("speed-up over tosca-parser", f">= {TARGET_SPEEDUP:g}x", at_least, True,
                  "lower bound: tosca-parser timed out")
        else:  # a timeout shorter than 2x ours proves nothing either way
            check("speed-up over tosca-parser", f">= {TARGET_SPEEDUP:g}x", None, False,
                  f"inconclusive: tosca-parser timed out, speed-up > {at_least:.2f}x; "
                  "raise --reference-timeout")
    else:
        check("speed-up over tosca-parser", f">= {TARGET_SPEEDUP:g}x", None, False,
              "reference not run" if not reference else row["reference"]["status"])
    scaling = _scaling(rows, "ours")
    check("scaling time(1000)/time(100)", f"<= {TARGET_SCALING:g}", scaling,
          scaling is not None and scaling <= TARGET_SCALING,
          None if scaling is not None else "N=100 not measured")
    check("ours peak RSS", f"<= {TARGET_RSS_MB:g} MB", ours["peak_rss_mb"],
          ours["peak_rss_mb"] <= TARGET_RSS_MB)
    return checks


def _fmt_time(side: dict) -> str:
    if side.get("status") == "ok":
        return f"{side['median_s']:.3f}"
    if side.get("status") == "timeout":
        return f">{side['timeout_s']:g} (timeout)"
    if side.get("status") == "disabled":
        return "-"
    return side.get("status", "?")


def _fmt_mb(side: dict, key: str) -> str:
    return f"{side[key]:.1f}" if side.get("status") == "ok" else "-"


def print_table(rows, checks, meta) -> None:
    headers = ["N", "nodes", "ours s", "tosca-parser s", "speed-up", "ours RSS MB",
               "ours dRSS MB", "tp RSS MB", "tp dRSS MB"]
    table = []
    for row in rows:
        ours, ref = row["ours"], row["reference"]
        if "speedup" in row:
            speedup = f"{row['speedup']:.2f}x"
        elif "speedup_at_least" in row:
            speedup = f">{row['speedup_at_least']:.1f}x"
        else:
            speedup = "-"
        table.append([str(row["n"]), str(row["nodes"]), _fmt_time(ours), _fmt_time(ref),
                      speedup, _fmt_mb(ours, "peak_rss_mb"), _fmt_mb(ours, "rss_delta_mb"),
                      _fmt_mb(ref, "peak_rss_mb"), _fmt_mb(ref, "rss_delta_mb")])
    widths = [max(len(h), *(len(r[i]) for r in table)) for i, h in enumerate(headers)]
    print(f"Front-end benchmark ({meta['python']}, repeat={meta['repeat']}, "
          f"median wall time of the call, fresh process per run)")
    print("  ".join(h.rjust(w) for h, w in zip(headers, widths, strict=True)))
    print("  ".join("-" * w for w in widths))
    for r in table:
        print("  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)))
    print()
    for row in rows:
        ours, ref = row["ours"], row["reference"]
        ref_import = f"{ref['import_s']:.3f} s" if ref.get("status") == "ok" else "-"
        print(f"N={row['n']}: ours runs {', '.join(f'{t:.3f}' for t in ours['runs_s'])} s; "
              f"import ours {ours['import_s']:.3f} s, tosca-parser {ref_import}; "
              f"baseline RSS after imports ours {ours['baseline_rss_mb']:.1f} MB"
              + (f", tosca-parser {ref['baseline_rss_mb']:.1f} MB"
                 if ref.get("status") == "ok" else ""))
    for side, label in (("ours", "ours"), ("reference", "tosca-parser")):
        scaling = meta["scaling"][side]
        if scaling is not None:
            print(f"scaling time({TARGET_N})/time(100), {label}: {scaling:.2f}")
    print()
    print(f"Targets at N={TARGET_N} ({2 * TARGET_N} nodes):")
    for c in checks:
        value = c["value"]
        shown = "-" if value is None else (f"{value:.3f}" if isinstance(value, float)
                                           else str(value))
        note = f"  ({c['note']})" if c["note"] else ""
        print(f"  {c['status']:4}  {c['name']}: {shown} (target {c['target']}){note}")


def main(argv=None) -> int:
    import argparse
    import platform
    import tempfile

    parser = argparse.ArgumentParser(
        description="Benchmark our TOSCA front end against bare tosca-parser.")
    parser.add_argument("--sizes", default="10,100,500,1000",
                        help="comma-separated N (N computes + N software components)")
    parser.add_argument("--repeat", type=int, default=5, help="runs per size and side")
    parser.add_argument("--no-reference", action="store_true",
                        help="do not run tosca-parser")
    parser.add_argument("--reference-timeout", type=float, default=300.0,
                        help="seconds before one tosca-parser run counts as 'timeout'")
    parser.add_argument("--ours-timeout", type=float, default=600.0,
                        help="seconds before one run of ours is an error")
    parser.add_argument("--json", action="store_true", help="machine-readable results")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a target is missed")
    parser.add_argument("--profile", action="store_true",
                        help="also cProfile ours once at the largest size (printed to stderr "
                             "with --json); cProfile slows the call down, so read it for "
                             "proportions, not absolute times")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error("--sizes must be comma-separated integers")
    if not sizes or min(sizes) < 1 or args.repeat < 1:
        parser.error("sizes and --repeat must be positive")

    reference = not args.no_reference
    with tempfile.TemporaryDirectory(prefix="tosca-bench-") as workdir:
        try:
            rows = run_benchmark(sizes, args.repeat, reference, args.reference_timeout,
                                 args.ours_timeout, workdir)
            profile = _profile(max(sizes), workdir) if args.profile else None
        except BenchmarkError as exc:
            print(f"benchmark FAILED: {exc}", file=sys.stderr)
            return 2
    checks = evaluate_targets(rows, reference)
    meta = {
        "python": f"Python {platform.python_version()}",
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "repeat": args.repeat,
        "scaling": {"ours": _scaling(rows, "ours"), "reference": _scaling(rows, "reference")},
    }
    if args.json:
        json.dump({"meta": meta, "results": rows, "targets": checks}, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_table(rows, checks, meta)
    if profile is not None:
        stream = sys.stderr if args.json else sys.stdout
        stream.write(f"\ncProfile of ours at N={max(sizes)} (one fresh process):\n{profile}")
    missed = any(c["status"] == "MISS" for c in checks)
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        sys.exit(_worker(sys.argv[2], sys.argv[3], int(sys.argv[4])))
    if len(sys.argv) == 4 and sys.argv[1] == "--profile-worker":
        sys.exit(_profile_worker(sys.argv[2], int(sys.argv[3])))
    sys.exit(main())
