"""Deployment forms generated from a template's inputs, and the way back: submitted text
to typed input values, and the template validator's diagnostics to the fields they are
about.

- a ``valid_values`` constraint: a select;
- integer / float: a number, min/max from ``in_range``, ``greater_than``,
  ``greater_or_equal``, ``less_than``, ``less_or_equal``;
- boolean: a checkbox;
- secret (by name or ``metadata: {secret: true}``): a password, never filled in by the server;
- list: a textarea, one item a line (or a YAML/JSON list);
- map: a textarea, YAML or JSON ``key: value``;
- anything else (string, version, scalar-unit...): text.

The browser does not judge values (the form has ``novalidate``): the service's validator,
the same one ``orchestrator validate`` runs, does, so the web shows the CLI's messages."""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

NUMERIC = ("integer", "float")
_SET_FILE = re.compile(r"^--set #(\d+)$")
_NAMED = re.compile(r"input '([A-Za-z0-9_.-]+)'")


@dataclass
class Field:
    """One input as a form field; ``value`` is the text shown (never a secret's)."""
    name: str
    type: str
    widget: str
    label: str
    description: str = ""
    required: bool = False
    value: str = ""
    checked: bool = False
    options: list[str] = field(default_factory=list)
    minimum: str | None = None
    maximum: str | None = None
    step: str | None = None
    hint: str = ""
    errors: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"input-{self.name}"

    @property
    def form_name(self) -> str:
        return f"input.{self.name}"


def _text(value) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _yaml(value) -> str:
    import yaml

    if value in (None, {}, []):
        return ""
    return yaml.safe_dump(value, default_flow_style=False, sort_keys=False).strip()


def _list_text(value) -> str:
    """One item a line when the items are plain; YAML otherwise."""
    if isinstance(value, list) and all(isinstance(v, (str, int, float)) and
                                       "\n" not in str(v) for v in value):
        return "\n".join(str(v) for v in value)
    return _yaml(value)


def _bounds(kind: str, constraints: list[dict]) -> tuple[str | None, str | None, list[str]]:
    minimum = maximum = None
    hints = []
    for constraint in constraints:
        for op, arg in constraint.items():
            if op == "in_range" and isinstance(arg, list) and len(arg) == 2:
                minimum, maximum = _text(arg[0]), _text(arg[1])
                hints.append(f"from {arg[0]} to {arg[1]}")
            elif op in ("greater_or_equal", "greater_than"):
                minimum = _text(arg + 1 if op == "greater_than" and kind == "integer" and
                                isinstance(arg, int) else arg)
                hints.append(f"{'at least' if op == 'greater_or_equal' else 'more than'} {arg}")
            elif op in ("less_or_equal", "less_than"):
                maximum = _text(arg - 1 if op == "less_than" and kind == "integer" and
                                isinstance(arg, int) else arg)
                hints.append(f"{'at most' if op == 'less_or_equal' else 'less than'} {arg}")
            elif op in ("min_length", "max_length", "length"):
                hints.append(f"{op.replace('_', ' ')} {arg}")
            elif op == "pattern":
                hints.append(f"matching {arg}")
    return minimum, maximum, hints


def field_for(spec: dict) -> Field:
    """The form field of one input (as the catalogue describes it)."""
    name, kind = spec["name"], spec.get("type") or "string"
    constraints = [c for c in spec.get("constraints") or [] if isinstance(c, dict)]
    default = spec.get("default")
    label = name.replace("_", " ").capitalize()
    made = Field(name=name, type=kind, widget="text", label=label,
                 description=spec.get("description") or "",
                 required=bool(spec.get("required")) and default is None)
    valid = next((c["valid_values"] for c in constraints if "valid_values" in c), None)
    if spec.get("secret"):
        made.widget = "password"
    elif valid is not None:
        made.widget, made.options, made.value = "select", [_text(v) for v in valid], \
            _text(default)
    elif kind == "boolean":
        made.widget, made.checked = "checkbox", bool(default)
    elif kind in ("list", "map"):
        made.widget, made.value = "textarea", _list_text(default) if kind == "list" \
            else _yaml(default)
        made.hint = "one item a line" if kind == "list" else "YAML or JSON: one 'key: value' a line"
    else:
        made.value = _text(default)
        if kind in NUMERIC:
            made.widget, made.step = "number", "1" if kind == "integer" else "any"
    minimum, maximum, hints = _bounds(kind, constraints)
    if made.widget == "number":
        made.minimum, made.maximum = minimum, maximum
    if hints and made.widget != "select":
        made.hint = "; ".join(filter(None, [made.hint, *hints]))
    return made


