"""Hostile or malformed YAML: every case ends in a diagnostic, never an exception, a
blown memory or a crashed interpreter."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from orchestrator import service
from orchestrator.diagnostics import CODES
from orchestrator.tosca import load_template, yamlsource

REPO = Path(__file__).resolve().parents[2]
HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"


def _env(tmp_path: Path, **extra: str) -> dict:
    env = dict(os.environ)
    env.pop("ORCHESTRATOR_IMPORT_MAP", None)
    env.pop("ORCHESTRATOR_MAX_TEMPLATE_BYTES", None)
    env["XDG_CONFIG_HOME"] = str(tmp_path / "config")
    env["PYTHONWARNINGS"] = "error"
    env.update(extra)
    return env


def _python(tmp_path: Path, code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], check=False,
                          capture_output=True, text=True, cwd=REPO,
                          env=_env(tmp_path, **env), timeout=300)


def _cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "orchestrator", *args], check=False,
                          capture_output=True, text=True, cwd=REPO,
                          env=_env(tmp_path, **env), timeout=300)


def _codes(result) -> list[str]:
    return [d.code for d in result.diagnostics.errors]


def _render(result) -> str:
    return "\n".join(d.render() for d in result.diagnostics) or "(no diagnostics)"


def _assert_diagnosed(result, path: Path, codes: set[str] | None = None) -> None:
    """At least one error, every code registered, and each error names the file."""
    assert not result.ok
    errors = result.diagnostics.errors
    assert errors, f"no error diagnostic for {path.name}: {_render(result)}"
    for diag in result.diagnostics:
        assert diag.code in CODES
    for diag in errors:
        assert diag.file, diag.render()
    assert any(d.file.endswith(path.name) for d in errors), _render(result)
    if codes is not None:
        assert set(_codes(result)) & codes, _render(result)


@pytest.fixture(autouse=True)
def _no_user_config(tmp_path, monkeypatch):
    monkeypatch.delenv("ORCHESTRATOR_IMPORT_MAP", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))


# -- billion laughs -----------------------------------------------------------------------------
def _billion_laughs(levels: int = 9, width: int = 9) -> str:
    lines = [HEADER, "metadata:\n", '  a: &a ["lol"' + ', "lol"' * (width - 1) + "]\n"]
    previous = "a"
    for index in range(1, levels):
        name = f"l{index}"
        lines.append(f"  {name}: &{name} [" + ", ".join([f"*{previous}"] * width) + "]\n")
        previous = name
    return "".join(lines)


def test_billion_laughs_is_refused(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(_billion_laughs())
    result = load_template(str(path))
    _assert_diagnosed(result, path, {"yaml-bomb"})
    bomb = next(d for d in result.diagnostics.errors if d.code == "yaml-bomb")
    assert bomb.line > 1 and bomb.column > 0


def test_billion_laughs_through_validate_and_cli(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(_billion_laughs())
    report = service.validate(str(path))
    assert not report.valid
    assert "yaml-bomb" in [d.code for d in report.diagnostics.errors]
    proc = _cli(tmp_path, "validate", str(path), "--format", "json")
    assert proc.returncode == 1, proc.stderr
    assert "yaml-bomb" in [d["code"] for d in json.loads(proc.stdout)["diagnostics"]]


def test_billion_laughs_does_not_blow_memory(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(_billion_laughs())
    proc = _python(tmp_path, f"""
        import resource
        from orchestrator.tosca import load_template
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        result = load_template({str(path)!r})
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print([d.code for d in result.diagnostics.errors])
        print((after - before) // 1024)
    """)
    assert proc.returncode == 0, proc.stderr
    codes, grown_mib = proc.stdout.strip().splitlines()
    assert "yaml-bomb" in codes
    assert int(grown_mib) < 200, f"loading the bomb grew the process by {grown_mib} MiB"


def test_aliases_in_a_reasonable_template_are_fine(tmp_path):
    """Anchors and aliases themselves are legal: a few levels load normally."""
    path = tmp_path / "aliases.yaml"
    path.write_text(_billion_laughs(levels=3, width=3) + textwrap.dedent("""\
        topology_template:
          node_templates:
            server:
              type: tosca.nodes.Compute
        """))
    result = load_template(str(path))
    assert result.ok, _render(result)


# -- file size ----------------------------------------------------------------------------------
def test_sparse_file_over_the_default_limit(tmp_path):
    path = tmp_path / "huge.yaml"
    with open(path, "wb") as handle:
        handle.write(HEADER.encode())
        handle.truncate(100 * 1024 * 1024)  # sparse: 100 MiB without writing them
    result = load_template(str(path))
    _assert_diagnosed(result, path, {"file-too-large"})
    report = service.validate(str(path))
    assert "file-too-large" in [d.code for d in report.diagnostics.errors]


def test_size_limit_from_the_environment(tmp_path):
    big = tmp_path / "big.yaml"
    filler = "# " + "x" * 1022 + "\n"
    big.write_text(HEADER + filler * 2048)  # ~2 MiB of comments
    small = tmp_path / "small.yaml"
    small.write_text(HEADER + filler * 256 + "topology_template:\n  node_templates:\n"
                     "    s:\n      type: tosca.nodes.Compute\n")  # ~256 KiB
    proc = _cli(tmp_path, "validate", str(big), "--format", "json",
                ORCHESTRATOR_MAX_TEMPLATE_BYTES=str(1024 * 1024))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    codes = [d["code"] for d in json.loads(proc.stdout)["diagnostics"]]
    assert "file-too-large" in codes
    proc = _cli(tmp_path, "validate", str(small), "--format", "json",
                ORCHESTRATOR_MAX_TEMPLATE_BYTES=str(1024 * 1024))
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_imported_file_over_the_limit(tmp_path, monkeypatch):
    monkeypatch.setattr(yamlsource, "MAX_FILE_BYTES", 64 * 1024)
    (tmp_path / "types.yaml").write_text(HEADER + ("# filler\n" * 20000))
    root = tmp_path / "root.yaml"
    root.write_text(HEADER + "imports:\n  - types.yaml\n")
    result = load_template(str(root))
    assert "file-too-large" in _codes(result), _render(result)
    diag = next(d for d in result.diagnostics.errors if d.code == "file-too-large")
    assert diag.file.endswith("types.yaml")


# -- nesting depth --------------------------------------------------------------------------------
def test_100k_deep_nesting_does_not_crash_the_interpreter(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text("[" * 100_000 + "]" * 100_000 + "\n")
    proc = _cli(tmp_path, "validate", str(path), "--format", "json")
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
    diagnostics = json.loads(proc.stdout)["diagnostics"]
    assert "yaml-too-deep" in [d["code"] for d in diagnostics], diagnostics
    proc = _cli(tmp_path, "validate", str(path))
    assert proc.returncode == 1
    assert "yaml-too-deep" in proc.stdout + proc.stderr


def test_100k_deep_nesting_in_process(tmp_path):
    path = tmp_path / "deep.yaml"
    path.write_text(HEADER + "metadata:\n  x: " + "{a: " * 100_000 + "1" + "}" * 100_000 + "\n")
    result = load_template(str(path))
    _assert_diagnosed(result, path, {"yaml-too-deep"})


def _nested(form: str, depth: int) -> str:
    if form == "flow-sequence":
        return HEADER + "metadata:\n  x: " + "[" * depth + "]" * depth + "\n"
    if form == "flow-mapping":
        return HEADER + "metadata:\n  x: " + "{a: " * depth + "1" + "}" * depth + "\n"
    if form == "block-mapping":
        return HEADER + "metadata:\n" + "".join(" " * (i + 1) + "k:\n" for i in range(depth))
    raise AssertionError(form)


@pytest.mark.parametrize("form", ["flow-sequence", "flow-mapping", "block-mapping"])
@pytest.mark.parametrize("extra", [50, 1500])
def test_nesting_beyond_the_limit_is_refused(tmp_path, form, extra):
    """MAX_DEPTH is the documented limit, whatever the YAML style; the diagnostic points
    into the file."""
    path = tmp_path / "deep.yaml"
    path.write_text(_nested(form, yamlsource.MAX_DEPTH + extra))
    result = load_template(str(path))
    _assert_diagnosed(result, path, {"yaml-too-deep"})
    deep = next(d for d in result.diagnostics.errors if d.code == "yaml-too-deep")
    assert deep.line >= 2 and deep.column > 0, deep.render()


@pytest.mark.parametrize("form", ["flow-sequence", "flow-mapping", "block-mapping"])
def test_nesting_within_the_limit_is_accepted(tmp_path, form):
    path = tmp_path / "nested.yaml"
    path.write_text(_nested(form, 60) + "topology_template:\n  node_templates:\n"
                    "    s:\n      type: tosca.nodes.Compute\n")
    result = load_template(str(path))
    assert result.ok, _render(result)


# -- malformed files ------------------------------------------------------------------------------
MALFORMED = {
    "non-utf8": (HEADER.encode() + b"description: caf\xe9 \xff\xfe\n", {"yaml-syntax"}),
    "latin1-only": ("description: café\n".encode("latin-1"), {"yaml-syntax"}),
    "utf16": ((HEADER + "description: x\n").encode("utf-16"), {"yaml-syntax"}),
    "empty": (b"", None),
    "whitespace-only": (b"   \n\n\t\n", None),
    "comment-only": (b"# nothing here\n", None),
    "null-document": (b"~\n", None),
    "top-level-list": (b"- tosca_definitions_version: tosca_simple_yaml_1_3\n- b\n",
                       {"not-a-mapping"}),
    "top-level-scalar": (b"just a string\n", {"not-a-mapping"}),
    "multiple-documents": (HEADER.encode() + b"---\n" + HEADER.encode(), {"yaml-syntax"}),
    "tab-indented": (HEADER.encode() + b"topology_template:\n\tnode_templates: {}\n",
                     {"yaml-syntax"}),
    "nul-byte": (HEADER.encode() + b"description: a\x00b\n", {"yaml-syntax"}),
    "control-char": (HEADER.encode() + b"description: a\x07b\n", {"yaml-syntax"}),
    "unclosed-flow": (HEADER.encode() + b"metadata: {a: [1, 2\n", {"yaml-syntax"}),
    "unclosed-quote": (HEADER.encode() + b'description: "abc\n', {"yaml-syntax"}),
    "bad-alias": (HEADER.encode() + b"metadata: *nowhere\n", {"yaml-syntax"}),
    "python-tag": (HEADER.encode() + b"metadata: !!python/object/apply:os.system [ls]\n",
                   {"yaml-syntax"}),
    "unknown-tag": (HEADER.encode() + b"metadata: !custom {a: 1}\n", {"yaml-syntax"}),
    "complex-key": (HEADER.encode() + b"metadata:\n  ? [a, b]\n  : 1\n", {"wrong-type"}),
    "directive-only": (b"%YAML 1.1\n---\n", None),
}


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_file_gives_a_diagnostic(tmp_path, name):
    data, codes = MALFORMED[name]
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(data)
    result = load_template(str(path))
    _assert_diagnosed(result, path, codes)
    report = service.validate(str(path))
    assert not report.valid
    assert report.diagnostics.errors, "service.validate reports no error"


@pytest.mark.parametrize("name", ["empty", "non-utf8", "top-level-list", "tab-indented"])
def test_malformed_file_through_the_cli(tmp_path, name):
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(MALFORMED[name][0])
    proc = _cli(tmp_path, "validate", str(path), "--format", "json")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    data = json.loads(proc.stdout)
    assert data["valid"] is False
    assert data["errors"] >= 1, data


def test_syntax_error_positions(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_bytes(MALFORMED["tab-indented"][0])
    diag = load_template(str(path)).diagnostics.errors[0]
    assert (diag.code, diag.line, diag.column) == ("yaml-syntax", 3, 1)
    path = tmp_path / "docs.yaml"
    path.write_bytes(MALFORMED["multiple-documents"][0])
    diag = load_template(str(path)).diagnostics.errors[0]
    assert (diag.code, diag.line) == ("yaml-syntax", 2)


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_line_numbers_with_any_newline_and_a_bom(tmp_path, newline):
    lines = [HEADER.strip().encode(), b"# caf\xc3\xa9 \xf0\x9f\x98\x80", b"topology_template:",
             b"  node_templates:", b"    srv:", b"      type: tosca.nodes.Compte"]
    path = tmp_path / "nl.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + newline.join(lines) + newline)
    result = load_template(str(path))
    diag = next(d for d in result.diagnostics.errors if d.code == "unknown-type")
    assert (diag.line, diag.column) == (6, 7)


def _strict_json(text: str):
    def refuse(constant):
        raise AssertionError(f"{constant} is not JSON (RFC 8259)")
    return json.loads(text, parse_constant=refuse)


def test_unusual_yaml_values_never_crash_a_command(tmp_path):
    """Sets, binary and timestamps from YAML tags never crash validate or inspect."""
    path = tmp_path / "tags.yaml"
    path.write_text(HEADER + textwrap.dedent("""\
        metadata:
          a_set: !!set {a, b}
          binary: !!binary aGVsbG8=
          date: 2024-01-01
          when: 2024-01-01T10:00:00Z
        topology_template:
          node_templates:
            server:
              type: tosca.nodes.Compute
          outputs:
            a_set:
              value: !!set {x}
            binary:
              value: !!binary aGVsbG8=
        """))
    for command in ("validate", "inspect"):
        for fmt in ("json", "text"):
            proc = _cli(tmp_path, command, str(path), "--format", fmt)
            assert "internal error" not in proc.stderr, (command, fmt, proc.stderr)
            assert "Traceback" not in proc.stderr
            assert proc.returncode in (0, 1), proc.stderr
            if fmt == "json":
                json.loads(proc.stdout)
    report = service.validate(str(path))
    if report.valid:
        json.dumps(report.topology.to_dict())


def test_json_output_is_strict_json(tmp_path):
    """.nan and .inf are legal YAML floats; the JSON views must still be standard JSON."""
    path = tmp_path / "floats.yaml"
    path.write_text(HEADER + textwrap.dedent("""\
        metadata:
          inf: .inf
          nan: .nan
        topology_template:
          node_templates:
            server:
              type: tosca.nodes.Compute
          outputs:
            ratio:
              value: .nan
        """))
    proc = _cli(tmp_path, "inspect", str(path), "--format", "json")
    assert proc.returncode in (0, 1), proc.stderr
    _strict_json(proc.stdout)


def test_missing_and_directory_paths(tmp_path):
    result = load_template(str(tmp_path / "nope.yaml"))
    assert _codes(result) == ["file-not-found"]
    result = load_template(str(tmp_path))
    assert _codes(result) == ["file-not-found"]


# -- YAML given on the command line (--set) and in inputs files (-i) -----------------------------
INPUTS_TEMPLATE = HEADER + textwrap.dedent("""\
    topology_template:
      inputs:
        items:
          type: list
          required: false
        count:
          type: integer
          required: false
      node_templates:
        server:
          type: tosca.nodes.Compute
    """)


def _bomb_flow(levels: int) -> str:
    """A billion-laughs value in flow style, for --set."""
    names = [f"l{i}" for i in range(levels)]
    parts = ["&l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for previous, name in itertools.pairwise(names):
        parts.append(f"&{name} [" + ", ".join([f"*{previous}"] * 9) + "]")
    return "[" + ", ".join(parts) + "]"


@pytest.fixture
def inputs_template(tmp_path) -> Path:
    path = tmp_path / "inputs.yaml"
    path.write_text(INPUTS_TEMPLATE)
    return path


def test_set_with_a_huge_integer_gives_a_diagnostic(inputs_template):
    """Python refuses int() of more than 4300 digits: that must not escape as ValueError."""
    result = load_template(str(inputs_template), sets=["count=" + "9" * 5000])
    assert not result.ok
    assert result.diagnostics.errors
    assert any(d.file.startswith("--set") for d in result.diagnostics.errors), _render(result)


def test_file_with_a_huge_integer_gives_a_diagnostic(tmp_path):
    path = tmp_path / "bigint.yaml"
    path.write_text(HEADER + "metadata:\n  n: " + "9" * 5000 + "\n")
    _assert_diagnosed(load_template(str(path)), path)


@pytest.mark.parametrize("value", ["[" * 5000 + "]" * 5000, "&a [*a]"],
                         ids=["deep", "self-referencing"])
def test_set_with_hostile_structure_blames_the_set(inputs_template, value):
    result = load_template(str(inputs_template), sets=["items=" + value])
    assert not result.ok
    errors = result.diagnostics.errors
    assert errors
    assert all(d.file.startswith("--set") for d in errors), _render(result)


def test_set_with_a_yaml_bomb_is_refused(inputs_template):
    """9**7 values once expanded: over the loader's alias budget, like in a file."""
    report = service.validate(str(inputs_template), sets=["items=" + _bomb_flow(7)])
    assert not report.valid
    errors = report.diagnostics.errors
    assert errors
    assert any(d.file.startswith("--set") for d in errors), _render(report)


def test_inputs_file_with_a_yaml_bomb_is_refused(tmp_path, inputs_template):
    values = tmp_path / "values.yaml"
    values.write_text("items: " + _bomb_flow(9) + "\n")
    result = load_template(str(inputs_template), input_files=[str(values)])
    assert "yaml-bomb" in _codes(result), _render(result)
    assert all(d.file.endswith("values.yaml") for d in result.diagnostics.errors)


# -- special files --------------------------------------------------------------------------------
def _limited_cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The CLI under a 3 GiB address-space cap and a 15 s timeout."""
    import resource

    def cap():
        resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))

    try:
        return subprocess.run([sys.executable, "-m", "orchestrator", *args], check=False,
                              capture_output=True, text=True, cwd=REPO, env=_env(tmp_path),
                              timeout=15, preexec_fn=cap)
    except subprocess.TimeoutExpired:
        pytest.fail(f"orchestrator {' '.join(args)} did not finish within 15 s")


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="needs /dev/zero")
@pytest.mark.parametrize("how", ["template", "inputs-file"])
def test_endless_special_file_is_refused(tmp_path, how):
    """/dev/zero has size 0 for stat() but never ends: the size limit must still hold."""
    if how == "template":
        args = ("validate", "/dev/zero", "--format", "json")
    else:
        template = tmp_path / "t.yaml"
        template.write_text(HEADER + "topology_template:\n  node_templates:\n"
                            "    s:\n      type: tosca.nodes.Compute\n")
        args = ("validate", str(template), "-i", "/dev/zero", "--format", "json")
    proc = _limited_cli(tmp_path, *args)
    assert "internal error" not in proc.stderr, proc.stderr[-1000:]
    assert proc.returncode == 1, proc.stderr[-1000:]
    assert json.loads(proc.stdout)["errors"] >= 1


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_named_pipe_is_refused(tmp_path):
    """A FIFO with no writer would block open() forever."""
    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)
    proc = _limited_cli(tmp_path, "validate", str(fifo), "--format", "json")
    assert "internal error" not in proc.stderr, proc.stderr[-1000:]
    assert proc.returncode == 1, proc.stderr[-1000:]
    assert json.loads(proc.stdout)["errors"] >= 1
