"""Imports cannot read the machine's files: they stay in the template's folder (or CSAR),
the bundled types and the import maps' folders; absolute paths, file:// URLs, ../ and
symbolic links out are refused with the one message an absent file gets, and nothing of
a file that is not TOSCA is quoted. --allow-local-imports (a local user) lifts it."""
import os
import zipfile

import pytest

from orchestrator import service
from orchestrator.tosca import LoadOptions, load_template
from tests.conftest import codes

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_3\n"
SECRET_LINES = ("root:$6$canary-9d81c2:19000:0:99999:7:::",
                "daemon:*:19000:0:99999:7:::")
UNRESOLVED = "cannot be resolved: no such file within the template's folder"


def _template(ref: str) -> str:
    return HEADER + f"imports:\n  - {ref!r}\ntopology_template:\n  node_templates: {{}}\n"


@pytest.fixture
def secret(tmp_path):
    """A file like /etc/shadow, outside the template's folder."""
    path = tmp_path / "outside" / "shadow"
    path.parent.mkdir()
    path.write_text("\n".join(SECRET_LINES) + "\n")
    return path


def _rendered(result) -> str:
    return "\n".join(d.render() for d in result.diagnostics)


def _assert_refused_quietly(result, ref: str):
    text = _rendered(result)
    assert not result.ok
    assert codes(result) == ["import-not-found"], text
    assert UNRESOLVED in text and ref in text
    for line in SECRET_LINES:
        assert line.split(":")[0] + ":" not in text and "canary" not in text, text


def test_an_absolute_path_is_refused(write, secret):
    path = write("app/main.yaml", _template(str(secret)))
    _assert_refused_quietly(load_template(path), str(secret))


def test_a_dot_dot_escape_is_refused(write, secret):
    path = write("app/main.yaml", _template("../outside/shadow"))
    _assert_refused_quietly(load_template(path), "../outside/shadow")


def test_a_deep_dot_dot_escape_through_a_subfolder_is_refused(write, secret):
    write("app/lib/types.yaml", HEADER + "imports: ['../../outside/shadow']\n")
    path = write("app/main.yaml", _template("lib/types.yaml"))
    _assert_refused_quietly(load_template(path), "../../outside/shadow")


def test_a_file_url_is_refused(write, secret):
    path = write("app/main.yaml", _template(f"file://{secret}"))
    _assert_refused_quietly(load_template(path), f"file://{secret}")


def test_a_symlink_out_of_the_folder_is_refused(write, secret, tmp_path):
    path = write("app/main.yaml", _template("types.yaml"))
    os.symlink(secret, tmp_path / "app" / "types.yaml")
    _assert_refused_quietly(load_template(path), "types.yaml")


def test_a_repository_url_cannot_reach_out_either(write, secret):
    path = write("app/main.yaml", HEADER + f"""
repositories:
  sys: {{url: "file://{secret.parent}"}}
imports:
  - {{file: shadow, repository: sys}}
topology_template:
  node_templates: {{}}
""")
    _assert_refused_quietly(load_template(path), "shadow")


def test_absent_and_refused_imports_read_the_same(write, secret):
    absent = load_template(write("app/a.yaml", _template("../outside/nothing-here")))
    present = load_template(write("app/b.yaml", _template("../outside/shadow")))
    strip = [d.message.replace("nothing-here", "X").replace("shadow", "X")
             for d in absent.diagnostics], \
        [d.message.replace("shadow", "X") for d in present.diagnostics]
    assert strip[0] == strip[1]
    assert codes(absent) == codes(present) == ["import-not-found"]


def test_a_csar_import_cannot_leave_the_archive(tmp_path, secret):
    path = tmp_path / "app.csar"
    escape = os.path.relpath(secret, "/")
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("TOSCA-Metadata/TOSCA.meta",
                         "TOSCA-Meta-File-Version: 1.0\nEntry-Definitions: defs/main.yaml\n")
        archive.writestr("defs/main.yaml", _template("../" * 30 + escape))
        archive.writestr("defs/abs.yaml", _template(str(secret)))
    result = load_template(str(path))
    _assert_refused_quietly(result, escape)