def fields_for(inputs: list[dict]) -> list[Field]:
    return [field_for(spec) for spec in inputs]


class ParseError(ValueError):
    """A field's text cannot become a value of its type (shown next to the field)."""


def parse_value(item: Field, text: str):
    """The typed value of a field's text; None leaves the template's default."""
    if item.widget == "checkbox":
        return text in ("on", "true", "1", "yes")
    text = text.strip()
    if text == "":
        return None
    if item.type == "integer":
        return int(text) if re.fullmatch(r"[+-]?\d+", text) else text
    if item.type == "float":
        try:
            return float(text)
        except ValueError:
            return text
    if item.type == "list":
        return _parse_list(text)
    if item.type == "map":
        return _parse_map(text)
    return text


def _load(text: str):
    import yaml

    try:
        return json.loads(text)
    except ValueError:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark is not None else ""
            raise ParseError(f"this is not valid YAML{where}") from exc


def _parse_list(text: str) -> list:
    if text.startswith(("[", "- ")):
        value = _load(text)
        if not isinstance(value, list):
            raise ParseError("expected a list: one item a line, or [a, b]")
        return value
    return [line.strip() for line in text.splitlines() if line.strip()]


def _parse_map(text: str) -> dict:
    value = _load(text)
    if not isinstance(value, dict):
        raise ParseError("expected a map: one 'key: value' a line, or a JSON object")
    return value


def submitted_inputs(fields: list[Field], form: dict[str, list[str]]) -> dict:
    """The inputs the user gave (typed), recording parse errors on the fields. Non-secret
    fields keep the text for showing the form again; secrets never do."""
    inputs = {}
    for item in fields:
        text = (form.get(item.form_name) or [""])[0]
        if item.widget == "checkbox":
            item.checked = bool(text)
        elif item.widget != "password":
            item.value = text
        try:
            value = parse_value(item, text)
        except ParseError as exc:
            item.errors.append(str(exc))
            continue
        if value is not None:
            inputs[item.name] = value
    return inputs


def attach_diagnostics(fields: list[Field], inputs: dict, diagnostics,
                       secrets=()) -> list[str]:
    """Put each error diagnostic on the field it is about: a ``--set #N`` diagnostic is
    about the Nth given input (the order ``service.input_sets`` writes them), others name
    ``input 'x'``. The rest come back rendered as the CLI renders them. Secret values are
    masked in every message."""
    by_name = {item.name: item for item in fields}
    order = list(inputs)
    general = []
    for diagnostic in diagnostics:
        if not diagnostic.is_error:
            continue
        message = _masked(diagnostic.message, secrets)
        target = None
        found = _SET_FILE.match(diagnostic.file or "")
        if found and 0 < int(found.group(1)) <= len(order):
            target = by_name.get(order[int(found.group(1)) - 1])
        if target is None:
            named = _NAMED.search(diagnostic.message)
            target = by_name.get(named.group(1)) if named else None
        if target is not None:
            if message not in target.errors:
                target.errors.append(message)
        else:
            general.append(_masked(diagnostic.render(), secrets))
    flagged = [f"'{item.name}'" for item in fields if item.errors]
    # the same bad value seen again where a node uses the input: said once, at the field
    return [text for text in general if not any(name in text for name in flagged)]


def _masked(text: str, secrets) -> str:
    for value in sorted((str(s) for s in secrets if s not in (None, "")), key=len,
                        reverse=True):
        text = text.replace(value, "******")
    return text
