"""Compatibility benchmark: how much of the real-world TOSCA corpus we accept.

    python benchmarks/compat.py [--corpus DIR] [--jobs N] [--timeout 60]
                                [--no-reference] [--verbose] [--json] [--strict]

Reads the templates of three sets in ``../shared/corpus`` (INDIGO templates, INDIGO
type examples, INFN-Cloud templates: every ``.yaml``/``.yml`` file with a
``tosca_definitions_version`` key) and validates each one three ways:

* ours with the real types: ``orchestrator.validation.validate(path,
  import_maps=[corpus/import-map.yaml])``, accepted when ``report.valid``;
* ours with the bundled types: ``validate(path)`` (only the project's own import map);
* bare tosca-parser with the real types: ``ToscaTemplate(path, local_defs=URL_MAP)``,
  accepted when it raises nothing. ``local_defs`` is tosca-parser's own table of
  import URL -> local file, consulted for nested imports too, so it reads the real
  upstream files of the corpus in place; any other URL fails at once (no network).
  An exception of tosca-parser's ``TOSCAException`` family is a refusal, any other
  exception a crash.

Every validation runs in a child forked from this process (the modules are imported
once, before the fork; each child starts from the same cold state), with a timeout
(a hang). Times are of the call alone. Targets are printed as PASS/MISS lines; the exit
status is 0 whatever they say unless ``--strict`` is given. See benchmarks/README.md.
"""
from __future__ import annotations

import glob
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DEFAULT_CORPUS = os.path.join(REPO, os.pardir, "shared", "corpus")

#: (key, label, glob patterns of the set's folders under the corpus)
SETS = (
    ("indigo-templates", "INDIGO templates", ("indigo-tosca-templates",)),
    ("indigo-examples", "INDIGO type examples", ("indigo-tosca-types/*/examples",)),
    ("infn-templates", "INFN-Cloud templates", ("infn-tosca-templates",)),
)
OURS = ("ours-real", "ours-bundled")
REFERENCE = "tosca-parser"
SIDE_LABELS = {"ours-real": "ours, real types", "ours-bundled": "ours, bundled types",
               REFERENCE: "tosca-parser, real types"}
#: share of a set our sides must accept (all sides of ours, real and bundled types)
TARGETS = {"indigo-templates": 0.90, "indigo-examples": 0.90, "infn-templates": 1.0}


class BenchmarkError(RuntimeError):
    """The benchmark cannot run (no corpus, no import map, our package not importable)."""


# --------------------------------------------------------------------------- corpus

def discover(corpus: str) -> list[tuple[str, str, list[str]]]:
    """(key, label, absolute template paths) for each set, in a stable order."""
    sets = []
    for key, label, patterns in SETS:
        files = []
        for pattern in patterns:
            for folder in sorted(glob.glob(os.path.join(corpus, pattern))):
                for root, dirs, names in os.walk(folder):
                    dirs.sort()
                    for name in sorted(names):
                        path = os.path.join(root, name)
                        if name.endswith((".yaml", ".yml")) and _is_tosca(path):
                            files.append(path)
        sets.append((key, label, files))
    return sets


def _is_tosca(path: str) -> bool:
    with open(path, encoding="utf-8", errors="replace") as handle:
        return "tosca_definitions_version" in handle.read()


def read_import_map(path: str) -> dict[str, str]:
    """URL -> absolute local path, from the corpus' import-map.yaml (paths relative to it)."""
    import yaml

    with open(path, encoding="utf-8") as handle:
        entries = yaml.safe_load(handle)
    if not isinstance(entries, list):
        raise BenchmarkError(f"{path}: expected a list of {{url, path}} entries")
    base = os.path.dirname(path)
    return {entry["url"]: os.path.normpath(os.path.join(base, entry["path"]))
            for entry in entries
            if isinstance(entry, dict) and "url" in entry and "path" in entry}


# --------------------------------------------------------------------------- child

def _quiet() -> None:
    """No library logging, warnings or prints in the child: only its result counts."""
    import logging
    import warnings

    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)


def _where(exc: BaseException) -> str:
    import traceback

    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return ""
    frame = frames[-1]
    name = frame.filename
    for marker in ("site-packages" + os.sep, REPO + os.sep):
        if marker in name:
            name = name.split(marker, 1)[1]
    return f" (at {name}:{frame.lineno} in {frame.name})"


