"""``artisan sandbox demo``: the whole control plane on this machine, end to end.

1. start the emulated Kubernetes API on loopback;
2. register the CRDs (``crds/*.yaml`` posted to apiextensions when present, else the kinds
   from the API registry);
3. start the simulated runtime (kubelet and built-in controllers, see :mod:`.runtime`) and
   Artisan's operator, in-process;
4. apply ``configs/samples/*.yaml`` and wait until each reaches its expected state;
5. print every sample with its children and status; exit 0 only if all got there.

Expected states (pure: :func:`assess`):

=============  ===========================================================================
kind           expected
=============  ===========================================================================
TrainingRun    owns a Job, a PersistentVolumeClaim, a ConfigMap and a Service; phase Running
ModelPin       owns a Deployment, a Service and a ConfigMap (routing); condition Ready=True
Canary         status written for the current generation, with conditions (honest start)
ABExperiment   status written for the current generation, with conditions (honest start)
=============  ===========================================================================
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import kubernetes.client
import yaml
from rich.console import Console
from rich.table import Table

from artisan_operator.api import KINDS_BY_NAME
from artisan_operator.api.common import GROUP, VERSION
from artisan_operator.sandbox.emulator import SandboxEmulator
from artisan_operator.sandbox.runner import OperatorThread, artisan_operator_main
from artisan_operator.sandbox.runtime import SimulatedRuntime
from artisan_operator.sandbox.server import EmulatorThread

Obj = dict[str, Any]

REQUIRED_CHILDREN: dict[str, frozenset[str]] = {
    "TrainingRun": frozenset({"Job", "PersistentVolumeClaim", "ConfigMap", "Service"}),
    "ModelPin": frozenset({"Deployment", "Service", "ConfigMap"}),
    "Canary": frozenset(),
    "ABExperiment": frozenset(),
}
# Where children are looked for (kind -> list function name on the kubernetes client).
CHILD_KINDS: tuple[tuple[str, str, str], ...] = (
    ("Job", "BatchV1Api", "list_namespaced_job"),
    ("PersistentVolumeClaim", "CoreV1Api", "list_namespaced_persistent_volume_claim"),
    ("ConfigMap", "CoreV1Api", "list_namespaced_config_map"),
    ("Service", "CoreV1Api", "list_namespaced_service"),
    ("Deployment", "AppsV1Api", "list_namespaced_deployment"),
)


@dataclass(frozen=True)
class Assessment:
    reached: bool
    detail: str


def ready_condition(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for condition in (obj.get("status") or {}).get("conditions") or []:
        if condition.get("type") == "Ready":
            return condition  # type: ignore[no-any-return]
    return None


def assess(obj: Mapping[str, Any], child_kinds: Iterable[str]) -> Assessment:
    """Did this sample reach the state the demo promises? (see the module table)"""
    kind = obj["kind"]
    status = obj.get("status") or {}
    missing = sorted(REQUIRED_CHILDREN.get(kind, frozenset()) - set(child_kinds))
    if missing:
        return Assessment(False, f"missing children: {', '.join(missing)}")
    if status.get("observedGeneration") != obj["metadata"].get("generation"):
        return Assessment(False, "status not written for the current generation yet")
    ready = ready_condition(obj)
    if kind == "TrainingRun" and status.get("phase") != "Running":
        return Assessment(False, f"phase {status.get('phase')!r}, expected 'Running'")
    if kind == "ModelPin" and (ready is None or ready.get("status") != "True"):
        return Assessment(False, f"Ready is {ready.get('status') if ready else 'absent'}, expected True")
    if kind in ("Canary", "ABExperiment") and not status.get("conditions"):
        return Assessment(False, "no conditions in status")
    return Assessment(True, (ready or {}).get("message") or (ready or {}).get("reason") or "")


def load_documents(paths: Sequence[Path]) -> list[Obj]:
    documents: list[Obj] = []
    for path in paths:
        with path.open(encoding="utf-8") as handle:
            documents.extend(doc for doc in yaml.safe_load_all(handle) if isinstance(doc, dict))
    return documents


class Demo:
    """The demo's steps over one API client (split out so each step reads on its own)."""

    def __init__(self, client: kubernetes.client.ApiClient) -> None:
        self.client = client
        self.custom = kubernetes.client.CustomObjectsApi(client)

    def register_crds(self, crd_dir: Path) -> int:
        extensions = kubernetes.client.ApiextensionsV1Api(self.client)
        crds = load_documents(sorted(crd_dir.glob("*.yaml")))
        for crd in crds:
            extensions.create_custom_resource_definition(crd)  # type: ignore[arg-type]  # dicts go as-is
        return len(crds)

    def apply(self, sample: Obj) -> Obj:
        kind = KINDS_BY_NAME[sample["kind"]]
        namespace = sample["metadata"].get("namespace", "default")
        created = self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, kind.plural, sample)
        return cast(Obj, created)

    def fetch(self, obj: Mapping[str, Any]) -> Obj:
        meta = obj["metadata"]
        plural = KINDS_BY_NAME[obj["kind"]].plural
        fetched = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, meta["namespace"], plural, meta["name"]
        )
        return cast(Obj, fetched)

    def children(self, obj: Mapping[str, Any]) -> list[tuple[str, str]]:
        """(kind, name) of the objects whose ownerReferences name ``obj``."""
        uid, namespace = obj["metadata"]["uid"], obj["metadata"]["namespace"]
        found: list[tuple[str, str]] = []
        for kind, api_name, list_name in CHILD_KINDS:
            api = getattr(kubernetes.client, api_name)(self.client)
            for item in getattr(api, list_name)(namespace).items:
                if any(ref.uid == uid for ref in item.metadata.owner_references or []):
                    found.append((kind, item.metadata.name))
        return found


