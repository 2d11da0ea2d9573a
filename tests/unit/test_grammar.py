"""TOSCA 1.x grammar checks of tosca/grammar.py (header, metadata, repositories, interface,
data and capability type definitions), each at the place it concerns."""
from __future__ import annotations

import pytest

from orchestrator.tosca import load_template

HEADER = "tosca_definitions_version: tosca_simple_yaml_1_0\n"


def _load(write, body: str, header: str = HEADER):
    return load_template(write("t.yaml", header + body))


def _errors(result):
    return [(d.code, d.line) for d in result.diagnostics.errors]


def test_the_namespace_uri_form_of_the_version_is_read(write):
    result = _load(write, "", "tosca_definitions_version: "
                   "http://docs.oasis-open.org/tosca/ns/simple/yaml/1.0\n")
    assert result.ok, [d.render() for d in result.diagnostics]
    assert result.template.version == "tosca_simple_yaml_1_0"


def test_a_version_after_another_key_is_a_warning(write):
    result = _load(write, "description: x\n" + HEADER, header="")
    assert result.ok
    [warning] = [d for d in result.diagnostics if d.code == "version-not-first"]
    assert (warning.line, warning.column) == (2, 1)


def test_comments_before_the_version_are_fine(write):
    result = _load(write, "", "# a comment\n" + HEADER)
    assert result.ok and not list(result.diagnostics)


@pytest.mark.parametrize("body,expected", [
    ("description:\n  complex: text\n", [("wrong-type", 2)]),
    ("metadata:\n  template_name:\n    complex: value\n", [("wrong-type", 3)]),
    ("metadata:\n  template_author: [a, b]\n", [("wrong-type", 3)]),
    ("metadata:\n  template_version: my version\n", [("type-mismatch", 3)]),
    ("metadata: [a]\n", [("wrong-type", 2)]),
    ("repositories:\n  r:\n    description: no url\n", [("missing-field", 3)]),
    ("repositories:\n  r:\n    url: https://x.org/\n    user: u\n", [("unknown-section", 5)]),
    ("interface_types:\n  I:\n    derived_from: tosca.interfaces.Root\n    op:\n"
     "      implementation: x.sh\n", [("invalid-type-definition", 6)]),
    ("interface_types:\n  I:\n    derived_from: tosca.interfaces.Root\n    inputs:\n"
     "      description: not a definition\n", [("invalid-type-definition", 6)]),
    ("data_types:\n  D:\n    properties:\n      p:\n        type: nowhere.Type\n",
     [("unknown-type", 6)]),
    ("data_types:\n  D:\n    properties:\n      p:\n        type: list\n"
     "        entry_schema:\n          type: nowhere.Type\n", [("unknown-type", 8)]),
    ("data_types:\n  D:\n    derived_from: string\n    properties:\n      p:\n"
     "        type: string\n", [("invalid-type-definition", 5)]),
    ("data_types:\n  D:\n    derived_from: tosca.datatypes.Root\n    fields: {}\n",
     [("unknown-section", 5)]),
    ("capability_types:\n  C:\n    derived_from: tosca.capabilities.Root\n"
     "    valid_source_types: [nowhere.Node]\n", [("unknown-type", 5)]),
])
def test_grammar_errors_point_at_their_line(write, body, expected):
    assert _errors(_load(write, body)) == expected


def test_valid_definitions_pass(write):
    result = _load(write, """\
        metadata:
          template_version: 1.0
          icon: {url: x.png}
        repositories:
          short: https://example.org/
          long: {url: https://example.org/, description: d, credential: {token: t}}
        interface_types:
          I:
            derived_from: tosca.interfaces.Root
            inputs:
              mode: {type: string}
            do_something:
              description: declared only
        data_types:
          Url:
            derived_from: string
            constraints: [{min_length: 3}]
          Address:
            properties:
              street: {type: string}
          Person:
            properties:
              home: {type: Address}
              others: {type: list, entry_schema: {type: Address}}
              by_name: {type: map, entry_schema: Url}
        capability_types:
          C:
            derived_from: tosca.capabilities.Root
            valid_source_types: [tosca.nodes.Compute]
        """.replace("\n        ", "\n").lstrip())
    assert result.ok, [d.render() for d in result.diagnostics]
    assert [d.code for d in result.diagnostics] == ["wrong-type"]  # icon: a warning
