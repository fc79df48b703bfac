"""``kubectl artisan`` (also ``artisan``): the runbooks of an SRE on call, against any kubeconfig.

Every command takes ``--kubeconfig``, ``--context`` and ``-n/--namespace`` (default: the context's
namespace); ``get``, ``emergency-stop`` and ``resume`` also take ``-A/--all-namespaces``. The
sandbox writes a kubeconfig, so the same commands drive it (``--kubeconfig <sandbox kubeconfig>``).

Exit codes: 0 done / Ready; 1 unhealthy (Stalled, Failed, Degraded, Invalid; a failed check);
2 bad input, object not found or API error (nothing changed); 3 not ready yet, timed out, or a
check that could not reach its endpoint.

GitOps: manual actions are annotations the operator consumes, never spec. ``pin`` and ``undo``
change the ModelPin spec because a pin *is* the user's spec: under Argo CD or Flux that change must
be made in git as well, or the next sync reverts it; ``undo --print`` writes the manifest to commit
instead of patching the cluster.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, get_args

import yaml
from rich.console import Console
from rich.table import Table
from rich.tree import Tree

from artisan_common.routing import routing_configmap_name
from artisan_common.serving import MODES
from artisan_operator.api import KINDS, KINDS_BY_NAME, Kind
from artisan_operator.api.canary import CanaryAction
from artisan_operator.api.common import API_VERSION
from artisan_operator.cli import runbooks
from artisan_operator.cli.runbooks import (
    EXIT_NOT_READY,
    EXIT_READY,
    EXIT_UNHEALTHY,
    EXIT_USAGE,
    ActionError,
    Obj,
    TreeNode,
)
from artisan_operator.cluster.cli_client import (
    CliClient,
    ClusterError,
    DirectEndpoint,
    Endpoint,
    HttpReply,
    NotFoundError,
)
from artisan_operator.manifests.common import owner_label_key
from artisan_operator.manifests.ensemble import HTTP_PORT, ensemble_service_name

ADMIN_TOKEN_ENV = "ARTISAN_ENSEMBLE_ADMIN_TOKEN"
ADMIN_TOKEN_HEADER = "X-Artisan-Admin-Token"
"""The ensemble's admin token header (the API server proxy strips Authorization)."""
HEALTH_STYLE = {"Ready": "green", "Progressing": "yellow", "Idle": "blue", "Unhealthy": "red"}
GITOPS_WARNING = (
    "warning: this changed the ModelPin spec in the cluster. Under GitOps (Argo CD, Flux) make the same"
    " change in git, or the next sync reverts it."
)
# Series metrics-check reports (sample names as exposed).
OPERATOR_SERIES = (
    "artisan_reconcile_total",
    "artisan_reconcile_time_seconds_count",
    "artisan_reconcile_errors_total",
)
ENSEMBLE_SERIES = (
    "model_health_status",
    "artisan_breaker_state",
    "artisan_http_requests_total",
    "llm_brief_elapsed_ms_count",
    "artisan_cache_entries",
    "artisan_queue_size",
    "artisan_requests_rejected_total",
    "ifra_violations_total",
)
ENSEMBLE_REQUIRED = ("model_health_status",)
"""Always exported by a running ensemble (the others appear with traffic)."""


def combine(*codes: int) -> int:
    """The exit code of several checks: unhealthy beats not-checked beats ok."""
    for code in (EXIT_UNHEALTHY, EXIT_NOT_READY):
        if code in codes:
            return code
    return EXIT_READY


def utc_now() -> datetime:
    return datetime.now(tz=UTC).replace(microsecond=0)


def console() -> Console:
    # Wide when piped (CI logs); the terminal's width otherwise. Created per command (tests capture).
    return Console() if sys.stdout.isatty() else Console(width=160, soft_wrap=False)


def error_console() -> Console:
    return Console(stderr=True) if sys.stderr.isatty() else Console(stderr=True, width=160)


# Options and connection.


