"""Diagnostics: every template or plan problem as a value with a source location.

This module imports nothing else of the package. Each diagnostic has a stable
kebab-case ``code`` (listed in ``CODES``), a severity, the file, line and column
(1-based) it points at, the node it concerns and a human message, optionally with
a hint such as "did you mean 'num_gpus'?".
"""
from __future__ import annotations

import difflib
import json
from dataclasses import asdict, dataclass, field
from enum import Enum
from typing import Iterable, Iterator, NamedTuple


class Severity(str, Enum):
    ERROR = "error"
    WARNING = "warning"
    INFO = "info"


#: Every diagnostic code the front end emits, with a one-line meaning (docs/diagnostics.md).
CODES: dict[str, str] = {
    # source files
    "file-not-found": "a template, inputs or imported file does not exist",
    "file-too-large": "a file is larger than the configured maximum size",
    "yaml-syntax": "the file is not valid YAML",
    "yaml-bomb": "YAML aliases would expand beyond the allowed size (billion laughs)",
    "yaml-too-deep": "YAML nesting is deeper than allowed",
    "duplicate-key": "a mapping has the same key twice",
    "invalid-csar": "a CSAR archive is malformed or its entry definitions are missing",
    # template structure
    "not-a-mapping": "a document or section that must be a mapping is something else",
    "missing-version": "tosca_definitions_version is missing",
    "unsupported-version": "tosca_definitions_version names a version we do not support",
    "version-not-first": "tosca_definitions_version is not the first key of its document (a "
                         "warning)",
    "unknown-section": "a key that is not part of the TOSCA grammar at this place",
    "missing-field": "a required key (such as a node template's type) is missing",
    "wrong-type": "a section or field has the wrong YAML type",
    # imports
    "import-not-found": "an import cannot be resolved: no such file, unreadable, or outside "
                        "the folders imports may read",
    "not-a-tosca-file": "an imported file is not a TOSCA definitions file",
    "import-remote-unmapped": "a remote import is not mapped to a local file",
    "import-fetch-failed": "a remote import could not be fetched (or was refused)",
    "invalid-import": "an import entry is malformed",
    # types
    "unknown-type": "a type name is not defined",
    "type-cycle": "a type derives from itself",
    "type-redefined": "a type is defined twice with different definitions",
    "invalid-type-definition": "a type definition is malformed",
    # templates
    "unknown-property": "a property not defined by the type",
    "missing-property": "a required property has no value and no default",
    "type-mismatch": "a value does not have the declared type",
    "constraint-violation": "a value breaks a declared constraint",
    "unknown-capability": "a capability not defined by the type",
    "unknown-requirement": "a requirement not defined by the type",
    "missing-requirement": "a requirement the type asks for (occurrences) is not given (a "
                           "warning)",
    "unknown-node": "a reference to a node template that does not exist",
    "requirement-mismatch": "a requirement's target does not offer the required capability",
    "unknown-interface": "an interface not defined by the type",
    "unknown-operation": "an operation not defined by the interface",
    "dependency-cycle": "the nodes' requirements form a cycle",
    "out-of-range": "a number a plan is made from is out of range: a negative count, scaling "
                    "bounds that contradict each other, more instances than the per-node limit "
                    "or a size beyond the sane maxima",
    "implementation-not-found": "an operation's implementation is neither next to the "
                                "template nor in the orchestrator's playbooks/",
    "remote-implementation": "an operation's implementation written in the template is a URL, "
                             "which is neither checked nor fetched (a warning)",
    # inputs and functions
    "missing-input": "a required input has no value and no default",
    "unknown-input": "a value was given for an input the template does not declare",
    "invalid-input-file": "an inputs file or --set argument is malformed",
    "undefined-input": "get_input names an input that is not declared",
    "invalid-function": "an intrinsic function has malformed arguments",
    "unresolved-reference": "an intrinsic function points at something that does not exist",
    "unresolved-path": "a function's path indexes past a list or misses a key with the current "
                       "inputs (a warning; plan and deploy refuse it)",
    "unresolved-output": "an output's function path does not resolve with the current inputs "
                         "(a warning; the output is null)",
    "function-cycle": "intrinsic functions refer to each other in a loop",
    "unknown-function": "a single-key map that looks like a misspelt intrinsic function",
    # outputs, groups, policies
    "missing-value": "an output has no value",
    "unknown-target": "a group or policy target that is not a node or group",
    # deprecated or questionable but accepted
    "deprecated": "a construct that still works but is deprecated",
    # site catalogue (sites.yaml)
    "invalid-site": "a sites.yaml entry breaks the site catalogue's schema or rules",
}


