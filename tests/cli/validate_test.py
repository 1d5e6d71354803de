"""`meshpilot validate`: offline validation of YAML files and folders, as served.

Runs the real binary on files written here and checks what it prints and its exit status:
0 when every object would be accepted (warnings allowed), 1 when one would be rejected,
2 for a usage error.
"""

import os
import subprocess
import sys
import tempfile
import unittest

MESHPILOT = os.environ.get("MESHPILOT_BIN", "build/release/controlplane/meshpilot")

SERVICE = """apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{name: http, port: 9080}]
"""

WARNED = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: to-nowhere, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: ratings}}]
"""

INVALID = """apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}, weight: -1}]
    timeout: 3 fortnights
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
"""

TLS = """apiVersion: v1
kind: Service
metadata: {name: secure, namespace: default}
spec:
  clusterIP: 10.96.0.20
  ports: [{name: https, port: 443}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bad-tls, namespace: default}
spec:
  hosts: [secure.default.svc.cluster.local]
  tls:
  - match: [{sniHosts: [other.example], destinationSubnets: [10.0.0.0/40]}]
    route: [{destination: {host: secure}, weight: -2}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: tls-on-http, namespace: default}
spec:
  hosts: [reviews]
  tls:
  - match: [{sniHosts: [reviews]}]
    route: [{destination: {host: reviews}}]
"""


class ValidateTest(unittest.TestCase):

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="meshpilot-validate-")

    def write(self, name, text):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def validate(self, *paths):
        result = subprocess.run([MESHPILOT, "validate", *paths], capture_output=True, text=True,
                                timeout=30)
        return result.returncode, result.stdout.splitlines(), result.stderr

    def test_valid_config_exits_zero_and_reports_warnings(self):
        self.write("a-service.yaml", SERVICE)
        self.write("b-vs.yml", WARNED)
        self.write(".swap.yaml", "not: [valid")  # hidden: skipped, as the file source does
        self.write("notes.txt", "not YAML at all: [")
        code, lines, _ = self.validate(self.dir)
        self.assertEqual(code, 0, lines)
        self.assertEqual(len(lines), 2, lines)
        self.assertTrue(lines[0].startswith(
            f"warning [IST0101]: {self.dir}/b-vs.yml[0]: VirtualService default/to-nowhere: "
            "spec.http[0].route[0].destination.host: \"ratings\""), lines[0])
        self.assertEqual(lines[1], "2 objects in 2 files: 0 errors, 1 warnings")

    def test_rejected_objects_exit_one_with_every_field_path(self):
        service = self.write("service.yaml", SERVICE)
        invalid = self.write("invalid.yaml", INVALID)
        broken = self.write("broken.yaml", "kind: [unclosed\n")
        code, lines, _ = self.validate(service, invalid, broken)
        self.assertEqual(code, 1, lines)
        self.assertIn(f"error: {invalid}[0]: VirtualService default/bad: "
                      "spec.http[0].route[0].weight: must be >= 0; spec.http[0].timeout: "
                      "invalid duration \"3 fortnights\" (missing or unknown unit); use a number "
                      "with a unit, e.g. \"1.5s\"", lines)
        self.assertTrue(any(line.startswith(f"error: {broken}: ") and "line" in line
                            for line in lines), lines)
        # The valid document beside the invalid one is still read and checked.
        self.assertEqual(lines[-1], "2 objects in 3 files: 2 errors, 0 warnings")

    def test_tls_rules_are_checked(self):
        self.write("service.yaml", SERVICE)
        path = self.write("tls.yaml", TLS)
        code, lines, _ = self.validate(self.dir)
        self.assertEqual(code, 1, lines)
        self.assertIn(f"error: {path}[1]: VirtualService default/bad-tls: "
                      "spec.tls[0].match[0].destinationSubnets[0]: \"10.0.0.0/40\" has an invalid "
                      "prefix length; spec.tls[0].match[0].sniHosts[0]: \"other.example\" is not "
                      "covered by the hosts; spec.tls[0].route[0].weight: must be >= 0", lines)
        # reviews has no HTTPS or TLS port: its tls rules are valid but never used.
        self.assertTrue(any(line.startswith(f"warning: {path}[2]: VirtualService "
                                            "default/tls-on-http: spec.tls: no Service")
                            for line in lines), lines)

    def test_unreadable_path_and_usage(self):
        missing = os.path.join(self.dir, "missing.yaml")
        code, lines, _ = self.validate(missing)
        self.assertEqual(code, 1)
        self.assertEqual(lines[0], f"error: {missing}: cannot read the file")
        result = subprocess.run([MESHPILOT, "validate"], capture_output=True, text=True, timeout=30)
        self.assertEqual(result.returncode, 2)
        self.assertIn("name YAML files or folders", result.stderr)


if __name__ == "__main__":
    sys.exit(0 if unittest.main(exit=False, verbosity=2).result.wasSuccessful() else 1)
