#!/usr/bin/env python3
"""Render and lint a Helm chart with Helm's own Go engine (helm-python-sdk).

Usage: render_chart.py CHART_DIR [--values-json JSON] [--namespace NS] [--release NAME]

Prints the rendered manifests as one multi-document YAML stream, each document headed by a
`# Source: <template>` comment like `helm template`, CRDs from the chart's crds/ first.
Lint findings go to stderr. Exit status: 0 ok, 1 render / schema / lint error,
3 helm_python is not installed (callers skip).
"""

import argparse
import json
import sys

try:
    import helm_python as helm
except ImportError as err:  # pragma: no cover - depends on the environment
    print(f"helm_python is not importable: {err}", file=sys.stderr)
    sys.exit(3)

SEVERITY = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("chart")
    parser.add_argument("--values-json", default="{}")
    parser.add_argument("--namespace", default="subnet-system")
    parser.add_argument("--release", default="subnet-operator")
    args = parser.parse_args()
    values = json.loads(args.values_json)

    report = helm.lint(args.chart, values, strict=True, namespace=args.namespace)
    problems = [m for m in report.get("messages") or [] if m.get("severity", 0) >= 2]
    for message in report.get("messages") or []:
        severity = SEVERITY.get(message.get("severity", 0), "?")
        print(f"lint {severity}: {message.get('path')}: {message.get('error')}", file=sys.stderr)
    for error in report.get("errors") or []:
        print(f"lint error: {error}", file=sys.stderr)
    if problems or report.get("errors"):
        return 1

    try:
        with helm.Chart.load(args.chart) as chart:
            chart.validate_schema(values)
            crds = chart.crds
            manifests = chart.render(
                values=values, name=args.release, namespace=args.namespace, is_install=True
            )
    except helm.HelmError as err:
        print(f"render failed: {err}", file=sys.stderr)
        return 1

    for crd in crds:
        print(f"---\n# Source: {crd.get('filename') or crd.get('name')}")
        print(crd["data"].rstrip())
    for path in sorted(manifests):
        text = manifests[path].strip()
        if not text or path.endswith("NOTES.txt"):
            continue
        print(f"---\n# Source: {path}")
        print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
