"""TOSCA 1.x grammar checks of the parts of a service template the reader otherwise only
passes through: the header (version first, description, metadata), repositories, and the
type definitions of interface, data and capability types (TOSCA Simple Profile 1.0
sections 3.1.2, 3.5.1, 3.5.5, 3.6.4-3.6.6, 3.9.3; the OASIS conformance suite checks them).

Normative types (tosca-parser's definitions, our supplement) are not checked here: they
are ours to trust. Every problem is a Diagnostic at the file, line and column it concerns.
"""
from __future__ import annotations

from typing import Any

from orchestrator.diagnostics import Diagnostics, Location, did_you_mean
from orchestrator.tosca.imports import SourceDoc
from orchestrator.tosca.types import PRIMITIVE_TYPES, TypeDef, TypeRegistry
from orchestrator.tosca.versions import version_text
from orchestrator.tosca.yamlsource import Mapping, where

VERSION_KEY = "tosca_definitions_version"
#: the namespace URI form of each version (TOSCA 1.0 3.1.2: either form is valid)
VERSION_URIS = {f"http://docs.oasis-open.org/tosca/ns/simple/yaml/1.{minor}":
                f"tosca_simple_yaml_1_{minor}" for minor in range(4)}
REPOSITORY_KEYS = ("description", "url", "credential")
DATA_TYPE_KEYS = ("derived_from", "version", "metadata", "description", "constraints",
                  "properties", "key_schema", "entry_schema")
#: data types the value checker knows without a definition (values.Checker.check_type)
BUILTIN_DATA_TYPES = frozenset(PRIMITIVE_TYPES | {"tosca.datatypes.json", "tosca.datatypes.xml",
                                                  "json", "xml"})
#: keys of an interface type that are not operations (1.0 flat form and 1.3 'operations')
INTERFACE_TYPE_KEYS = frozenset({"derived_from", "version", "metadata", "description",
                                 "inputs", "operations", "notifications", "type"})
#: template metadata that must be strings (TOSCA 1.0 3.9.3.3, 3.9.3.4)
STRING_METADATA = ("template_name", "template_author")


def canonical_version(version: Any) -> Any:
    """``tosca_simple_yaml_1_0`` for its namespace URI; anything else unchanged."""
    return VERSION_URIS.get(version, version) if isinstance(version, str) else version


def check_grammar(docs: list[SourceDoc], registry: TypeRegistry,
                  diagnostics: Diagnostics) -> None:
    root = docs[0].data
    _check_description(root, diagnostics)
    topology = root.get("topology_template")
    if isinstance(topology, dict):
        _check_description(topology, diagnostics)
    _check_metadata(root, diagnostics)
    for doc in docs:
        _check_version_first(doc, diagnostics)
        _check_repositories(doc.data, diagnostics)
    _check_types(registry, diagnostics)


# -- header -----------------------------------------------------------------------------------
def _check_version_first(doc: SourceDoc, diagnostics: Diagnostics) -> None:
    """TOSCA 1.0 3.1.2: tosca_definitions_version MUST be the document's first line (of a
    1.x document: another version is refused as unsupported, and that is all it says)."""
    data = doc.data
    if canonical_version(data.get(VERSION_KEY)) not in VERSION_URIS.values():
        return
    first = next(iter(data))
    if first != VERSION_KEY:  # a warning: yaml.dump sorts keys, so generated files do this
        diagnostics.warning("version-not-first", f"{VERSION_KEY} must be the first key of "
                            f"the document; '{first}' comes before it",
                            where(data, VERSION_KEY),
                            hint=f"move '{VERSION_KEY}' to the top of the file")


def _check_description(section: Mapping, diagnostics: Diagnostics) -> None:
    if "description" in section and not isinstance(section["description"], (str, type(None))):
        diagnostics.error("wrong-type", f"'description' must be a string, not a "
                          f"{_kind(section['description'])}", where(section, "description"),
                          hint="a multi-line description is a folded string: 'description: >'")