class Location(NamedTuple):
    """A place in a source file; line and column are 1-based, 0 when unknown.

    A named tuple because the YAML loader makes one for every key and item: it is
    immutable, hashable and compares by value, and creating one is cheap.
    """

    file: str
    line: int = 0
    column: int = 0

    def __str__(self) -> str:
        if self.line:
            return f"{self.file}:{self.line}:{self.column}"
        return self.file


@dataclass(frozen=True)
class Diagnostic:
    code: str
    severity: Severity
    message: str
    file: str = ""
    line: int = 0
    column: int = 0
    node: str | None = None
    hint: str | None = None

    def __post_init__(self) -> None:
        if self.code not in CODES:
            raise ValueError(f"unregistered diagnostic code {self.code!r}")

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR

    def render(self) -> str:
        where = str(Location(self.file, self.line, self.column)) if self.file else "<input>"
        text = f"{where}: {self.severity.value} [{self.code}] "
        if self.node:
            text += f"node '{self.node}': "
        text += self.message
        if self.hint:
            text += f" ({self.hint})"
        return text

    def to_dict(self) -> dict:
        data = asdict(self)
        data["severity"] = self.severity.value
        return data


@dataclass
class Diagnostics:
    """An ordered collection of diagnostics; de-duplicates identical entries."""

    items: list[Diagnostic] = field(default_factory=list)
    _seen: set = field(default_factory=set, repr=False, compare=False)
    # errors among items[:_counted]; items appended directly are counted on demand
    _errors: int = field(default=0, init=False, repr=False, compare=False)
    _counted: int = field(default=0, init=False, repr=False, compare=False)
    _counted_in: list | None = field(default=None, init=False, repr=False, compare=False)

    def add(
        self,
        code: str,
        message: str,
        where: Location | None = None,
        *,
        node: str | None = None,
        hint: str | None = None,
        severity: Severity = Severity.ERROR,
    ) -> Diagnostic:
        loc = where or Location("")
        diag = Diagnostic(code, severity, message, loc.file, loc.line, loc.column, node, hint)
        key = (diag.code, diag.file, diag.line, diag.column, diag.message)
        if key not in self._seen:
            self._seen.add(key)
            self.items.append(diag)
        return diag

    def error(self, code: str, message: str, where: Location | None = None, **kw) -> Diagnostic:
        return self.add(code, message, where, **kw)

    def warning(self, code: str, message: str, where: Location | None = None, **kw) -> Diagnostic:
        return self.add(code, message, where, severity=Severity.WARNING, **kw)

    def extend(self, other: Iterable[Diagnostic]) -> None:
        for diag in other:
            key = (diag.code, diag.file, diag.line, diag.column, diag.message)
            if key not in self._seen:
                self._seen.add(key)
                self.items.append(diag)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.is_error]

    @property
    def error_count(self) -> int:
        """How many errors there are (cheap: counted incrementally)."""
        items = self.items
        if items is not self._counted_in or self._counted > len(items):  # replaced, shortened
            self._errors = self._counted = 0
            self._counted_in = items
        if self._counted < len(items):
            error = Severity.ERROR
            self._errors += sum(1 for d in items[self._counted:] if d.severity is error)
            self._counted = len(items)
        return self._errors

    @property
    def has_errors(self) -> bool:
        return self.error_count > 0

    def sorted(self) -> list[Diagnostic]:
        return sorted(self.items, key=lambda d: (d.file, d.line, d.column, d.code))

    def __iter__(self) -> Iterator[Diagnostic]:
        return iter(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def to_json(self) -> str:
        return json.dumps([d.to_dict() for d in self.sorted()], indent=2)


def did_you_mean(name: object, candidates: Iterable[str]) -> str | None:
    """Return "did you mean 'x'?" for the closest candidate, or None."""
    if not isinstance(name, str):
        return None
    pool = [c for c in candidates if isinstance(c, str)]
    cutoff = 0.6 if len(name) > 4 else 0.5
    matches = difflib.get_close_matches(name, pool, n=1, cutoff=cutoff)
    if not matches:
        lowered = {c.lower(): c for c in pool}
        matches = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=cutoff)
        matches = [lowered[m] for m in matches]
    if not matches:
        # a suffix match helps with short type names ("Compute" for "tosca.nodes.Compute")
        tails = [c for c in pool if c.rsplit(".", 1)[-1].lower() == name.rsplit(".", 1)[-1].lower()]
        matches = tails[:1]
    return f"did you mean '{matches[0]}'?" if matches else None
