"""`.ci/audit.py` (make audit, run by .ci/run): fails on a found vulnerability, warns but passes when no
vulnerability service is reachable. A stand-in pip-audit plays each service's answer."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

AUDIT = Path(__file__).resolve().parent.parent / ".ci" / "audit.py"

CLEAN = {"dependencies": [{"name": "flask", "version": "3.1.0", "vulns": []}], "fixes": []}
VULNERABLE = {"dependencies": [{"name": "flask", "version": "0.12", "vulns": [
    {"id": "PYSEC-2019-179", "fix_versions": ["1.0"], "description": "x"}]}], "fixes": []}
UNREACHABLE_PYPI = {"dependencies": [{"name": "flask", "version": "3.1.0",
                                      "skip_reason": "Dependency not found on PyPI and could not be audited"}]}


def _fake_pip_audit(tmp_path, osv, pypi):
    """A pip-audit that answers `osv` / `pypi` (a report, or None for a connection error)."""
    script = tmp_path / "pip-audit"
    answers = {"osv": osv, "pypi": pypi}
    script.write_text(f"#!{sys.executable}\nimport json, sys\nanswers = json.loads({json.dumps(json.dumps(answers))})\n"
                      "service = sys.argv[sys.argv.index('--vulnerability-service') + 1]\n"
                      "report = answers[service]\n"
                      "if report is None:\n    sys.stderr.write('ConnectionError: cannot resolve host')\n"
                      "    sys.exit(1)\n"
                      "print(json.dumps(report))\n"
                      "sys.exit(1 if any(d.get('vulns') for d in report['dependencies']) else 0)\n")
    script.chmod(0o755)
    return script


@pytest.mark.parametrize("osv,pypi,code,words", [
    (CLEAN, None, 0, "no known vulnerabilities"),
    (VULNERABLE, None, 1, "PYSEC-2019-179"),
    (None, VULNERABLE, 1, "PYSEC-2019-179"),
    (None, UNREACHABLE_PYPI, 0, "NOT AUDITED"),
    (None, None, 0, "NOT AUDITED"),
])
def test_audit_fails_on_vulnerabilities_and_warns_when_offline(tmp_path, osv, pypi, code, words):
    fake = _fake_pip_audit(tmp_path, osv, pypi)
    result = subprocess.run([sys.executable, str(AUDIT), str(fake)], capture_output=True, text=True, timeout=60)
    assert result.returncode == code, result.stdout + result.stderr
    assert words in result.stdout