def _crash(exc: BaseException, seconds: float | None) -> dict:
    first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
    return {"status": "crash", "seconds": seconds, "errors": None,
            "message": f"{type(exc).__name__}: {first}{_where(exc)}"}


def _run_ours(path: str, import_maps: list[str]) -> dict:
    from orchestrator.validation import validate

    start = time.perf_counter()
    try:
        report = validate(path, import_maps=import_maps)
    except Exception as exc:  # noqa: BLE001 - validate() must never raise: a crash
        return _crash(exc, time.perf_counter() - start)
    seconds = time.perf_counter() - start
    if report.valid:
        return {"status": "accepted", "seconds": seconds, "errors": 0, "message": None}
    errors = [d for d in report.diagnostics.sorted() if d.is_error]
    message = errors[0].render() if errors else "no error diagnostic, but no topology built"
    return {"status": "refused", "seconds": seconds, "errors": len(errors), "message": message}


def _run_reference(path: str, url_map: dict[str, str]) -> dict:
    import urllib.error
    import urllib.request

    from toscaparser.common.exception import TOSCAException
    from toscaparser.tosca_template import ToscaTemplate

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError(f"not in the corpus import map (no network): {url}")

    urllib.request.urlopen = no_network
    start = time.perf_counter()
    try:
        ToscaTemplate(path, local_defs=url_map)
    except TOSCAException as exc:
        seconds = time.perf_counter() - start
        text = str(exc)
        heading = "failed validation with the following error(s):"
        if heading in text:  # ValidationError: one "\tKind: message" line per error
            errors = [line.strip() for line in text.split(heading, 1)[1].split("\n\t")
                      if line.strip()]
            message = errors[0].splitlines()[0] if errors else text.strip()
        else:
            errors = [text]
            message = f"{type(exc).__name__}: {text.strip().splitlines()[0] if text else ''}"
        return {"status": "refused", "seconds": seconds, "errors": len(errors),
                "message": message}
    except Exception as exc:  # noqa: BLE001 - anything else is a crash of tosca-parser
        return _crash(exc, time.perf_counter() - start)
    return {"status": "accepted", "seconds": time.perf_counter() - start, "errors": 0,
            "message": None}


def _child(side: str, path: str, context: dict, conn) -> None:
    try:
        _quiet()
        if side == "ours-real":
            result = _run_ours(path, [context["import_map"]])
        elif side == "ours-bundled":
            result = _run_ours(path, [])
        else:
            result = _run_reference(path, context["url_map"])
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        result = _crash(exc, None)
    conn.send(result)
    conn.close()
    os._exit(0)


# --------------------------------------------------------------------------- parent

def _progress(msg: str) -> None:
    sys.stderr.write(msg + "\n")
    sys.stderr.flush()


