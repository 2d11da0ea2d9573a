"""Deployment lifecycle: plan, apply, deploy, resume, update, delete (reading status,
outputs and events: orchestrator.reading; update and scale: orchestrator.changes;
refreshing the state from the clouds: orchestrator.refreshing; which configurator runs
a step: orchestrator.configurators).

``Orchestrator`` is what the front ends call (through orchestrator.service). It ties
the front end, placement, plans, the state store, the providers and the engine together,
and never prints: progress goes to the ``on_event`` callback.
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
from dataclasses import dataclass
from typing import Callable, Iterable

from orchestrator import resources, sshkeys
from orchestrator.changes import Changes, carried_scaling, scale_topology
from orchestrator.configurators import BySite
from orchestrator.engine import Configurator, ExecutorOptions, RunResult, StepContext, execute
from orchestrator.errors import OrchestratorError, PlacementError, StalePlanError, TemplateError
from orchestrator.placement import place, usage_of
from orchestrator.plan import CONFIGURE, Existing, Plan, build_plan, digest
from orchestrator.reading import Reading
from orchestrator.refreshing import Refreshing
from orchestrator.topology.secrets import MASK
from orchestrator.tosca import LoadOptions
from orchestrator.validation import require_inputs, validate


@dataclass
class PlanResult:
    plan: Plan
    report: object  # service.ValidationReport
    deployment: object | None  # DeploymentRecord or None for a new deployment


@dataclass
class ApplyResult:
    deployment: object
    run: RunResult


class Orchestrator(Reading, Changes, Refreshing):
    def __init__(self, db: str | None = None, sites: str | None = None, owner: str = "local",
                 on_event: Callable[[dict], None] | None = None,
                 options: ExecutorOptions | None = None,
                 configurator: Configurator | None = None, store=None, catalogue=None):
        """``store`` and ``catalogue``, when given, are shared with the caller (a service
        running many deployments): ``close()`` leaves such a store open."""
        self.db_url = db
        self.sites_path = sites
        self.owner = owner
        self.on_event = on_event
        self.options = options or ExecutorOptions()
        self.configurator = configurator or Configurator()
        # Where the deployments' SSH keys are shared (orchestrator.sshkeys.KeyVault); the
        # service sets one that keeps them sealed in the state database.
        self.key_vault = None
        # What seals the outputs computed from secrets (orchestrator.sealing.Sealer): the
        # service sets its own; otherwise the user's key (sealing.default_sealer).
        self.sealer = None
        # Where simulated sites without a state_file keep their clouds (the CLI sets one)
        self.simulated_dir: str | None = None
        self._store = store
        self._owns_store = store is None
        self._catalogue = catalogue
        self._providers: dict = {}

    # -- resources ------------------------------------------------------------------------------
    @property
    def store(self):
        if self._store is None:
            from orchestrator.state import Store

            self._store = Store(self.db_url)
        return self._store

    @property
    def catalogue(self):
        if self._catalogue is None:
            from orchestrator.sites import load_sites, simulated_clouds_in

            catalogue = load_sites(self.sites_path)
            if self.simulated_dir:
                catalogue = simulated_clouds_in(catalogue, self.simulated_dir)
            if catalogue.diagnostics.has_errors:
                raise TemplateError(f"the site catalogue {catalogue.source} is invalid",
                                    catalogue.diagnostics)
            self._catalogue = catalogue
        return self._catalogue

    def provider(self, site_name: str | None):
        if site_name not in self._providers:
            from orchestrator.providers import provider_for

            self._providers[site_name] = provider_for(self.catalogue.get(site_name))
        return self._providers[site_name]

    def close(self) -> None:
        for provider in self._providers.values():
            provider.close()
        self._providers.clear()
        if self._store is not None and self._owns_store:
            self._store.close()

    def check_sites(self) -> list:
        results = []
        for site in self.catalogue.sites.values():
            try:
                results.append(self.provider(site.name).check())
            except OrchestratorError as exc:
                from orchestrator.providers.base import CheckResult

                results.append(CheckResult(site.name, False, False, str(exc)))
        return results

    # -- planning -------------------------------------------------------------------------------
    def deployment(self, name: str):
        record = self.store.get_deployment(name, owner=self.owner)
        if record is None:
            raise OrchestratorError(f"no deployment named '{name}' (see `orchestrator list`)")
        return record

    def plan(self, template: str, input_files: Iterable[str] = (), sets: Iterable[str] = (),
             name: str | None = None, import_maps: Iterable[str] = (),
             allow_remote_imports: bool = False, refresh: bool = True,
             import_options=None, scaling: dict | None = None) -> PlanResult:
        """``import_options`` (a ``tosca.LoadOptions``) is the import policy; it wins over
        ``import_maps`` and ``allow_remote_imports``. ``scaling``: counts set now
        (``changes.scale_topology``), over those the deployment keeps."""
        report = validate(template, input_files, sets, import_maps, allow_remote_imports,
                          options=import_options)
        require_inputs(report)
        name = name or os.path.splitext(os.path.basename(report.file))[0]
        record = self.store.get_deployment(name, owner=self.owner)
        existing: list[Existing] = []
        if record is not None and refresh:
            with self.store.locked(record.id):  # never refresh under a running apply
                existing = self.refresh(record)
        elif record is not None:
            existing = self._existing(record)
        report.topology, scaled = scale_topology(report.topology, carried_scaling(record),
                                                  scaling)
        sites = list(self.catalogue.sites.values())
        unavailable: dict[str, str] = {}
        offers = {s.name: self._offer(s.name, unavailable) for s in sites}
        credit = {s.name: usage_of([e for e in existing if e.site == s.name], offers[s.name])
                  for s in sites}
        placement = place(report.topology, sites, offers, credit, unavailable)
        with open(report.file, "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
        inputs = _stored_inputs(report.topology)
        secret_inputs = {i.name: MASK for i in report.topology.inputs
                         if i.secret and i.value is not None and i.value != i.default}
        plan = build_plan(
            report.topology, placement, existing, deployment=name,
            base_serial=record.serial if record else 0,
            template_digest=digest([text, inputs]), estimate=self._estimate,
            inputs={**{i.name: i.value for i in report.topology.inputs if not i.secret},
                    **secret_inputs},
            sites_file=self.catalogue.source,
            deployment_id=record.id if record else None,
            remote_imports=report.remote_imports,
            fingerprint=lambda value: self._sealer().fingerprint(value))
        plan = dataclasses.replace(plan, scaling=scaled)
        if import_options is not None:  # apply reads the template the same way
            plan = dataclasses.replace(
                plan, implementation=import_options.implementation,
                import_maps=tuple(os.path.abspath(m) for m in import_options.import_maps),
                allow_local_imports=import_options.allow_local_imports)
        self._check_operations_can_run(plan, report.topology)
        return PlanResult(plan, report, record)

    def _check_operations_can_run(self, plan: Plan, topology) -> None:
        """Refuse, before anything is made, software whose operations nothing can run on
        its site (a provider whose servers are neither logged into over SSH nor a test
        cloud that records operations, such as Kubernetes pods)."""
        problems = []
        for step in plan.steps:
            node = topology.nodes.get(step.node)
            if step.kind != "software" or step.action != CONFIGURE or node is None or \
                    not any(op.implementation for op in node.operations) or not step.site:
                continue
            provider = self.provider(step.site)
            if provider.reached_over_ssh:
                problems.extend(_remote_playbooks(node))
                continue
            if provider.records_operations:
                continue
            problems.append(f"node {step.node}: site {step.site} ({provider.type_name}) "
                            "cannot run its lifecycle operations (its servers are not "
                            "reached over SSH); give the software as a container image or "
                            "place it on another site")
        if problems:
            raise PlacementError("; ".join(dict.fromkeys(problems)))

    def _offer(self, site: str, unavailable: dict):
        try:
            return self.provider(site).offer()
        except OrchestratorError as exc:
            from orchestrator.providers.base import Offer

            unavailable[site] = f"unavailable: {exc}"  # placement says so for this site
            return Offer()

    def _estimate(self, site: str | None, kind: str, action: str) -> float:
        try:
            if kind == "software":
                options = getattr(self.catalogue.sites.get(site), "options", None) or {}
                return self.configurator.estimate(options) if action != "delete" else 0.0
            return float(self.provider(site).estimate(kind, action))
        except OrchestratorError:
            return 0.0

    # -- applying -------------------------------------------------------------------------------
    def apply(self, plan: Plan, input_files: Iterable[str] = (), sets: Iterable[str] = (),
              keep_failed: bool = False, report=None) -> ApplyResult:
        """Execute ``plan``. ``report`` is the validation the plan was made from, when the
        caller made the plan in this process (deploy, update); otherwise the template is
        validated again."""
        if report is None:  # remote imports from the cache the plan filled, checked below
            report = validate(plan.template, input_files, [
                f"{k}={v}" for k, v in _plan_inputs(plan, sets)] + list(sets),
                options=LoadOptions(plan.import_maps,
                                    allow_remote_imports=bool(plan.remote_imports),
                                    allow_local_imports=plan.allow_local_imports,
                                    implementation=plan.implementation))
            if report.topology is not None:
                report.topology = scale_topology(report.topology, plan.scaling)[0]
        require_inputs(report)
        if report.remote_imports != plan.remote_imports:
            raise StalePlanError(f"the plan for '{plan.deployment}' is stale: its remote "
                                 "imports changed since it was made; make a new plan")
        given = {s.partition("=")[0] for s in sets} | _file_keys(input_files)
        missing = sorted(k for k, v in plan.inputs.items() if v == MASK and k not in given)
        if missing:
            raise TemplateError(
                f"the plan was made with secret input(s) {', '.join(missing)}, which are never "
                "stored: pass them again to apply (--set NAME=VALUE or -i FILE)")
        record = self.store.get_deployment(plan.deployment, owner=self.owner)
        with open(report.file, "rb") as handle:
            text = handle.read().decode("utf-8", "replace")
        inputs = _stored_inputs(report.topology)
        current_serial = record.serial if record else 0
        if current_serial != plan.base_serial or digest([text, inputs]) != plan.template_digest:
            raise StalePlanError(
                f"the plan for '{plan.deployment}' is stale: it was made against state serial "
                f"{plan.base_serial} but the deployment is at {current_serial}, or the template"
                " or inputs changed since; make a new plan")
        if record is None:
            try:
                record = self.store.create_deployment(
                    plan.deployment, owner=self.owner,
                    template_path=os.path.abspath(report.file), template_text=text,
                    inputs=inputs, sites=self.catalogue.source)
            except ValueError:  # another run created it since the plan was made
                record = self.deployment(plan.deployment)
        with self.store.locked(record.id):
            record = self.deployment(plan.deployment)
            if record.serial != plan.base_serial:
                raise StalePlanError(
                    f"the plan for '{plan.deployment}' is stale: another run applied state "
                    f"serial {record.serial} since; make a new plan")
            self.store.update_deployment(record.id, status="deploying", status_reason=None,
                                         template_text=text, inputs=inputs,
                                         template_path=os.path.abspath(report.file),
                                         plan=plan.to_dict())
            self._event(record.id, "apply-started", plan.summary_line())
            ctx = StepContext(self.store, record.id, plan, report.topology, self.provider,
                              self.catalogue.sites, self._configurator_for(record.id, plan),
                              self.on_event,
                              ssh_public_key=self._deployment_key(record.id, plan),
                              workdir=str(resources.deployment_dir(record.id)),
                              seal=lambda values: self._sealer().seal(values),
                              open_sealed=lambda token: self._sealer().open(token))
            options = ExecutorOptions(**{**self.options.__dict__, "keep_failed": keep_failed})
            run = execute(ctx, plan, options)
            self.store.bump_serial(record.id)
            if run.ok:
                status, reason = "deployed", None
            else:
                status = "failed"
                reason = "; ".join(f"{k}: {v}" for k, v in run.failed.items())
            record = self.store.update_deployment(record.id, status=status, status_reason=reason)
            self._event(record.id, "apply-finished", f"{status}" + (f": {reason}" if reason
                                                                    else ""),
                        level="info" if run.ok else "error")
        return ApplyResult(self.deployment(plan.deployment), run)

    def settle(self, plan: Plan) -> None:
        """A plan without changes says the deployment is what its template describes. One
        whose status says otherwise (an apply killed after its last step left 'deploying', a
        new deployment of an empty template, a failed run since repaired) is marked deployed,
        unless another run has moved its state on since the plan was made."""
        if plan.has_changes:
            return
        record = self.store.get_deployment(plan.deployment, owner=self.owner)
        if record is None or record.status == "deployed":
            return
        with self.store.locked(record.id):
            record = self.deployment(plan.deployment)
            if record.serial != plan.base_serial or record.status == "deployed":
                return
            self.store.update_deployment(record.id, status="deployed", status_reason=None)
            self._event(record.id, "apply-finished", "deployed: the plan has nothing left to do")

    def _sites_over_ssh(self, plan: Plan) -> tuple[set, set]:
        """(the sites of the plan's servers, those whose servers are reached over SSH)"""
        sites = {s.site for s in plan.steps if s.kind == "compute" and s.site}
        return sites, {site for site in sites if self.provider(site).reached_over_ssh}

    def _configurator_for(self, deployment_id: str, plan: Plan) -> Configurator:
        """Ansible for servers reached over SSH; the recording configurator for test
        clouds whose servers cannot be logged into; per step when a plan has both."""
        sites, over_ssh = self._sites_over_ssh(plan)
        if not over_ssh or type(self.configurator) is not Configurator:
            return self.configurator
        try:
            from orchestrator.contextualize import AnsibleConfigurator
        except ImportError as exc:  # pragma: no cover - the ansible extra is missing
            raise OrchestratorError("contextualisation needs Ansible: pip install "
                                    "'tosca-orchestrator[ansible]'") from exc
        folder = resources.deployment_dir(deployment_id)
        ansible = AnsibleConfigurator(data_dir=str(folder), logs_dir=str(folder / "logs"))
        if over_ssh == sites:
            return ansible
        return BySite(over_ssh, ansible, self.configurator)

    def _deployment_key(self, deployment_id: str, plan: Plan) -> str | None:
        """The deployment's SSH public key (``orchestrator.sshkeys``: generated on first use,
        shared through ``key_vault`` when one is set) for sites whose servers are reached
        over SSH; None when no site in the plan needs one."""
        if not self._sites_over_ssh(plan)[1]:
            return None
        return sshkeys.deployment_key(resources.deployment_dir(deployment_id) / "ssh",
                                      deployment_id, self.key_vault)

    def _event(self, deployment_id: str, kind: str, message: str, level: str = "info"):
        event = self.store.add_event(deployment_id, kind, message, level=level)
        if self.on_event:
            self.on_event(event.to_dict())

    # -- deleting -------------------------------------------------------------------------------
    def delete(self, name: str, force: bool = False) -> RunResult | None:
        """Delete every resource of the deployment (reverse dependency order), then its
        state. ``force`` drops the state even when the cloud cannot be reached."""
        from orchestrator.engine.delete import delete_all

        record = self.deployment(name)
        with self.store.locked(record.id):
            self.store.update_deployment(record.id, status="deleting")
            run = delete_all(self, record)
            if run.ok or force:
                if not run.ok:
                    self._event(record.id, "force-delete", "dropping state although some "
                                "resources could not be deleted: " + "; ".join(
                                    f"{k}: {v}" for k, v in run.failed.items()), level="warning")
                self.store.delete_deployment(record.id)
                shutil.rmtree(resources.deployment_dir(record.id), ignore_errors=True)
                return run
            self.store.update_deployment(record.id, status="failed", status_reason=(
                "delete failed: " + "; ".join(f"{k}: {v}" for k, v in run.failed.items())))
            return run


def _stored_inputs(topology) -> dict:
    """Input values worth keeping in state: everything but secrets."""
    return {i.name: i.value for i in topology.inputs if not i.secret and i.value is not None}


def _file_keys(files) -> set[str]:
    import yaml

    keys: set[str] = set()
    for path in files:
        try:
            with open(path, encoding="utf-8") as handle:
                data = yaml.safe_load(handle)
        except (OSError, yaml.YAMLError):
            continue  # reported by validation
        if isinstance(data, dict):
            keys |= set(data.get("inputs", data) if set(data) == {"inputs"} else data)
    return keys


def _plan_inputs(plan: Plan, sets) -> list[tuple[str, str]]:
    given = {s.partition("=")[0] for s in sets}
    return [(k, _yaml(v)) for k, v in plan.inputs.items() if v != MASK and k not in given]


def _yaml(value) -> str:
    """A value as --set text: JSON is YAML, and keeps "22.04" a string."""
    return json.dumps(value)


def _remote_playbooks(node) -> list[str]:
    """Operations whose implementation is a playbook URL (an upstream implementation of an
    INDIGO / INFN-Cloud type): nothing fetches and runs those yet."""
    problems = []
    for op in node.operations:
        if isinstance(op.implementation, str) and "://" in op.implementation:
            hint = ("run it with --implementation native" if node.implementation else
                    "playbooks/native.yaml has no native implementation of its type "
                    f"{node.type} yet")
            problems.append(f"node {node.name}: operation {op.interface}.{op.name} is the "
                            f"remote playbook {op.implementation}, which is not fetched and "
                            f"run yet; {hint}, or give the operation a local playbook")
    return problems