def _check_metadata(root: Mapping, diagnostics: Diagnostics) -> None:
    """Metadata is a map of strings (TOSCA 1.0 3.9.3): a scalar YAML reads as a number or a
    boolean is read as its text (``template_version: 1.0``); ``template_name`` and
    ``template_author`` that are a map or a list, and a ``template_version`` that is not a
    version, are errors; a map or a list under any other key is a warning (kept as is)."""
    metadata = root.get("metadata")
    if metadata is not None and not isinstance(metadata, dict):
        diagnostics.error("wrong-type", f"'metadata' must be a mapping of strings, not a "
                          f"{_kind(metadata)}", where(root, "metadata"))
        metadata = None
    for section in (root, metadata or {}):
        for key, value in section.items():
            if section is root and key not in (*STRING_METADATA, "template_version"):
                continue
            loc = where(section, key)
            if isinstance(value, (dict, list)):
                report = diagnostics.error if key in STRING_METADATA else diagnostics.warning
                report("wrong-type", f"metadata '{key}' must be a string, not a "
                       f"{_kind(value)}", loc)
            elif key == "template_version" and value is not None and \
                    version_text(value) is None:
                diagnostics.error("type-mismatch", f"metadata 'template_version' must be a "
                                  f"version (major.minor[.fix[.qualifier[-build]]]), got "
                                  f"{value!r}", loc)


def _check_repositories(data: Mapping, diagnostics: Diagnostics) -> None:
    """TOSCA 1.0 3.5.5: a repository is its URL, or a mapping with a ``url``."""
    repositories = data.get("repositories")
    if repositories is None:
        return
    if not isinstance(repositories, dict):
        diagnostics.error("wrong-type", "'repositories' must be a mapping of repository "
                          "definitions", where(data, "repositories"))
        return
    for name, body in repositories.items():
        loc = where(repositories, name)
        if isinstance(body, str):
            continue
        if not isinstance(body, dict):
            diagnostics.error("wrong-type", f"repository '{name}' must be a URL or a mapping "
                              "with a 'url'", loc)
            continue
        for key in body:
            if key not in REPOSITORY_KEYS:
                diagnostics.error("unknown-section", f"'{key}' is not a field of a repository "
                                  f"definition (repository '{name}')", where(body, key, loc),
                                  hint=did_you_mean(str(key), REPOSITORY_KEYS))
        if not isinstance(body.get("url"), str):
            diagnostics.error("missing-field", f"repository '{name}' has no 'url'", loc)


# -- type definitions -------------------------------------------------------------------------
def _check_types(registry: TypeRegistry, diagnostics: Diagnostics) -> None:
    for section, check in (("interface_types", _check_interface_type),
                           ("data_types", _check_data_type),
                           ("capability_types", _check_capability_type)):
        for typedef in registry.types[section].values():
            if not typedef.normative:
                check(typedef, registry, diagnostics)


def _check_interface_type(typedef: TypeDef, registry: TypeRegistry,
                          diagnostics: Diagnostics) -> None:
    """TOSCA 1.0 3.6.4: ``inputs`` are property definitions; an operation of an interface
    type declares, it does not implement (no ``implementation``)."""
    data = typedef.data
    inputs = data.get("inputs")
    if inputs is not None and not isinstance(inputs, dict):
        diagnostics.error("invalid-type-definition", f"interface type '{typedef.name}': "
                          "'inputs' must be a mapping of property definitions",
                          where(data, "inputs", typedef.loc))
    for name, body in (inputs.items() if isinstance(inputs, dict) else ()):
        if not isinstance(body, dict):
            diagnostics.error("invalid-type-definition", f"interface type '{typedef.name}': "
                              f"input '{name}' must be a property definition (a mapping with "
                              "a type)", where(inputs, name, typedef.loc))
    operations = data.get("operations")
    items = [(name, body, data) for name, body in data.items()
             if name not in INTERFACE_TYPE_KEYS]
    if isinstance(operations, dict):
        items += [(name, body, operations) for name, body in operations.items()]
    for name, body, parent in items:
        if isinstance(body, str) or (isinstance(body, dict) and "implementation" in body):
            at = where(body, "implementation") if isinstance(body, dict) else Location("")
            diagnostics.error("invalid-type-definition", f"interface type '{typedef.name}': "
                              f"operation '{name}' has an implementation; an interface type "
                              "only declares its operations (implement them in a node or "
                              "relationship type or template)",
                              at if at.file else where(parent, name, typedef.loc))


