"""The engine: executes plans through providers, concurrently and resumably."""
from orchestrator.engine.executor import Executor, ExecutorOptions, RunResult, execute
from orchestrator.engine.steps import Configurator, StepContext, StepFailed

__all__ = ["Executor", "ExecutorOptions", "RunResult", "execute", "Configurator",
           "StepContext", "StepFailed"]