def run_all(tasks: list[tuple[str, str]], context: dict, jobs: int, timeout: float) -> list:
    """Run (side, path) tasks, ``jobs`` children at a time; results in task order."""
    import multiprocessing
    from multiprocessing.connection import wait

    fork = multiprocessing.get_context("fork")
    results: list = [None] * len(tasks)
    pending = list(range(len(tasks)))
    running: dict = {}  # connection -> (task index, process, deadline)
    done, shown, step = 0, 0, max(1, len(tasks) // 10)
    while pending or running:
        while pending and len(running) < jobs:
            index = pending.pop(0)
            receive, send = fork.Pipe(duplex=False)
            process = fork.Process(target=_child, args=(*tasks[index], context, send),
                                   daemon=True)
            process.start()
            send.close()
            running[receive] = (index, process, time.monotonic() + timeout)
        soonest = min(deadline for _, _, deadline in running.values())
        for conn in wait(list(running), timeout=max(0.0, soonest - time.monotonic())):
            index, process, _ = running.pop(conn)
            try:
                results[index] = conn.recv()
            except EOFError:
                process.join()
                results[index] = {"status": "crash", "seconds": None, "errors": None,
                                  "message": f"the child died (exit code {process.exitcode})"}
            conn.close()
            process.join()
            done += 1
        now = time.monotonic()
        for conn, (index, process, deadline) in list(running.items()):
            if deadline <= now:
                process.kill()
                process.join()
                conn.close()
                del running[conn]
                results[index] = {"status": "hang", "seconds": None, "errors": None,
                                  "message": f"no answer within {timeout:g} s (killed)"}
                done += 1
        if done - shown >= step or (done > shown and not (pending or running)):
            shown = done
            _progress(f"{done}/{len(tasks)} validations done")
    return results


def summarise(results: list[dict]) -> dict:
    from statistics import median

    counts = {status: sum(r["status"] == status for r in results)
              for status in ("accepted", "refused", "crash", "hang")}
    times = [r["seconds"] for r in results if r["seconds"] is not None]
    return {"total": len(results), **counts,
            "share": counts["accepted"] / len(results) if results else None,
            "median_s": median(times) if times else None,
            "max_s": max(times) if times else None}


def evaluate_targets(sets: list[dict], sides: list[str]) -> list[dict]:
    checks = []
    for side in (s for s in sides if s in OURS):
        for entry in sets:
            summary, target = entry["sides"][side], TARGETS[entry["key"]]
            goal = "all" if target >= 1.0 else f">= {target:.0%}"
            if not summary["total"]:
                checks.append({"name": f"{SIDE_LABELS[side]}: {entry['label']} accepted",
                               "target": goal, "value": None, "status": "SKIP"})
                continue
            ok = summary["accepted"] >= target * summary["total"]
            checks.append({"name": f"{SIDE_LABELS[side]}: {entry['label']} accepted",
                           "target": goal, "status": "PASS" if ok else "MISS",
                           "value": f"{summary['accepted']}/{summary['total']} "
                                    f"({summary['share']:.0%})"})
    for status, word in (("crash", "crashes"), ("hang", "hangs")):
        count = sum(e["sides"][s][status] for e in sets for s in sides if s in OURS)
        checks.append({"name": f"{word} of ours", "target": "0", "value": str(count),
                       "status": "PASS" if count == 0 else "MISS"})
    return checks


def _short(text: str | None, prefixes: tuple[str, ...]) -> str:
    for prefix in prefixes:
        text = (text or "").replace(prefix + os.sep, "")
    return text


def _fmt_s(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def print_report(sets: list[dict], templates: list[dict], sides: list[str], checks: list,
                 meta: dict, verbose: bool) -> None:
    labels = {**SIDE_LABELS, REFERENCE: f"tosca-parser {meta['tosca_parser']}, real types"}
    headers = ["set", "side", "accepted", "refused", "crashed", "hung", "median s", "max s"]
    rows = []
    for entry in sets:
        for i, side in enumerate(sides):
            s = entry["sides"][side]
            share = "-" if s["share"] is None else f"{s['share']:.0%}"
            rows.append([f"{entry['label']} ({entry['total']})" if i == 0 else "",
                         labels[side], f"{s['accepted']}/{s['total']} {share:>4}",
                         str(s["refused"]), str(s["crash"]), str(s["hang"]),
                         _fmt_s(s["median_s"]), _fmt_s(s["max_s"])])
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    align = [str.ljust, str.ljust] + [str.rjust] * 6
    print(f"Compatibility benchmark, {meta['date']}: {meta['templates']} TOSCA templates of "
          f"{meta['corpus']} ({meta['python']}, {meta['cpu_count']} CPUs, {meta['jobs']} "
          f"jobs, timeout {meta['timeout_s']:g} s; times: wall time of the call per template)")
    print("  ".join(h.ljust(w) if i < 2 else h.rjust(w)
                    for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print("  ".join(f(c, w) for f, c, w in zip(align, row, widths, strict=True)))
    print()
    print("Targets:")
    for c in checks:
        print(f"  {c['status']:4}  {c['name']}: {c['value'] or '-'} (target {c['target']})")
    if not verbose:
        return
    print()
    print("Templates not accepted (first error diagnostic of ours, first error line of "
          "tosca-parser):")
    width = max(len(labels[s]) for s in sides) + 1
    for template in templates:
        missed = [s for s in sides if template["results"][s]["status"] != "accepted"]
        if not missed:
            continue
        print(f"{template['file']}")
        for side in missed:
            result = template["results"][side]
            more = (f" (+{result['errors'] - 1} more)" if result["errors"]
                    and result["errors"] > 1 else "")
            print(f"  {(labels[side] + ':').ljust(width)} {result['status']}: "
                  f"{result['message']}{more}")


def run_benchmark(corpus: str, sides: list[str], jobs: int, timeout: float, workdir: str):
    import logging
    import warnings

    map_path = os.path.join(corpus, "import-map.yaml")
    if not os.path.isfile(map_path):
        raise BenchmarkError(f"{map_path} not found: is {corpus} the shared TOSCA corpus?")
    found = discover(corpus)
    context = {"import_map": map_path, "url_map": read_import_map(map_path)}
    # the user's own import maps must not change the outcome of "bundled types"
    os.environ.pop("ORCHESTRATOR_IMPORT_MAP", None)
    os.environ["XDG_CONFIG_HOME"] = os.path.join(workdir, "config")
    logging.disable(logging.CRITICAL)
    warnings.simplefilter("ignore")
    sys.path.insert(0, REPO)
    try:  # imported once here, before the children are forked
        import orchestrator.validation  # noqa: F401
        if REFERENCE in sides:
            import toscaparser.tosca_template  # noqa: F401
    except ImportError as exc:
        raise BenchmarkError(f"cannot import {exc.name}: activate the project's venv") from exc
    tasks = [(side, path) for _, _, files in found for path in files for side in sides]
    _progress(f"{sum(len(f) for _, _, f in found)} templates, {len(tasks)} validations, "
              f"{jobs} at a time")
    results = iter(run_all(tasks, context, jobs, timeout))
    prefixes = (os.path.realpath(corpus), os.path.abspath(corpus), os.path.relpath(corpus))
    sets, templates = [], []
    for key, label, files in found:
        per_side: dict = {side: [] for side in sides}
        for path in files:
            entry = {"set": key, "file": _short(path, prefixes), "results": {}}
            for side in sides:
                result = next(results)
                result["message"] = _short(result["message"], prefixes) or None
                entry["results"][side] = result
                per_side[side].append(result)
            templates.append(entry)
        sets.append({"key": key, "label": label, "total": len(files),
                     "sides": {side: summarise(per_side[side]) for side in sides}})
    return sets, templates


def main(argv=None) -> int:
    import argparse
    import importlib.metadata
    import platform
    import tempfile

    parser = argparse.ArgumentParser(
        description="How much of the real-world TOSCA corpus we accept, beside tosca-parser.")
    parser.add_argument("--corpus", default=DEFAULT_CORPUS,
                        help="the shared corpus folder (default: <repo>/../shared/corpus)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="validations run at once (default: the number of CPUs)")
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="seconds before one validation counts as a hang (default 60)")
    parser.add_argument("--no-reference", action="store_true", help="do not run tosca-parser")
    parser.add_argument("--verbose", action="store_true",
                        help="say why each template that is not accepted was refused")
    parser.add_argument("--json", action="store_true", help="machine-readable results")
    parser.add_argument("--strict", action="store_true",
                        help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.timeout <= 0:
        parser.error("--jobs and --timeout must be positive")
    corpus = os.path.abspath(args.corpus)
    if not os.path.isdir(corpus):
        print(f"benchmark FAILED: no corpus at {corpus} (give --corpus DIR; the corpus is "
              "the shared folder described in its README.md)", file=sys.stderr)
        return 2

    sides = list(OURS) + ([] if args.no_reference else [REFERENCE])
    with tempfile.TemporaryDirectory(prefix="tosca-compat-") as workdir:
        try:
            sets, templates = run_benchmark(corpus, sides, args.jobs, args.timeout, workdir)
        except BenchmarkError as exc:
            print(f"benchmark FAILED: {exc}", file=sys.stderr)
            return 2
    checks = evaluate_targets(sets, sides)
    try:
        tp_version = importlib.metadata.version("tosca-parser")
    except importlib.metadata.PackageNotFoundError:
        tp_version = "?"
    meta = {"date": time.strftime("%Y-%m-%d"), "corpus": corpus,
            "python": f"Python {platform.python_version()}", "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "jobs": args.jobs, "timeout_s": args.timeout,
            "tosca_parser": tp_version, "templates": len(templates), "sides": sides}
    if args.json:
        json.dump({"meta": meta, "sets": sets, "targets": checks, "templates": templates},
                  sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print_report(sets, templates, sides, checks, meta, args.verbose)
    missed = any(c["status"] == "MISS" for c in checks)
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