def test_a_csar_import_may_climb_within_the_archive(tmp_path):
    path = tmp_path / "app.csar"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("TOSCA-Metadata/TOSCA.meta",
                         "TOSCA-Meta-File-Version: 1.0\nEntry-Definitions: defs/main.yaml\n")
        archive.writestr("defs/main.yaml", _template("../types/t.yaml"))
        archive.writestr("types/t.yaml", HEADER + "node_types: {}\n")
    result = load_template(str(path))
    assert result.ok, _rendered(result)


def test_imports_within_the_folder_and_the_bundled_types_still_work(write):
    write("app/lib/types.yaml", HEADER + "imports: [../common.yaml, orchestrator/all.yaml]\n")
    write("app/common.yaml", HEADER + "node_types: {}\n")
    path = write("app/main.yaml", _template("lib/types.yaml"))
    result = load_template(path)
    assert result.ok, _rendered(result)


def test_an_import_map_ref_cannot_climb_out_of_the_maps_folder(write, secret, tmp_path):
    write("maps/types/t.yaml", HEADER + "node_types: {}\n")
    imap = write("maps/map.yaml", "- {url: 'https://example.org/{ref}', path: 'types/{ref}'}\n")
    options = LoadOptions(import_maps=(imap,))
    good = load_template(write("app/ok.yaml", _template("https://example.org/t.yaml")),
                         options=options)
    assert good.ok, _rendered(good)
    bad = load_template(write("app/bad.yaml", _template(
        "https://example.org/../../outside/shadow")), options=options)
    assert codes(bad) == ["import-not-found"] and "canary" not in _rendered(bad)


def test_a_file_that_is_not_tosca_is_not_quoted_even_when_allowed(write, secret):
    path = write("app/main.yaml", _template(str(secret)))
    result = load_template(path, options=LoadOptions(allow_local_imports=True))
    text = _rendered(result)
    assert codes(result) == ["not-a-tosca-file"], text
    assert "is not a TOSCA definitions file" in text
    assert "root:" not in text and "daemon" not in text and "canary" not in text


def test_a_mapping_without_tosca_sections_is_not_quoted(write):
    write("app/config.yaml", "password: hunter2-canary\nuser: admin\n")
    path = write("app/main.yaml", _template("config.yaml"))
    result = load_template(path)
    assert codes(result) == ["not-a-tosca-file"]
    assert "password" not in _rendered(result) and "hunter2" not in _rendered(result)


def test_allow_local_imports_reads_absolute_paths_and_escapes(write, tmp_path):
    write("shared/types.yaml", HEADER + "node_types: {}\n")
    target = tmp_path / "shared" / "types.yaml"
    for ref in (str(target), f"file://{target}", "../shared/types.yaml"):
        path = write("app/main.yaml", _template(ref))
        assert not load_template(path).ok
        allowed = load_template(path, options=LoadOptions(allow_local_imports=True))
        assert allowed.ok, _rendered(allowed)


def test_allow_local_imports_says_more_about_a_missing_file(write, tmp_path):
    path = write("app/main.yaml", _template(str(tmp_path / "nothing.yaml")))
    result = load_template(path, options=LoadOptions(allow_local_imports=True))
    assert codes(result) == ["import-not-found"]
    assert UNRESOLVED not in _rendered(result)


def test_the_service_policy_never_allows_local_files(write, secret):
    options = service.service_import_options(("example.org",))
    assert options.allow_local_imports is False
    path = write("app/main.yaml", _template(str(secret)))
    report = service.validate_inputs(path, {}, ("example.org",))
    assert [d.code for d in report.diagnostics] == ["import-not-found"]
    assert "canary" not in "\n".join(d.render() for d in report.diagnostics)
