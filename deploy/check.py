#!/usr/bin/env python3
"""Offline checks of deploy/: alert rules, rendered manifests, the Grafana dashboard.

Called by deploy/check (which installs PyYAML and kubernetes-validate into a virtualenv first);
each subcommand prints what it checked and exits 1 with every problem it found.

  check.py sync-rules [--check]   write (or compare) base/prometheusrule.yaml from alerts.yaml
  check.py rules                  alert metadata, runbook anchors, metric names, test coverage
  check.py manifests RENDERED     the output of `kustomize build deploy/base`
  check.py dashboard [RULES_OUT]  grafana/vapi-reconciler.json (and its queries as rules)
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import yaml

DEPLOY = Path(__file__).resolve().parent
ROOT = DEPLOY.parent
ALERTS = DEPLOY / "prometheus" / "alerts.yaml"
ALERTS_TEST = DEPLOY / "prometheus" / "alerts_test.yaml"
PROMETHEUS_RULE = DEPLOY / "base" / "prometheusrule.yaml"
SECRET_EXAMPLE = DEPLOY / "base" / "secret.example.yaml"
DASHBOARD = DEPLOY / "grafana" / "vapi-reconciler.json"
METRICS = DEPLOY / "metrics.txt"
RUNBOOK = ROOT / "docs" / "runbook.md"

# Kubernetes versions whose schemas the manifests must satisfy (strict: no unknown fields).
KUBERNETES_VERSIONS = ["1.29.0", "1.37.0"]
# Series Prometheus makes itself, not exported by the binary.
SYNTHETIC_METRICS = {"up"}
SEVERITIES = {"critical", "warning", "info"}
JOB = "vapi-reconciler"


class Problems:
    def __init__(self, what: str):
        self.what = what
        self.items: list[str] = []

    def add(self, message: str) -> None:
        self.items.append(message)

    def check(self, condition: bool, message: str) -> bool:
        if not condition:
            self.add(message)
        return condition

    def finish(self, summary: str) -> int:
        if self.items:
            print(f"{self.what}: {len(self.items)} problem(s)", file=sys.stderr)
            for item in self.items:
                print(f"  - {item}", file=sys.stderr)
            return 1
        print(f"{self.what}: ok ({summary})")
        return 0


# --- metric names -------------------------------------------------------------------------------


def exported_metrics() -> set[str]:
    names = [line.strip() for line in METRICS.read_text().splitlines() if line.strip()]
    bad = [n for n in names if not re.fullmatch(r"[a-zA-Z_:][a-zA-Z0-9_:]*", n)]
    if bad:
        raise SystemExit(f"{METRICS}: not metric names: {bad}")
    return set(names)


PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring",
    "group_left", "group_right", "inf", "nan", "atan2", "start", "end",
}


def promql_metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small lexer, not a parser)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`', '""', expr)  # strings
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # ranges and subqueries
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![0-9A-Za-z_:.$])[A-Za-z_:][A-Za-z0-9_:]*", s):
        name = m.group(0)
        rest = s[m.end():].lstrip()
        if rest.startswith("(") or name.lower() in PROMQL_KEYWORDS:
            continue  # a function, an aggregation or a keyword
        names.add(name)
    return names


def unknown_metrics(names: set[str], exported: set[str]) -> set[str]:
    """Names neither exported nor a histogram's series (_bucket/_sum/_count of a *_seconds)."""
    unknown = set()
    for name in names:
        if name in exported or name in SYNTHETIC_METRICS:
            continue
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        if base != name and base in exported and base.endswith("_seconds"):
            continue
        unknown.add(name)
    return unknown


# --- alert rules --------------------------------------------------------------------------------

PROMETHEUS_RULE_HEADER = """\
# GENERATED from deploy/prometheus/alerts.yaml by `deploy/check.py sync-rules`: edit that file,
# then run the command. deploy/check fails when this file and alerts.yaml differ.
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: vapi-reconciler
  labels:
    app.kubernetes.io/name: vapi-reconciler
    app.kubernetes.io/component: controller
    # A Prometheus Operator selects rules by label (kube-prometheus-stack: `release: <name>`
    # unless ruleSelectorNilUsesHelmValues=false); add yours in an overlay.
spec:
"""


def generated_prometheus_rule() -> str:
    """alerts.yaml's `groups:` section, comments included, under the PrometheusRule's spec."""
    lines = ALERTS.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("groups:"))
    body = ["  " + line if line.strip() else "" for line in lines[start:]]
    return PROMETHEUS_RULE_HEADER + "\n".join(body) + "\n"


