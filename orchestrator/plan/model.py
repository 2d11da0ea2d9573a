"""Plans: an ordered DAG of steps, JSON-serialisable and deterministic."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

FORMAT_VERSION = 1

CREATE, UPDATE, REPLACE, DELETE, CONFIGURE, NOOP = (
    "create", "update", "replace", "delete", "configure", "noop")
SYMBOLS = {CREATE: "+", UPDATE: "~", REPLACE: "-/+", DELETE: "-", CONFIGURE: "*", NOOP: "="}


@dataclass(frozen=True)
class Step:
    id: str
    action: str  # create | update | replace | delete | configure | noop
    kind: str  # network | port | volume | compute | software | outputs
    node: str
    index: int = 0
    site: str | None = None
    details: dict = field(default_factory=dict)
    depends_on: tuple[str, ...] = ()
    reason: str = ""
    estimate_s: float = 0.0

    @property
    def instance(self) -> str:
        return f"{self.node}[{self.index}]"

    def to_dict(self) -> dict:
        data = asdict(self)
        data["depends_on"] = list(self.depends_on)
        return data

    @classmethod
    def from_dict(cls, data: dict) -> "Step":
        return cls(**{**data, "depends_on": tuple(data.get("depends_on", ()))})


@dataclass(frozen=True)
class Plan:
    deployment: str
    template: str
    template_digest: str
    base_serial: int
    steps: tuple[Step, ...]
    placement: dict = field(default_factory=dict)
    inputs: dict = field(default_factory=dict)  # secrets masked
    sites_file: str | None = None
    deployment_id: str | None = None
    estimated_duration_s: float = 0.0
    format_version: int = FORMAT_VERSION
    #: remote imports the template was read with: URL -> sha256 of the bytes used
    remote_imports: dict = field(default_factory=dict)
    #: the operations of other catalogues' node types: "native" (our playbooks, where
    #: playbooks/native.yaml has them) or "upstream" (the types' own)
    implementation: str = "native"
    #: how the template's imports were read, for apply to read them alike: the user's
    #: import maps, and whether local files outside its folder were allowed (CLI only)
    import_maps: tuple = ()
    allow_local_imports: bool = False
    #: counts set with `orchestrator scale` over the template's: node -> {count, from (the
    #: template's count they override), remove (instance indexes to remove first)}
    scaling: dict = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, int]:
        counts = {CREATE: 0, UPDATE: 0, REPLACE: 0, DELETE: 0, CONFIGURE: 0, NOOP: 0}
        for step in self.steps:
            if step.kind != "outputs":
                counts[step.action] += 1
        return counts

    @property
    def has_changes(self) -> bool:
        summary = self.summary
        return any(summary[a] for a in (CREATE, UPDATE, REPLACE, DELETE, CONFIGURE))

    def summary_line(self) -> str:
        s = self.summary
        line = (f"{s[CREATE] + s[REPLACE]} to create, {s[UPDATE]} to update, "
                f"{s[DELETE] + s[REPLACE]} to delete")
        if s[CONFIGURE]:
            line += f", {s[CONFIGURE]} to configure"
        return line

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    def to_dict(self) -> dict:
        return {
            "format_version": self.format_version,
            "deployment": self.deployment,
            "deployment_id": self.deployment_id,
            "template": self.template,
            "template_digest": self.template_digest,
            "base_serial": self.base_serial,
            "sites_file": self.sites_file,
            "inputs": self.inputs,
            "placement": self.placement,
            "summary": self.summary,
            "estimated_duration_s": round(self.estimated_duration_s, 3),
            "steps": [s.to_dict() for s in self.steps],
        } | ({"remote_imports": dict(self.remote_imports)} if self.remote_imports else {}) \
            | ({"implementation": self.implementation} if self.implementation != "native"
               else {}) \
            | ({"import_maps": list(self.import_maps)} if self.import_maps else {}) \
            | ({"allow_local_imports": True} if self.allow_local_imports else {}) \
            | ({"scaling": self.scaling} if self.scaling else {})

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict) -> "Plan":
        return cls(
            deployment=data["deployment"], template=data["template"],
            template_digest=data["template_digest"], base_serial=data["base_serial"],
            steps=tuple(Step.from_dict(s) for s in data["steps"]),
            placement=data.get("placement") or {}, inputs=data.get("inputs") or {},
            sites_file=data.get("sites_file"), deployment_id=data.get("deployment_id"),
            estimated_duration_s=data.get("estimated_duration_s", 0.0),
            format_version=data.get("format_version", FORMAT_VERSION),
            remote_imports=dict(data.get("remote_imports") or {}),
            implementation=data.get("implementation") or "native",
            import_maps=tuple(data.get("import_maps") or ()),
            allow_local_imports=bool(data.get("allow_local_imports")),
            scaling=dict(data.get("scaling") or {}))


def critical_path(steps: tuple[Step, ...] | list[Step]) -> float:
    """Length in seconds of the longest chain of dependent steps."""
    finish: dict[str, float] = {}
    by_id = {s.id: s for s in steps}
    for step in steps:  # steps are in dependency order
        start = max((finish.get(d, 0.0) for d in step.depends_on if d in by_id), default=0.0)
        finish[step.id] = start + step.estimate_s
    return max(finish.values(), default=0.0)