def connection_options() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_argument_group("cluster")
    group.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
    group.add_argument("--context", help="kubeconfig context (default: the current context)")
    group.add_argument("-n", "--namespace", help="namespace (default: the context's namespace)")
    return parent


def all_namespaces_option() -> argparse.ArgumentParser:
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
    return parent


@contextmanager
def connected(args: argparse.Namespace) -> Iterator[tuple[CliClient, str]]:
    client = CliClient.connect(args.kubeconfig, args.context)
    try:
        yield client, args.namespace or client.default_namespace
    finally:
        client.close()


def command(fn: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Bad input, a missing object or an API error: a one-line message and exit 2, nothing changed."""

    def run(args: argparse.Namespace) -> int:
        try:
            return fn(args)
        except (ActionError, ClusterError) as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE

    return run


def register(subparsers: Any) -> None:
    conn = connection_options()
    every = all_namespaces_option()

    def add(name: str, help_text: str, *parents: argparse.ArgumentParser) -> argparse.ArgumentParser:
        return subparsers.add_parser(  # type: ignore[no-any-return]
            name, help=help_text, description=help_text, parents=[conn, *parents]
        )

    get = add("get", "custom resources as a tree of their children, with status", every)
    get.add_argument(
        "kind", nargs="?", help="trainingrun (tr), modelpin (mpin), canary (cny), abexperiment (abx)"
    )
    get.add_argument("name", nargs="?", help="one object (default: all of the kind)")
    get.set_defaults(func=command(run_get))

    status = add("status", "health of one object; exit 0 when Ready, 1 when unhealthy, 3 when not yet")
    status.add_argument(
        "ref",
        metavar="[KIND/]NAME",
        help="e.g. canary/rollout, mpin fleet, or a bare name (its kind is looked up; ambiguous is an error)",
    )
    status.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    status.add_argument("-w", "--watch", action="store_true", help="wait until Ready or unhealthy")
    status.add_argument("--timeout", type=float, default=300.0, help="seconds to watch (default 300)")
    status.add_argument("--interval", type=float, default=2.0, help="seconds between looks (default 2)")
    status.set_defaults(func=command(run_status))

    promote = add("promote", "Canary: skip the current pause or analysis step (--full: promote at once)")
    promote.add_argument("name", metavar="CANARY")
    promote.add_argument("--full", action="store_true", help="promote the canary revision at once")
    promote.set_defaults(func=command(run_canary_action), action="promote")
    for action, text in (
        ("abort", "Canary: abort the rollout (canary weight 0 at once)"),
        ("retry", "Canary: run an aborted rollout's steps again, or measure Inconclusive metrics again"),
    ):
        parser = add(action, text)
        parser.add_argument("name", metavar="CANARY")
        parser.set_defaults(func=command(run_canary_action), action=action, full=False)

    undo = add("undo", "ModelPin: back to the previous stable pins (spec change; see --print for GitOps)")
    undo.add_argument("name", metavar="MODELPIN")
    undo.add_argument("--to-revision", help="a pin-set hash from status.stable or status.history")
    undo.add_argument(
        "--print", dest="print_only", action="store_true", help="print the manifest to commit; change nothing"
    )
    undo.set_defaults(func=command(run_undo))

    rollback = add("rollback", "TrainingRun: restart the trainer from an earlier checkpoint")
    rollback.add_argument("kind", metavar="trainingrun", help="trainingrun (tr)")
    rollback.add_argument("name", metavar="NAME")
    rollback.add_argument("--to-checkpoint", type=int, required=True, metavar="STEP")
    rollback.set_defaults(func=command(run_rollback))

    pin = add("pin", "ModelPin: change the revision pinned for one role (spec change)")
    pin.add_argument("name", metavar="MODELPIN")
    pin.add_argument("--role", required=True, choices=runbooks.ROLES)
    pin.add_argument("--revision", required=True)
    pin.add_argument("--model-name", dest="model_name", help="model name (to add a role)")
    pin.add_argument("--source", help="model source (to add a role)")
    pin.set_defaults(func=command(run_pin))

    downshift = add("downshift", "ModelPin: cap the fleet's mode for a while (manual downshift)")
    downshift.add_argument("name", metavar="MODELPIN")
    downshift.add_argument("--to", dest="mode", choices=MODES, help="richest mode allowed")
    downshift.add_argument("--for", dest="duration", help="how long, e.g. 10m, 1h")
    downshift.add_argument("--off", action="store_true", help="end a manual downshift now")
    downshift.set_defaults(func=command(run_downshift))

    stop = add("emergency-stop", "scale every ModelPin's ensembles to 0 and suspend every TrainingRun", every)
    stop.set_defaults(func=command(run_emergency_stop))
    resume = add("resume", "undo emergency-stop exactly (from the records it left)", every)
    resume.set_defaults(func=command(run_resume))

    restart = add(
        "restart",
        "ModelPin: rolling restart of its ensemble pods; TrainingRun: restart the trainer from its newest"
        " checkpoint (a manual rollback to that step: the next Job attempt resumes from it)",
    )
    restart.add_argument(
        "ref", metavar="[KIND/]NAME", help="a ModelPin or TrainingRun: mpin/fleet, tr ppo, or a bare name"
    )
    restart.add_argument("name", nargs="?", help=argparse.SUPPRESS)
    restart.set_defaults(func=command(run_restart))

    endpoint = argparse.ArgumentParser(add_help=False)
    endpoint.add_argument(
        "--url", help="the ensemble's URL (e.g. after kubectl port-forward); default: each pod, by proxy"
    )
    cache = subparsers.add_parser("cache", help="ensemble response cache")
    cache_commands = cache.add_subparsers(dest="cache_command", metavar="COMMAND", required=True)
    clear = cache_commands.add_parser(
        "clear", help="clear the response cache of a ModelPin's pods", parents=[conn, endpoint]
    )
    clear.add_argument("name", metavar="MODELPIN")
    clear.add_argument("--token", help=f"admin bearer token (default: ${ADMIN_TOKEN_ENV})")
    clear.set_defaults(func=command(run_cache_clear))

    health = add("health-check", "ModelPin: status plus each ensemble pod's /healthz and /readyz", endpoint)
    health.add_argument("name", metavar="MODELPIN")
    health.set_defaults(func=command(run_health_check))

    metrics = add("metrics-check", "scrape the operator's and the ensemble's /metrics; report key series")
    metrics.add_argument("--operator-url", help="the operator's metrics URL, e.g. http://127.0.0.1:8080")
    metrics.add_argument(
        "--operator-service",
        metavar="NAMESPACE/NAME:PORT",
        help="the operator's metrics Service by proxy, e.g. artisan-system/artisan-operator-metrics:metrics",
    )
    metrics.add_argument("--ensemble-url", help="an ensemble's URL")
    metrics.add_argument("--model-pin", help="a ModelPin whose ensemble pods are scraped by proxy")
    metrics.set_defaults(func=command(run_metrics_check))


# get


def children_of(client: CliClient, obj: Obj) -> tuple[list[Obj], Obj | None, Obj | None]:
    """(children, target ModelPin, routing ConfigMap) of one custom resource."""
    kind, meta = obj["kind"], obj["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    selector = runbooks.child_selector(kind, name)
    child_kinds = {
        "TrainingRun": ("Job", "Pod", "PersistentVolumeClaim", "ConfigMap", "Service"),
        "ModelPin": ("Deployment", "Pod", "Service", "ConfigMap"),
        "Canary": ("Deployment", "Service", "ConfigMap"),
        "ABExperiment": (),
    }[kind]
    children = [c for k in child_kinds for c in client.list_children(k, namespace, selector)]
    target = routing = None
    target_name = ((obj.get("spec") or {}).get("targetRef") or {}).get("name")
    if target_name:
        try:
            target = client.get_custom(KINDS_BY_NAME["ModelPin"].plural, namespace, target_name)
        except NotFoundError:
            target = None
        routing = client.read_config_map(namespace, routing_configmap_name(target_name))
    return children, target, routing


def render_tree(node: TreeNode, namespace: str | None = None) -> Tree:
    def label(n: TreeNode, top: bool = False) -> str:
        style = HEALTH_STYLE.get(n.health or "", "")
        status = f"[{style}]{n.status}[/{style}]" if style else n.status
        prefix = f"{namespace}/" if top and namespace else ""
        return f"[bold]{n.kind}[/bold] {prefix}{n.name}  {status}"

    tree = Tree(label(node, top=True))

    def add(parent: Tree, n: TreeNode) -> None:
        branch = parent.add(label(n))
        for child in n.children:
            add(branch, child)

    for child in node.children:
        add(tree, child)
    return tree


def run_get(args: argparse.Namespace) -> int:
    kinds: Sequence[Kind] = KINDS if args.kind is None else (runbooks.resolve_kind(args.kind),)
    out = console()
    with connected(args) as (client, namespace):
        ns = None if args.all_namespaces else namespace
        found = 0
        for kind in kinds:
            if args.name is not None:
                objects = [client.get_custom(kind.plural, namespace, args.name)]
            else:
                objects = client.list_custom(kind.plural, ns)
            for obj in objects:
                obj.setdefault("kind", kind.kind)
                children, target, routing = children_of(client, obj)
                node = runbooks.build_tree(obj, children, target=target, routing=routing)
                out.print(render_tree(node, obj["metadata"].get("namespace") if ns is None else None))
                found += 1
        if not found:
            where = "any namespace" if ns is None else f"namespace {namespace}"
            print(f"No resources found in {where}.", file=sys.stderr)
    return EXIT_READY


# status


def conditions_table(obj: Obj) -> Table:
    table = Table("TYPE", "STATUS", "REASON", "MESSAGE", "SINCE", box=None, pad_edge=False)
    for condition in (obj.get("status") or {}).get("conditions") or []:
        table.add_row(
            str(condition.get("type")),
            str(condition.get("status")),
            str(condition.get("reason") or ""),
            str(condition.get("message") or ""),
            str(condition.get("lastTransitionTime") or ""),
        )
    return table


def find_kind(client: CliClient, namespace: str, name: str, kinds: Sequence[Kind]) -> Kind:
    """The kind of the one object called ``name`` among ``kinds`` (for a bare NAME)."""
    found = []
    for kind in kinds:
        try:
            client.get_custom(kind.plural, namespace, name)
        except NotFoundError:
            continue
        found.append(kind)
    return runbooks.pick_kind(name, found, kinds)


def run_status(args: argparse.Namespace) -> int:
    given_kind, name = runbooks.parse_ref_or_name(args.ref, args.name)
    if args.timeout < 0 or args.interval <= 0:
        raise ActionError("--timeout must be ≥ 0 and --interval > 0")
    out = console()
    deadline = time.monotonic() + args.timeout
    last: runbooks.Verdict | None = None
    with connected(args) as (client, namespace):
        kind = given_kind or find_kind(client, namespace, name, KINDS)
        while True:
            try:
                obj = client.get_custom(kind.plural, namespace, name)
            except NotFoundError:
                if not args.watch:
                    raise
                obj = None
            verdict = (
                runbooks.assess_health(obj)
                if obj is not None
                else runbooks.Verdict("Progressing", "NotFound", f"{kind.singular} {name} does not exist yet")
            )
            if verdict != last:
                style = HEALTH_STYLE[verdict.health]
                out.print(
                    f"{kind.kind} {namespace}/{name}: [{style}]{verdict.health}[/{style}] "
                    f"({verdict.reason}) {verdict.message}"
                )
                if obj is not None and not args.watch:
                    out.print(conditions_table(obj))
                last = verdict
            if not args.watch or verdict.health in ("Ready", "Unhealthy"):
                return verdict.exit_code
            if time.monotonic() >= deadline:
                out.print(f"timed out after {args.timeout:g}s: still {verdict.health} ({verdict.reason})")
                return EXIT_NOT_READY
            time.sleep(min(args.interval, max(0.0, deadline - time.monotonic())) or args.interval)


# Manual actions.


def patch_and_report(
    client: CliClient, kind: Kind, namespace: str, name: str, patch: Obj, *, what: str
) -> int:
    client.patch_custom(kind.plural, namespace, name, patch)
    console().print(f"{kind.singular}/{name} in {namespace}: {what}")
    return EXIT_READY


def annotation_summary(patch: Obj) -> str:
    annotations = (patch.get("metadata") or {}).get("annotations") or {}
    return ", ".join(f"{k}={v}" if v is not None else f"{k} removed" for k, v in annotations.items())


def parse_canary_action(text: str) -> CanaryAction:
    for action in get_args(CanaryAction):
        if action == text:
            return action  # type: ignore[no-any-return]
    raise ActionError(f"unknown canary action {text!r}")


def run_canary_action(args: argparse.Namespace) -> int:
    kind = KINDS_BY_NAME["Canary"]
    action = parse_canary_action("promote-full" if args.action == "promote" and args.full else args.action)
    with connected(args) as (client, namespace):
        canary = client.get_custom(kind.plural, namespace, args.name)
        status = canary.get("status") or {}
        if action in ("promote", "promote-full", "abort") and status.get("phase") in (None, "Healthy"):
            raise ActionError(f"canary {args.name} has no rollout in progress (phase {status.get('phase')})")
        inconclusive = any(m.get("phase") == "Inconclusive" for m in status.get("metrics") or [])
        if action == "retry" and not status.get("abortedAt") and not inconclusive:
            raise ActionError(
                f"canary {args.name} is not aborted, nor paused on an Inconclusive metric: nothing to retry"
            )
        patch = runbooks.canary_action_patch(action, utc_now())
        return patch_and_report(
            client,
            kind,
            namespace,
            args.name,
            patch,
            what=f"requested {action} ({annotation_summary(patch)})",
        )


def run_undo(args: argparse.Namespace) -> int:
    kind = KINDS_BY_NAME["ModelPin"]
    with connected(args) as (client, namespace):
        pin = client.get_custom(kind.plural, namespace, args.name)
        plan = runbooks.undo_plan(pin, args.to_revision)
        if args.print_only:
            manifest = {
                "apiVersion": API_VERSION,
                "kind": kind.kind,
                "metadata": {"name": args.name, "namespace": namespace},
                "spec": plan.spec,
            }
            print(f"# ModelPin {namespace}/{args.name} back to revision {plan.revision}: commit this to git")
            print(yaml.safe_dump(manifest, sort_keys=False), end="")
            return EXIT_READY
        patch_and_report(
            client, kind, namespace, args.name, plan.patch, what=f"spec set back to revision {plan.revision}"
        )
        print(GITOPS_WARNING, file=sys.stderr)
        return EXIT_READY


def run_rollback(args: argparse.Namespace) -> int:
    kind = runbooks.resolve_kind(args.kind)
    if kind.kind != "TrainingRun":
        raise ActionError(f"rollback applies to trainingruns, not {kind.plural}")
    with connected(args) as (client, namespace):
        run = client.get_custom(kind.plural, namespace, args.name)
        patch = runbooks.rollback_patch(run, args.to_checkpoint, utc_now())
        return patch_and_report(
            client,
            kind,
            namespace,
            args.name,
            patch,
            what=f"requested rollback ({annotation_summary(patch)})",
        )


def run_pin(args: argparse.Namespace) -> int:
    kind = KINDS_BY_NAME["ModelPin"]
    with connected(args) as (client, namespace):
        pin = client.get_custom(kind.plural, namespace, args.name)
        patch = runbooks.pin_patch(pin, args.role, args.revision, name=args.model_name, source=args.source)
        patch_and_report(
            client, kind, namespace, args.name, patch, what=f"{args.role} pinned to revision {args.revision}"
        )
        print(GITOPS_WARNING, file=sys.stderr)
        return EXIT_READY


def run_downshift(args: argparse.Namespace) -> int:
    if args.off == (args.mode is not None):
        raise ActionError("give either --to MODE --for DURATION or --off")
    patch = runbooks.downshift_patch(None if args.off else args.mode, args.duration)
    kind = KINDS_BY_NAME["ModelPin"]
    with connected(args) as (client, namespace):
        client.get_custom(kind.plural, namespace, args.name)  # a clear "not found" before patching
        return patch_and_report(client, kind, namespace, args.name, patch, what=annotation_summary(patch))


RESTARTABLE = ("ModelPin", "TrainingRun")


def run_restart(args: argparse.Namespace) -> int:
    given_kind, name = runbooks.parse_ref_or_name(args.ref, args.name)
    if given_kind is not None and given_kind.kind not in RESTARTABLE:
        raise ActionError(f"restart applies to modelpins and trainingruns, not {given_kind.plural}")
    with connected(args) as (client, namespace):
        kind = given_kind or find_kind(client, namespace, name, [KINDS_BY_NAME[k] for k in RESTARTABLE])
        obj = client.get_custom(kind.plural, namespace, name)
        if kind.kind == "TrainingRun":
            patch, step = runbooks.training_restart_patch(obj, utc_now())
            what = f"restart from the checkpoint at step {step} requested ({annotation_summary(patch)})"
        else:
            patch = runbooks.restart_patch(utc_now())
            what = f"restart requested ({annotation_summary(patch)})"
        return patch_and_report(client, kind, namespace, name, patch, what=what)


STOPPABLE = ("ModelPin", "TrainingRun")


def run_emergency_stop(args: argparse.Namespace) -> int:
    return stop_or_resume(args, stop=True)


def run_resume(args: argparse.Namespace) -> int:
    return stop_or_resume(args, stop=False)


def stop_or_resume(args: argparse.Namespace, *, stop: bool) -> int:
    table = Table("KIND", "NAMESPACE", "NAME", "RESULT", box=None, pad_edge=False)
    now = utc_now()
    changed = 0
    with connected(args) as (client, namespace):
        ns = None if args.all_namespaces else namespace
        for kind_name in STOPPABLE:
            kind = KINDS_BY_NAME[kind_name]
            for obj in client.list_custom(kind.plural, ns):
                meta = obj["metadata"]
                if stop:
                    plan = runbooks.emergency_stop_patch(kind_name, obj, now)
                    patch, note = plan.patch, plan.note
                else:
                    patch = runbooks.resume_patch(kind_name, obj)
                    note = (
                        "restored as before emergency-stop"
                        if patch
                        else "no emergency-stop record: untouched"
                    )
                if patch is not None:
                    client.patch_custom(kind.plural, meta["namespace"], meta["name"], patch)
                    changed += 1
                table.add_row(kind_name, meta["namespace"], meta["name"], note)
    out = console()
    out.print(table)
    verb = "stopped" if stop else "resumed"
    out.print(f"{changed} object(s) {verb}")
    return EXIT_READY


# Endpoints: health, cache, metrics.


@dataclass(frozen=True)
class Target:
    name: str
    endpoint: Endpoint


def ensemble_targets(client: CliClient, namespace: str, pin: str, url: str | None) -> list[Target]:
    """``--url`` or each running ensemble pod of the ModelPin, through the API server's pod proxy."""
    if url is not None:
        return [Target(url, DirectEndpoint(url))]
    client.get_custom(KINDS_BY_NAME["ModelPin"].plural, namespace, pin)
    selector = f"{owner_label_key('ModelPin')}={pin},app.kubernetes.io/component=ensemble"
    pods = [
        p
        for p in client.list_children("Pod", namespace, selector)
        if (p.get("status") or {}).get("phase") == "Running"
    ]
    return [
        Target(
            p["metadata"]["name"],
            client.proxy_endpoint("pod", namespace, p["metadata"]["name"], str(HTTP_PORT)),
        )
        for p in pods
    ]


def try_request(target: Target, method: str, path: str, **kwargs: Any) -> HttpReply | str:
    """The reply, or why there is none (unreachable)."""
    try:
        return target.endpoint.request(method, path, **kwargs)
    except ClusterError as error:
        return str(error)


def run_health_check(args: argparse.Namespace) -> int:
    out = console()
    with connected(args) as (client, namespace):
        pin = None
        if args.url is None:
            pin = client.get_custom(KINDS_BY_NAME["ModelPin"].plural, namespace, args.name)
        targets = ensemble_targets(client, namespace, args.name, args.url)
    worst = EXIT_READY
    if pin is not None:
        verdict = runbooks.assess_health(pin)
        style = HEALTH_STYLE[verdict.health]
        out.print(f"ModelPin {namespace}/{args.name}: [{style}]{verdict.health}[/{style}] ({verdict.reason})")
        worst = combine(worst, EXIT_UNHEALTHY if verdict.health == "Unhealthy" else EXIT_READY)
    if not targets:
        out.print(
            f"no running ensemble pod of ModelPin {args.name} (scaled to 0, emergency-stopped, or not"
            f" scheduled): nothing serves; reach one directly with --url after kubectl port-forward"
            f" svc/{ensemble_service_name(args.name)} {HTTP_PORT}"
        )
        return EXIT_UNHEALTHY
    table = Table("TARGET", "LIVE", "READY", "DETAIL", box=None, pad_edge=False)
    for target in targets:
        live = try_request(target, "GET", "/healthz")
        if isinstance(live, str):
            table.add_row(target.name, "unreachable", "-", live)
            worst = combine(worst, EXIT_NOT_READY)
            continue
        ready = try_request(target, "GET", "/readyz")
        detail = ""
        is_ready = isinstance(ready, HttpReply) and ready.status == 200
        if isinstance(ready, HttpReply):
            try:
                body = ready.json()
                missing = body.get("missing") or []
                detail = f"loaded {', '.join(body.get('loaded') or []) or 'nothing'}" + (
                    f"; missing {', '.join(missing)}" if missing else ""
                )
            except (ValueError, AttributeError):
                detail = ready.body[:120]
        else:
            detail = ready
        table.add_row(
            target.name, "yes" if live.ok else f"HTTP {live.status}", "yes" if is_ready else "no", detail
        )
        if not (live.ok and is_ready):
            worst = EXIT_UNHEALTHY
    out.print(table)
    return worst


def run_cache_clear(args: argparse.Namespace) -> int:
    token = args.token or os.environ.get(ADMIN_TOKEN_ENV)
    if not token:
        raise ActionError(
            f"the ensemble's admin endpoints need a bearer token: --token or ${ADMIN_TOKEN_ENV}"
        )
    out = console()
    with connected(args) as (client, namespace):
        targets = ensemble_targets(client, namespace, args.name, args.url)
    if not targets:
        out.print(f"no running ensemble pod of ModelPin {args.name}: nothing to clear")
        return EXIT_NOT_READY
    worst = EXIT_READY
    table = Table("TARGET", "RESULT", box=None, pad_edge=False)
    for target in targets:
        # Not Authorization: through the API server's proxy that header authenticates to the API
        # server and never reaches the pod (kubernetes/kubernetes#38775); the ensemble accepts this one.
        reply = try_request(target, "POST", "/admin/cache/clear", headers={ADMIN_TOKEN_HEADER: token})
        if isinstance(reply, str):
            table.add_row(target.name, f"unreachable: {reply}")
            worst = combine(worst, EXIT_NOT_READY)
        elif reply.ok:
            table.add_row(target.name, f"cleared {reply.json().get('removed', '?')} entries")
        else:
            hint = ""
            if reply.status == 401:
                hint = f" (the token was sent as {ADMIN_TOKEN_HEADER}: check --token or ${ADMIN_TOKEN_ENV})"
            table.add_row(target.name, f"HTTP {reply.status}: {reply.body[:200]}{hint}")
            worst = EXIT_UNHEALTHY
    out.print(table)
    return worst


def scrape(target: Target) -> list[runbooks.Sample] | str:
    reply = try_request(target, "GET", "/metrics")
    if isinstance(reply, str):
        return reply
    if not reply.ok:
        return f"HTTP {reply.status}: {reply.body[:200]}"
    try:
        return runbooks.parse_exposition(reply.body)
    except ValueError as error:
        return f"not a Prometheus exposition: {error}"


def metrics_rows(
    table: Table,
    source: str,
    samples: Sequence[runbooks.Sample],
    wanted: Sequence[str],
    required: Sequence[str],
) -> int:
    code = EXIT_READY
    for summary in runbooks.summarize_series(samples, wanted):
        if not summary.found:
            table.add_row(source, summary.name, "absent", "")
            if summary.name in required:
                code = EXIT_UNHEALTHY
            continue
        total = sum(s.value for s in summary.samples)
        detail = ", ".join(
            (",".join(f"{k}={v}" for k, v in s.labels.items()) + f"={s.value:g}") if s.labels else ""
            for s in summary.samples[:6]
        ).strip(", ")
        table.add_row(source, summary.name, f"{total:g}", detail)
        # Without its primary model an ensemble serves nothing (the other roles have fallbacks).
        if summary.name == runbooks.HEALTH_SERIES and "primary" in runbooks.roles_down(summary.samples):
            code = EXIT_UNHEALTHY
    return code


def run_metrics_check(args: argparse.Namespace) -> int:
    sources: list[tuple[Target, Sequence[str], Sequence[str]]] = []
    if args.operator_url:
        sources.append(
            (
                Target(f"operator {args.operator_url}", DirectEndpoint(args.operator_url)),
                OPERATOR_SERIES,
                OPERATOR_SERIES[:2],
            )
        )
    if args.ensemble_url:
        sources.append(
            (
                Target(f"ensemble {args.ensemble_url}", DirectEndpoint(args.ensemble_url)),
                ENSEMBLE_SERIES,
                ENSEMBLE_REQUIRED,
            )
        )
    if args.operator_service or args.model_pin:
        with connected(args) as (client, namespace):
            if args.operator_service:
                ns, _, rest = args.operator_service.rpartition("/")
                service, _, port = rest.partition(":")
                if not service or not port:
                    raise ActionError("--operator-service must be NAMESPACE/NAME:PORT")
                endpoint = client.proxy_endpoint("service", ns or namespace, service, port)
                sources.append(
                    (
                        Target(f"operator {endpoint.description}", endpoint),
                        OPERATOR_SERIES,
                        OPERATOR_SERIES[:2],
                    )
                )
            if args.model_pin:
                for target in ensemble_targets(client, namespace, args.model_pin, None):
                    sources.append((target, ENSEMBLE_SERIES, ENSEMBLE_REQUIRED))
    if not sources:
        raise ActionError(
            "name something to scrape: --operator-url, --operator-service, --ensemble-url or --model-pin"
        )
    table = Table("SOURCE", "SERIES", "TOTAL", "SAMPLES", box=None, pad_edge=False)
    worst = EXIT_READY
    for target, wanted, required in sources:
        samples = scrape(target)
        if isinstance(samples, str):
            table.add_row(target.name, "-", "unreachable", samples)
            worst = combine(worst, EXIT_NOT_READY)
            continue
        worst = combine(worst, metrics_rows(table, target.name, samples, wanted, required))
    console().print(table)
    return worst