def cmd_sync_rules(check: bool) -> int:
    want = generated_prometheus_rule()
    have = PROMETHEUS_RULE.read_text() if PROMETHEUS_RULE.exists() else ""
    if check:
        p = Problems("PrometheusRule")
        same_text = have == want
        p.check(
            same_text,
            f"{PROMETHEUS_RULE.relative_to(ROOT)} is not generated from the current alerts.yaml; "
            "run `python3 deploy/check.py sync-rules`",
        )
        if have:
            rule = yaml.safe_load(have)
            p.check(
                rule.get("spec", {}).get("groups") == yaml.safe_load(ALERTS.read_text())["groups"],
                "the PrometheusRule's spec.groups differ from alerts.yaml's groups",
            )
        return p.finish("spec.groups identical to deploy/prometheus/alerts.yaml")
    if have != want:
        PROMETHEUS_RULE.write_text(want)
        print(f"wrote {PROMETHEUS_RULE.relative_to(ROOT)}")
    else:
        print(f"{PROMETHEUS_RULE.relative_to(ROOT)} is up to date")
    return 0


def markdown_anchors(text: str) -> set[str]:
    """GitHub-style anchors of the Markdown headings in text."""
    anchors = set()
    in_code = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_code = not in_code
        m = None if in_code else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            title = re.sub(r"[`*_]", "", m.group(1)).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", title).replace(" ", "-"))
    return anchors


def cmd_rules() -> int:
    p = Problems("alert rules")
    exported = exported_metrics()
    anchors = markdown_anchors(RUNBOOK.read_text()) if RUNBOOK.exists() else set()
    p.check(RUNBOOK.exists(), f"{RUNBOOK.relative_to(ROOT)} is missing")
    groups = yaml.safe_load(ALERTS.read_text())["groups"]
    alerts = {}
    for group in groups:
        for rule in group["rules"]:
            name = rule.get("alert")
            if not p.check(name is not None, f"group {group['name']}: a rule that is not an alert"):
                continue
            p.check(name not in alerts, f"{name}: defined twice")
            alerts[name] = rule
            p.check(bool(rule.get("for")), f"{name}: no `for`")
            severity = rule.get("labels", {}).get("severity")
            p.check(severity in SEVERITIES, f"{name}: severity {severity!r} not in {sorted(SEVERITIES)}")
            ann = rule.get("annotations", {})
            for key in ("summary", "description", "runbook_url"):
                p.check(bool(ann.get(key)), f"{name}: no annotation {key}")
            anchor = name.lower()
            p.check(
                ann.get("runbook_url") == f"docs/runbook.md#{anchor}",
                f"{name}: runbook_url should be docs/runbook.md#{anchor}",
            )
            p.check(anchor in anchors, f"{name}: docs/runbook.md has no section #{anchor}")
            unknown = unknown_metrics(promql_metric_names(rule["expr"]), exported)
            p.check(not unknown, f"{name}: expr uses metrics not in deploy/metrics.txt: {sorted(unknown)}")
            if "up" in promql_metric_names(rule["expr"]):
                p.check(f'job="{JOB}"' in rule["expr"], f'{name}: `up` without job="{JOB}"')

    tests = yaml.safe_load(ALERTS_TEST.read_text())
    p.check(
        tests.get("rule_files") == ["alerts.yaml"],
        "alerts_test.yaml must test rule_files: [alerts.yaml]",
    )
    firing = {name: 0 for name in alerts}
    quiet = {name: 0 for name in alerts}
    for test in tests.get("tests", []):
        for case in test.get("alert_rule_test", []):
            name = case["alertname"]
            if not p.check(name in alerts, f"alerts_test.yaml tests an unknown alert {name}"):
                continue
            if case.get("exp_alerts"):
                firing[name] += 1
                for exp in case["exp_alerts"]:
                    p.check(
                        "severity" in exp.get("exp_labels", {}),
                        f"alerts_test.yaml: a firing case of {name} does not check severity",
                    )
            else:
                quiet[name] += 1
    for name in alerts:
        p.check(firing[name] > 0, f"{name}: no test where it fires")
        p.check(quiet[name] > 0, f"{name}: no test where it stays quiet")
    cases = sum(firing.values()) + sum(quiet.values())
    return p.finish(
        f"{len(alerts)} alerts with severity, summary, description and a runbook section; "
        f"{cases} test cases, each alert both firing and quiet; metrics all in metrics.txt"
    )


# --- rendered manifests -------------------------------------------------------------------------


