"""Offline import resolution: relative, bundled, URL map, unmapped, circular, remote opt-in."""
import http.server
import os
import threading

import pytest

from orchestrator.tosca import LoadOptions, load_template
from tests.conftest import codes

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"

TYPES = HEADER + """
node_types:
  my.nodes.Thing:
    derived_from: tosca.nodes.SoftwareComponent
    properties:
      colour: {type: string, default: blue}
"""


def _template(imports: str) -> str:
    return HEADER + f"""
imports:
{imports}
topology_template:
  node_templates:
    thing:
      type: my.nodes.Thing
      properties: {{colour: red}}
"""


def test_relative_import(write):
    write("lib/types.yaml", TYPES)
    path = write("main.yaml", _template("  - lib/types.yaml"))
    result = load_template(path)
    assert result.ok, [d.render() for d in result.diagnostics]
    assert result.template.nodes["thing"].properties["colour"] == "red"


def test_named_import_form_of_tosca_1_0(write):
    write("types.yaml", TYPES)
    path = write("main.yaml", _template("  - mytypes: types.yaml"))
    assert load_template(path).ok


def test_circular_imports_terminate(write):
    write("a.yaml", TYPES + "imports: [b.yaml]\n")
    write("b.yaml", HEADER + "imports: [a.yaml]\n")
    path = write("main.yaml", _template("  - a.yaml"))
    result = load_template(path)
    assert result.ok, [d.render() for d in result.diagnostics]


def test_missing_import_is_located(write):
    path = write("main.yaml", _template("  - nowhere/types.yaml"))
    result = load_template(path)
    diag = next(d for d in result.diagnostics if d.code == "import-not-found")
    assert diag.line == 4 and diag.file.endswith("main.yaml")
    assert "nowhere/types.yaml" in diag.message


def test_unmapped_remote_import_says_how_to_map_it(write):
    url = "https://example.org/types/custom.yaml"
    path = write("main.yaml", _template(f"  - {url}"))
    result = load_template(path)
    diag = next(d for d in result.diagnostics if d.code == "import-remote-unmapped")
    assert url in diag.message and "--import-map" in diag.hint


def test_user_import_map_maps_remote_url(write):
    write("local/types.yaml", TYPES)
    imap = write("map.yaml", """
        - url: https://example.org/types/{ref}/custom.yaml
          path: local/types.yaml
    """)
    path = write("main.yaml", _template("  - https://example.org/types/v1.2/custom.yaml"))
    assert not load_template(path).ok
    result = load_template(path, options=LoadOptions(import_maps=(imap,)))
    assert result.ok, [d.render() for d in result.diagnostics]


def test_import_map_from_environment(write, monkeypatch):
    write("local/types.yaml", TYPES)
    imap = write("map.yaml",
                 "- {url: 'https://example.org/*/custom.yaml', path: local/types.yaml}\n")
    monkeypatch.setenv("ORCHESTRATOR_IMPORT_MAP", imap)
    path = write("main.yaml", _template("  - https://example.org/main/custom.yaml"))
    assert load_template(path).ok


@pytest.mark.parametrize("url", [
    "https://raw.githubusercontent.com/indigo-dc/tosca-types/master/custom_types.yaml",
    "https://raw.githubusercontent.com/indigo-dc/tosca-types/v4.0.0/custom_types.yaml",
    "https://raw.githubusercontent.com/indigo-dc/tosca-types/feature/x/custom_types.yaml",
    "https://github.com/indigo-dc/tosca-types/raw/v3.0.0/custom_types.yaml",
])
def test_shipped_map_covers_indigo_urls(write, url):
    path = write("main.yaml", HEADER + f"""
imports:
  - indigo_custom_types: {url}
topology_template:
  node_templates:
    vm:
      type: tosca.nodes.indigo.Compute
""")
    result = load_template(path)
    assert "import-remote-unmapped" not in codes(result)
    assert result.ok, [d.render() for d in result.diagnostics]


def test_bundled_types_are_found_without_a_path(write):
    path = write("main.yaml", HEADER + """
imports:
  - orchestrator/all.yaml
topology_template:
  node_templates:
    vm:
      type: orchestrator.nodes.Compute
""")
    result = load_template(path)
    assert result.ok, [d.render() for d in result.diagnostics]


class _Handler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def http_dir(tmp_path):
    served = tmp_path / "served"
    served.mkdir()
    handler = lambda *a, **k: _Handler(*a, directory=str(served), **k)  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_remote_import_only_with_flag_and_never_over_http(write, http_dir):
    """Plain http is refused even with the flag (https and the cache: test_import_fetch)."""
    served, base = http_dir
    (served / "types.yaml").write_text(TYPES)
    path = write("main.yaml", _template(f"  - {base}/types.yaml"))
    refused = load_template(path)
    assert "import-remote-unmapped" in codes(refused)
    over_http = load_template(path, options=LoadOptions(allow_remote_imports=True))
    assert "import-fetch-failed" in codes(over_http)
    assert any("only https://" in d.message for d in over_http.diagnostics)


def test_remote_import_failure_is_a_diagnostic(write, http_dir):
    _served, base = http_dir
    path = write("main.yaml", _template(f"  - {base}/missing.yaml"))
    result = load_template(path, options=LoadOptions(allow_remote_imports=True))
    assert "import-fetch-failed" in codes(result)


def test_no_network_without_flag(write, monkeypatch):
    import socket

    def refuse(*args, **kwargs):
        raise AssertionError("network access attempted")

    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    path = write("main.yaml", _template("  - https://example.org/x.yaml"))
    assert "import-remote-unmapped" in codes(load_template(path))
    assert os.environ.get("ORCHESTRATOR_IMPORT_MAP") is None
