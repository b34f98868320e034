#!/usr/bin/env python3
"""Known-vulnerability audit of the installed dependencies with pip-audit, for CI.

Tries the OSV service, then PyPI's. Exit 1 when a vulnerability is found (CI fails); exit 0 with a loud
warning when no vulnerability service can be reached (offline CI must not fail for that, but it must not
pretend the audit passed either). Usage: .ci/audit.py [path/to/pip-audit]
"""
from __future__ import annotations

import json
import subprocess
import sys

PIP_AUDIT = sys.argv[1] if len(sys.argv) > 1 else "pip-audit"


def run(service: str):
    """(vulnerable packages, audited count, skipped count), or None when the service could not be used."""
    try:
        proc = subprocess.run([PIP_AUDIT, "--local", "--vulnerability-service", service, "--format", "json",
                               "--progress-spinner", "off"], capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"audit: pip-audit could not run against {service}: {exc}")
        return None
    try:
        report = json.loads(proc.stdout)
    except json.JSONDecodeError:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        print(f"audit: the {service} service could not be used: {last[:300]}")
        return None
    deps = report.get("dependencies", [])
    vulnerable = [d for d in deps if d.get("vulns")]
    skipped = [d for d in deps if d.get("skip_reason")]
    audited = len(deps) - len(skipped)
    if audited == 0 and not vulnerable:
        print(f"audit: the {service} service answered for none of the {len(deps)} packages (unreachable?)")
        return None
    return vulnerable, audited, len(skipped)


def main() -> int:
    for service in ("osv", "pypi"):
        result = run(service)
        if result is None:
            continue
        vulnerable, audited, skipped = result
        if vulnerable:
            print(f"audit: FAILED, known vulnerabilities ({service}):")
            for dep in vulnerable:
                ids = ", ".join(v["id"] + (f" (fixed in {', '.join(v['fix_versions'])})" if v.get("fix_versions")
                                           else "") for v in dep["vulns"])
                print(f"  {dep['name']} {dep['version']}: {ids}")
            return 1
        print(f"audit: no known vulnerabilities in {audited} packages ({service}; {skipped} not audited)")
        return 0
    print("audit: WARNING: NOT AUDITED. No vulnerability service (OSV, PyPI) could be reached from here; "
          "run `make audit` where the internet is reachable.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