def selector_matches(selector: dict, labels: dict) -> bool:
    match = selector.get("matchLabels", selector)
    return bool(match) and all(labels.get(k) == v for k, v in match.items())


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    total, rest = 0.0, text.strip()
    for value, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", rest):
        total += float(value) * units[unit]
    if not re.fullmatch(r"(\d+(?:\.\d+)?(ms|s|m|h))+", rest):
        raise ValueError(f"cannot read duration {text!r}")
    return total


def validate_schema(p: Problems, doc: dict, where: str) -> None:
    import kubernetes_validate

    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as e:
            path = "/".join(str(x) for x in e.path)
            p.add(f"{where}: Kubernetes {version} schema: {path}: {e.message}")
        except kubernetes_validate.SchemaNotFoundError as e:
            p.add(f"{where}: {e.message}")


def cmd_manifests(rendered: Path) -> int:
    p = Problems("manifests")
    docs = [d for d in yaml.safe_load_all(rendered.read_text()) if d is not None]
    by_kind: dict[str, list[dict]] = {}
    for doc in docs:
        kind, api = doc.get("kind"), doc.get("apiVersion")
        name = doc.get("metadata", {}).get("name")
        where = f"{kind}/{name}"
        if not p.check(bool(kind and api and name), f"a document without apiVersion, kind or name: {doc}"):
            continue
        by_kind.setdefault(kind, []).append(doc)
        if api == "monitoring.coreos.com/v1":
            p.check(kind in ("ServiceMonitor", "PrometheusRule"), f"{where}: unexpected CRD kind")
            p.check(isinstance(doc.get("spec"), dict), f"{where}: no spec")
        else:
            validate_schema(p, doc, where)
        if kind != "Namespace":
            p.check(bool(doc["metadata"].get("namespace")), f"{where}: no namespace")

    def one(kind: str) -> dict:
        items = by_kind.get(kind, [])
        p.check(len(items) == 1, f"expected one {kind}, found {len(items)}")
        return items[0] if items else {}

    deploy, service, monitor = one("Deployment"), one("Service"), one("ServiceMonitor")
    rule, config, pdb = one("PrometheusRule"), one("ConfigMap"), one("PodDisruptionBudget")
    one("ServiceAccount")
    p.check("Secret" not in by_kind, "the base must not render a Secret (secret.example.yaml is applied by hand)")
    if not (deploy and service and monitor and rule and config and pdb):
        return p.finish("")

    spec = deploy["spec"]
    pod = spec["template"]["spec"]
    pod_labels = spec["template"]["metadata"]["labels"]
    p.check(spec.get("replicas") == 2, "Deployment: replicas should be 2")
    p.check(selector_matches(spec["selector"], pod_labels), "Deployment: selector does not match the pod labels")
    p.check(selector_matches(service["spec"]["selector"], pod_labels), "Service: selector does not match the pods")
    p.check(selector_matches(pdb["spec"]["selector"], pod_labels), "PodDisruptionBudget: selector does not match the pods")
    p.check(pdb["spec"].get("minAvailable") == 1, "PodDisruptionBudget: minAvailable should be 1")
    p.check(pod.get("automountServiceAccountToken") is False, "pod: the controller needs no Kubernetes API token")

    containers = {c["name"]: c for c in pod["containers"]}
    inits = {c["name"]: c for c in pod.get("initContainers", [])}
    main = containers.get("vapi-reconciler", {})
    migrate = inits.get("migrate", {})
    p.check(bool(main), "Deployment: no container vapi-reconciler")
    p.check(migrate.get("args") == ["migrate"], "Deployment: initContainer migrate should run `vapi-reconciler migrate`")
    p.check(main.get("args") == ["run"], "Deployment: the container should run `vapi-reconciler run`")

    # Termination grace must outlast one Vapi call, so in-flight writes finish on SIGTERM.
    settings = config.get("data", {})
    timeout = duration_seconds(settings.get("VAPI_REQUEST_TIMEOUT", "30s"))
    grace = pod.get("terminationGracePeriodSeconds", 30)
    p.check(grace > timeout, f"terminationGracePeriodSeconds {grace} must exceed VAPI_REQUEST_TIMEOUT ({timeout:g}s)")
    p.check(
        settings.get("LEADER_ELECTION_NAME", JOB) == JOB,
        f"LEADER_ELECTION_NAME must stay {JOB!r}: the alerts select leader_election_master_status{{name={JOB!r}}}",
    )
    p.check(settings.get("LOG_FORMAT") == "json", "ConfigMap: LOG_FORMAT should be json")
    p.check(
        settings.get("LISTEN_ADDR", "0.0.0.0:8080").endswith(":8080"),
        "ConfigMap: LISTEN_ADDR must keep port 8080 (probes, Service and ServiceMonitor use it)",
    )

    pod_sc = pod.get("securityContext", {})
    p.check(pod_sc.get("runAsNonRoot") is True, "pod: runAsNonRoot")
    p.check(pod_sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "pod: seccompProfile RuntimeDefault")
    example = yaml.safe_load(SECRET_EXAMPLE.read_text())
    secret_name = example["metadata"]["name"]
    secret_keys = set(example.get("stringData", {})) | set(example.get("data", {}))
    config_name = config["metadata"]["name"]

    for cname, c in list(containers.items()) + list(inits.items()):
        sc = c.get("securityContext", {})
        where = f"container {cname}"
        p.check(sc.get("runAsNonRoot") is True, f"{where}: runAsNonRoot")
        p.check(sc.get("runAsUser") == 65532, f"{where}: runAsUser 65532")
        p.check(sc.get("readOnlyRootFilesystem") is True, f"{where}: readOnlyRootFilesystem")
        p.check(sc.get("allowPrivilegeEscalation") is False, f"{where}: allowPrivilegeEscalation false")
        p.check(sc.get("capabilities", {}).get("drop") == ["ALL"], f"{where}: capabilities drop ALL")
        p.check(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", f"{where}: seccompProfile RuntimeDefault")
        res = c.get("resources", {})
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                p.check(r in res.get(kind, {}), f"{where}: no {kind}.{r}")
        env = {e["name"]: e for e in c.get("env", [])}
        p.check("DATABASE_URL" in env, f"{where}: no DATABASE_URL")
        for e in env.values():
            ref = e.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                p.check(ref["name"] == secret_name, f"{where}: env {e['name']} uses Secret {ref['name']}, not {secret_name}")
                p.check(ref["key"] in secret_keys, f"{where}: env {e['name']} uses key {ref['key']} missing from secret.example.yaml")
        for src in c.get("envFrom", []):
            if "configMapRef" in src:
                p.check(src["configMapRef"]["name"] == config_name, f"{where}: envFrom a ConfigMap that is not rendered")
        for key, value in env.items():
            p.check("value" not in value or not re.search(r"(?i)key|password|secret", key) or key.endswith("_FILE"),
                    f"{where}: {key} looks secret but is set in clear")

    env = {e["name"]: e for e in main.get("env", [])}
    p.check(
        env.get("POD_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "metadata.name",
        "container: POD_NAME should come from the downward API (metadata.name)",
    )
    mounts = {m["mountPath"]: m for m in main.get("volumeMounts", [])}
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for var in ("VAPI_PRIVATE_KEY_FILE", "VAPI_RECONCILER_ENCRYPTION_KEYS_FILE", "ADMIN_TOKEN_FILE"):
        path = env.get(var, {}).get("value", "")
        p.check(path.startswith("/var/run/secrets/vapi-reconciler/"), f"container: {var} should be under /var/run/secrets/vapi-reconciler/")
        mount = mounts.get(str(Path(path).parent))
        if not p.check(mount is not None, f"container: nothing mounted at {Path(path).parent} for {var}"):
            continue
        p.check("subPath" not in mount, f"container: {var}'s mount uses subPath, so a rotated Secret never reaches the pod")
        vol = volumes.get(mount["name"], {}).get("secret", {})
        p.check(vol.get("secretName") == secret_name, f"container: {var} is not from Secret {secret_name}")
        items = {i["path"]: i["key"] for i in vol.get("items", [])}
        key = items.get(Path(path).name)
        p.check(key in secret_keys, f"container: {var} maps to Secret key {key!r}, missing from secret.example.yaml")

    port = {pt.get("name"): pt for pt in main.get("ports", [])}.get("http-metrics")
    p.check(port is not None and port["containerPort"] == 8080, "container: port 8080 named http-metrics")
    for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        get = main.get(probe, {}).get("httpGet", {})
        p.check(get.get("path") == path and get.get("port") in (8080, "http-metrics"), f"container: {probe} on {path}")

    svc_ports = {pt.get("name"): pt for pt in service["spec"]["ports"]}
    p.check("http-metrics" in svc_ports and svc_ports["http-metrics"]["port"] == 8080, "Service: port 8080 named http-metrics")
    p.check(service["metadata"]["name"] == JOB, f"Service: name must be {JOB!r} (the ServiceMonitor's job label)")
    mspec = monitor["spec"]
    p.check(selector_matches(mspec.get("selector", {}), service["metadata"].get("labels", {})), "ServiceMonitor: selector does not match the Service")
    endpoints = mspec.get("endpoints", [])
    p.check(
        any(e.get("port") == "http-metrics" and e.get("path") == "/metrics" for e in endpoints),
        "ServiceMonitor: no endpoint on port http-metrics, path /metrics",
    )
    p.check("jobLabel" not in mspec, "ServiceMonitor: jobLabel would rename the job the alerts select")
    p.check(
        rule["spec"].get("groups") == yaml.safe_load(ALERTS.read_text())["groups"],
        "PrometheusRule: rendered groups differ from alerts.yaml",
    )

    # The example Secret: valid, and nothing in it that could be a real secret.
    validate_schema(p, example, "secret.example.yaml")
    for key, value in example.get("stringData", {}).items():
        p.check("REPLACE" in value, f"secret.example.yaml: {key} is not an obvious placeholder")

    kinds = ", ".join(sorted(f"{k}" for k in by_kind))
    versions = " and ".join(KUBERNETES_VERSIONS)
    return p.finish(f"{len(docs)} documents ({kinds}); strict schemas of Kubernetes {versions}; wiring and security settings")


# --- Grafana dashboard ---------------------------------------------------------------------------


def panels_of(dashboard: dict):
    for panel in dashboard.get("panels", []):
        yield panel
        yield from panel.get("panels", [])  # collapsed rows


GRAFANA_VARIABLES = {"$__rate_interval": "2m", "$__interval": "1m", "$__range": "1h"}


def cmd_dashboard(rules_out: Path | None) -> int:
    """Checks the dashboard; with rules_out, also writes its queries as recording rules there,
    so `promtool check rules` can parse every query."""
    p = Problems("dashboard")
    recording = []
    exported = exported_metrics()
    dash = json.loads(DASHBOARD.read_text())
    p.check(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36, "schemaVersion should be >= 36")
    for key in ("uid", "title"):
        p.check(bool(dash.get(key)), f"no {key}")
    variables = {v["name"]: v for v in dash.get("templating", {}).get("list", [])}
    p.check(variables.get("datasource", {}).get("type") == "datasource", "no datasource variable")
    ids, used, queries = set(), set(), 0
    for panel in panels_of(dash):
        pid, title = panel.get("id"), panel.get("title", "?")
        p.check(pid not in ids, f"panel id {pid} used twice")
        ids.add(pid)
        p.check("gridPos" in panel, f"panel {title!r}: no gridPos")
        if panel.get("type") == "row":
            continue
        ds = panel.get("datasource", {})
        p.check(ds.get("uid") == "${datasource}", f"panel {title!r}: datasource should be ${{datasource}}")
        targets = panel.get("targets", [])
        p.check(bool(targets), f"panel {title!r}: no queries")
        for t in targets:
            expr = t.get("expr", "")
            if not p.check(bool(expr), f"panel {title!r}: a target without expr"):
                continue
            queries += 1
            promql = expr
            for var, value in GRAFANA_VARIABLES.items():
                promql = promql.replace(var, value)
            p.check("$" not in promql, f"panel {title!r}: unknown Grafana variable in {expr}")
            recording.append({"record": f"dashboard:panel{pid}:{t.get('refId', 'A').lower()}", "expr": promql})
            p.check(expr.count("(") == expr.count(")") and expr.count("{") == expr.count("}"),
                    f"panel {title!r}: unbalanced brackets in {expr}")
            names = promql_metric_names(expr)
            p.check(bool(names), f"panel {title!r}: no metric in {expr}")
            used |= names
            unknown = unknown_metrics(names, exported)
            p.check(not unknown, f"panel {title!r}: metrics not in deploy/metrics.txt: {sorted(unknown)}")
    if rules_out is not None:
        rules_out.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": recording}]}, sort_keys=False))
    bases = {re.sub(r"_(bucket|sum|count)$", "", n) if n not in exported else n for n in used}
    unused = sorted(exported - bases)
    if unused:
        print(f"dashboard: metrics shown nowhere: {', '.join(unused)}")
    return p.finish(f"{len(ids)} panels, {queries} queries, every metric in deploy/metrics.txt")


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__, file=sys.stderr)
        return 2
    cmd, args = argv[0], argv[1:]
    if cmd == "sync-rules":
        return cmd_sync_rules(check="--check" in args)
    if cmd == "rules":
        return cmd_rules()
    if cmd == "manifests" and len(args) == 1:
        return cmd_manifests(Path(args[0]))
    if cmd == "dashboard" and len(args) <= 1:
        return cmd_dashboard(Path(args[0]) if args else None)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
