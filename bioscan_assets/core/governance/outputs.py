"""Where a person finds what the pipeline made: each tenant's newest evaluation and cohort
reports (their stable `latest/` paths) and every sample's profile. `bioscan outputs` and the
demo job's last step print them."""

from __future__ import annotations

from dataclasses import dataclass

from bioscan_assets.core.calls import cohort_report
from bioscan_assets.core.calls.cohort_data import profiled_samples
from bioscan_assets.core.evaluation import report
from bioscan_assets.core.governance.listing import child_dirs
from bioscan_assets.core.layout import (
    check_tenant,
    cohort_report_dir,
    evaluation_report_dir,
    profile_dir,
    profile_tenant_dir,
)
from bioscan_assets.core.storage import Store

# the folders holding one `tenant=<t>` folder each (the parent of any tenant's folder)
_ROOTS = tuple(
    folder("x").rsplit("/", 1)[0]
    for folder in (evaluation_report_dir, cohort_report_dir, profile_tenant_dir)
)
PROFILE_TSV = "profile.tsv"


@dataclass(frozen=True)
class Output:
    kind: str  # "evaluation report" | "cohort report" | "profile"
    tenant: str  # "" for an evaluation of an adapter that names no tenant
    path: str  # relative to the store
    sample_id: str = ""

    def label(self) -> str:
        owner = f"{self.tenant}/{self.sample_id}" if self.sample_id else self.tenant
        return f"{self.kind} {owner}".rstrip()


def _tenants(store: Store) -> list[str]:
    found = {
        name.removeprefix("tenant=")
        for root in _ROOTS
        for name in child_dirs(store, root)
        if name.startswith("tenant=")
    }
    return sorted(found)


def published_outputs(store: Store, tenant: str | None = None) -> list[Output]:
    """The newest reports and the profiles of one tenant (or every tenant), in tenant order."""
    tenants = [check_tenant(tenant)] if tenant else _tenants(store)
    out = []
    if tenant is None:
        shared = f"{evaluation_report_dir('')}/{report.LATEST}/{report.PAGE}"
        if store.exists(shared):
            out.append(Output("evaluation report", "", shared))
    for name in tenants:
        evaluation = f"{evaluation_report_dir(name)}/{report.LATEST}/{report.PAGE}"
        if store.exists(evaluation):
            out.append(Output("evaluation report", name, evaluation))
        cohort = f"{cohort_report_dir(name)}/{cohort_report.LATEST}/{cohort_report.PAGE}"
        if store.exists(cohort):
            out.append(Output("cohort report", name, cohort))
        for sample_id in profiled_samples(store, name):
            path = f"{profile_dir(name, sample_id)}/{PROFILE_TSV}"
            out.append(Output("profile", name, path, sample_id))
    return out
