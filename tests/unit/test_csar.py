"""CSAR archives: TOSCA.meta entry, single top-level YAML, cleanup, hostile archives."""
import glob
import tempfile
import zipfile

from orchestrator.tosca import load_template
from tests.conftest import codes

MAIN = """tosca_definitions_version: tosca_simple_yaml_1_2
imports: [types/t.yaml]
topology_template:
  node_templates:
    app:
      type: my.App
"""
TYPES = """tosca_definitions_version: tosca_simple_yaml_1_2
node_types:
  my.App:
    derived_from: tosca.nodes.SoftwareComponent
"""


def _leftovers():
    return set(glob.glob(tempfile.gettempdir() + "/orchestrator-csar-*"))


def test_csar_with_meta(tmp_path):
    before = _leftovers()
    path = tmp_path / "app.csar"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("TOSCA-Metadata/TOSCA.meta",
                         "TOSCA-Meta-File-Version: 1.0\nEntry-Definitions: defs/main.yaml\n")
        archive.writestr("defs/main.yaml", MAIN)
        archive.writestr("defs/types/t.yaml", TYPES)
    result = load_template(str(path))
    assert result.ok, [d.render() for d in result.diagnostics]
    assert result.template.nodes["app"].type == "my.App"
    assert result.template.file == f"{path}!/defs/main.yaml"
    assert _leftovers() == before


def test_csar_single_yaml_and_error_location(tmp_path):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.yaml", MAIN.replace("my.App", "my.Ap"))
        archive.writestr("types/t.yaml", TYPES)
    result = load_template(str(path))
    diag = next(d for d in result.diagnostics if d.code == "unknown-type")
    assert diag.file == f"{path}!/main.yaml" and diag.line == 6
    assert "my.App" in diag.hint


def test_csar_without_entry(tmp_path):
    path = tmp_path / "empty.csar"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("README", "nothing")
    assert "invalid-csar" in codes(load_template(str(path)))


def test_csar_member_escaping_is_refused(tmp_path):
    path = tmp_path / "evil.csar"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.yaml", MAIN)
        archive.writestr("../../escape.yaml", TYPES)
    assert "invalid-csar" in codes(load_template(str(path)))
    assert not (tmp_path.parent / "escape.yaml").exists()


def test_corrupt_csar(tmp_path):
    path = tmp_path / "broken.csar"
    path.write_bytes(b"PK\x03\x04 not really a zip")
    assert "invalid-csar" in codes(load_template(str(path)))


def test_an_archive_of_too_many_members_is_refused_before_extraction(tmp_path):
    """100,000 empty members took 15 s to extract and were accepted."""
    from orchestrator.tosca import csar

    before = _leftovers()
    path = tmp_path / "many.csar"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("main.yaml", MAIN.replace("imports: [types/t.yaml]\n", ""))
        for index in range(csar.MAX_MEMBERS + 1):
            archive.writestr(f"empty/{index}", "")
    result = load_template(str(path))
    assert not result.ok
    assert codes(result) == ["invalid-csar"]
    assert f"more than {csar.MAX_MEMBERS}" in result.diagnostics.errors[0].message
    assert _leftovers() == before