def run_demo(samples_dir: Path, crd_dir: Path, timeout: float, console: Console) -> int:
    sample_paths = sorted(samples_dir.glob("*.yaml"))
    if not sample_paths:
        console.print(f"[red]no samples in {samples_dir}[/red]")
        return 2
    samples = load_documents(sample_paths)
    use_crd_files = crd_dir.is_dir() and any(crd_dir.glob("*.yaml"))
    started = time.monotonic()
    with (
        EmulatorThread(SandboxEmulator(declare_artisan_kinds=not use_crd_files)) as api,
        api.api_client() as client,
    ):
        demo = Demo(client)
        console.print(f"emulated Kubernetes API on {api.url} (kubeconfig {api.kubeconfig_path})")
        if use_crd_files:
            console.print(f"registered {demo.register_crds(crd_dir)} CRDs from {crd_dir}/")
        else:
            console.print("no CRD files: the kinds are declared from the API registry")
        with SimulatedRuntime(client), OperatorThread(artisan_operator_main(api.kubeconfig_path)):
            console.print("operator and simulated runtime started; applying samples")
            applied = [demo.apply(sample) for sample in samples]
            results = wait_for_samples(demo, applied, deadline=started + timeout)
        table = render_table(results)
    console.print(table)
    failed = [obj for obj, _, assessment in results if not assessment.reached]
    elapsed = time.monotonic() - started
    if failed:
        for obj, _, assessment in results:
            if not assessment.reached:
                console.print(f"[red]{obj['kind']}/{obj['metadata']['name']}: {assessment.detail}[/red]")
        console.print(
            f"[red]{len(failed)} of {len(results)} samples did not reach their state in {elapsed:.1f}s[/red]"
        )
        return 1
    console.print(f"[green]all {len(results)} samples reached their expected state in {elapsed:.1f}s[/green]")
    return 0


Result = tuple[Obj, list[tuple[str, str]], Assessment]


def wait_for_samples(demo: Demo, applied: Sequence[Obj], *, deadline: float) -> list[Result]:
    """Poll until every sample reached its state or the deadline passed; the last view of each."""
    while True:
        results: list[Result] = []
        for obj in applied:
            current = demo.fetch(obj)
            children = demo.children(current)
            results.append((current, children, assess(current, (kind for kind, _ in children))))
        if all(assessment.reached for _, _, assessment in results) or time.monotonic() >= deadline:
            return results
        time.sleep(0.2)


def render_table(results: Sequence[Result]) -> Table:
    table = Table(title="Artisan sandbox: samples, children and status")
    for column in ("object", "phase", "Ready", "children", "reached", "detail"):
        table.add_column(column)
    for obj, children, assessment in results:
        ready = ready_condition(obj)
        table.add_row(
            f"{obj['kind']}/{obj['metadata']['name']}",
            str((obj.get("status") or {}).get("phase", "-")),
            f"{ready.get('status')} ({ready.get('reason')})" if ready else "-",
            "\n".join(f"{kind}/{name}" for kind, name in sorted(children)) or "-",
            "[green]yes[/green]" if assessment.reached else "[red]no[/red]",
            assessment.detail,
        )
    return table
