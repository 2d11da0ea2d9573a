"""Plans: what will be created, updated, replaced, deleted or configured, and why."""
from orchestrator.plan.build import Existing, build_plan, digest
from orchestrator.plan.model import (
    CONFIGURE,
    CREATE,
    DELETE,
    NOOP,
    REPLACE,
    SYMBOLS,
    UPDATE,
    Plan,
    Step,
    critical_path,
)

__all__ = ["Existing", "build_plan", "digest", "Plan", "Step", "critical_path", "CREATE",
           "UPDATE", "REPLACE", "DELETE", "CONFIGURE", "NOOP", "SYMBOLS"]