def _check_data_type(typedef: TypeDef, registry: TypeRegistry,
                     diagnostics: Diagnostics) -> None:
    """TOSCA 1.0 3.6.5: the keys of a data type; a type derived from a primitive adds
    constraints, not properties; every property's type (and entry or key schema) exists."""
    data, name = typedef.data, typedef.name
    for key in data:
        if key not in DATA_TYPE_KEYS:
            diagnostics.error("unknown-section", f"'{key}' is not a field of a data type "
                              f"definition (data type '{name}')", where(data, key, typedef.loc),
                              hint=did_you_mean(str(key), DATA_TYPE_KEYS))
    properties = data.get("properties")
    if not isinstance(properties, dict):
        return
    base = _primitive_base(typedef, registry)
    if base is not None and properties:
        diagnostics.error("invalid-type-definition", f"data type '{name}' derives from the "
                          f"primitive type '{base}' and cannot add properties (only "
                          "constraints)", where(data, "properties", typedef.loc))
    for prop, definition in properties.items():
        if not isinstance(definition, dict):
            continue
        loc = where(properties, prop, typedef.loc)
        _check_data_type_ref(definition, "type", registry, diagnostics, loc,
                             f"property '{prop}' of data type '{name}'")
        for schema_key in ("entry_schema", "key_schema"):
            schema = definition.get(schema_key)
            if isinstance(schema, str):
                _check_data_type_ref(definition, schema_key, registry, diagnostics, loc,
                                     f"the {schema_key} of property '{prop}' of data type "
                                     f"'{name}'")
            elif isinstance(schema, dict):
                _check_data_type_ref(schema, "type", registry, diagnostics,
                                     where(definition, schema_key, loc),
                                     f"the {schema_key} of property '{prop}' of data type "
                                     f"'{name}'")


def _check_data_type_ref(body: Mapping, key: str, registry: TypeRegistry,
                         diagnostics: Diagnostics, loc: Location, what: str) -> None:
    type_name = body.get(key)
    if not isinstance(type_name, str) or type_name in BUILTIN_DATA_TYPES or \
            registry.resolve("data_types", type_name) is not None:
        return
    diagnostics.error("unknown-type", f"{what} has unknown data type '{type_name}'",
                      where(body, key, loc),
                      hint=registry.suggest("data_types", type_name)
                      or did_you_mean(type_name, sorted(PRIMITIVE_TYPES)))


def _primitive_base(typedef: TypeDef, registry: TypeRegistry) -> str | None:
    """The primitive type a data type derives from, through its ancestors; else None."""
    chain = registry.chain("data_types", typedef.name)
    last = registry.types["data_types"][chain[-1]] if chain else typedef
    parent = last.parent
    return parent if parent in PRIMITIVE_TYPES else None


def _check_capability_type(typedef: TypeDef, registry: TypeRegistry,
                           diagnostics: Diagnostics) -> None:
    """TOSCA 1.0 3.6.6: ``valid_source_types`` names node types that exist."""
    sources = typedef.data.get("valid_source_types")
    if sources is None:
        return
    loc = where(typedef.data, "valid_source_types", typedef.loc)
    if not isinstance(sources, list):
        diagnostics.error("wrong-type", f"capability type '{typedef.name}': "
                          "'valid_source_types' must be a list of node types", loc)
        return
    for index, source in enumerate(sources):
        if registry.resolve("node_types", source) is None:
            diagnostics.error("unknown-type", f"capability type '{typedef.name}': valid source "
                              f"type '{source}' is not a node type",
                              where(sources, index, loc),
                              hint=registry.suggest("node_types", source))


def _kind(value) -> str:
    if isinstance(value, dict):
        return "mapping"
    if isinstance(value, list):
        return "list"
    return type(value).__name__
