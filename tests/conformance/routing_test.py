"""Conformance: VirtualService and DestinationRule routing through gRPC's own C++ xDS client.

meshpilot serves a folder holding one Service (echo), three real Echo backends whose Pods
carry the subset labels (version v1, v2 and slow, a backend that answers after 6 s), a
DestinationRule with those subsets and one VirtualService. xds_echo_client (libgrpc++'s xDS
resolver, its weighted_target, fault injection filter and max_stream_duration) then proves
what a request gets:

- no special header: an 80/20 split between v1 and v2 over 200 calls;
- x-user: jason: every call reaches v2 (header match);
- x-fault: abort: every call fails with ABORTED (fault abort by grpcStatus);
- x-fault: delay: every call succeeds after at least the 1 s fixed delay;
- x-route: slow: the route's 3 s timeout ends the call with DEADLINE_EXCEEDED before the
  backend's 6 s answer and the client's own 10 s deadline;
- a second Service, sticky, over the v1 and v2 backends, whose DestinationRule asks for
  consistentHash on x-user: gRPC's ring_hash keeps each user on one backend. libgrpc 1.51
  (Debian's) crashes in its ring_hash picker on the first pick (grpc/grpc#31766, fixed in
  1.52): meshpilot gives such clients ROUND_ROBIN instead, which the test checks there.

Processes, ports and failure messages come from mesh_harness.py. Every wait is bounded.
"""

import subprocess
import unittest

from mesh_harness import MeshTestCase, parse_counts

TARGET = "xds:///echo.default.svc.cluster.local:7070"
SLOW_BACKEND_DELAY_MS = 6000

SPLIT_CALLS = 200
SPLIT_V1_WEIGHT = 80
# Binomial(200, 0.8) has a standard deviation of 5.7 calls: +-25 is over 4 of them, so a
# correct split fails this less than once in 10^4 runs, while 70/30 or 50/50 never pass.
SPLIT_TOLERANCE = 25

ROUTING_YAML = """apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: echo, namespace: default}
spec:
  host: echo
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: slow, labels: {version: slow}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: echo, namespace: default}
spec:
  hosts: [echo]
  http:
  - name: fault-abort
    match:
    - headers:
        x-fault: {exact: abort}
    fault:
      abort:
        grpcStatus: ABORTED
        percentage: {value: 100}
    route:
    - destination: {host: echo, subset: v1}
  - name: fault-delay
    match:
    - headers:
        x-fault: {exact: delay}
    fault:
      delay:
        fixedDelay: 1s
        percentage: {value: 100}
    route:
    - destination: {host: echo, subset: v1}
  - name: timeout
    match:
    - headers:
        x-route: {exact: slow}
    timeout: 3s
    route:
    - destination: {host: echo, subset: slow}
  - name: jason
    match:
    - headers:
        x-user: {exact: jason}
    route:
    - destination: {host: echo, subset: v2}
  - name: split
    route:
    - destination: {host: echo, subset: v1}
      weight: %d
    - destination: {host: echo, subset: v2}
      weight: %d
""" % (SPLIT_V1_WEIGHT, 100 - SPLIT_V1_WEIGHT)


STICKY_TARGET = "xds:///sticky.default.svc.cluster.local:7071"
STICKY_YAML = """apiVersion: v1
kind: Service
metadata: {name: sticky, namespace: default}
spec:
  selector: {app: echo}
  ports:
  - {name: grpc, port: 7071, protocol: TCP}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: sticky, namespace: default}
spec:
  host: sticky
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: x-user
"""


def sticky_slice_yaml(version, port):
    return f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: sticky-{version}
  namespace: default
  labels: {{kubernetes.io/service-name: sticky}}
addressType: IPv4
ports:
- {{name: grpc, port: {port}, protocol: TCP}}
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
  targetRef: {{kind: Pod, name: echo-{version}, namespace: default}}
"""


def backend_yaml(version, port):
    """The EndpointSlice of one backend and the Pod it names, which carries the labels."""
    return f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-{version}
  namespace: default
  labels: {{kubernetes.io/service-name: echo}}
addressType: IPv4
ports:
- {{name: grpc, port: {port}, protocol: TCP}}
endpoints:
- addresses: [127.0.0.1]
  conditions: {{ready: true}}
  targetRef: {{kind: Pod, name: echo-{version}, namespace: default}}
---
apiVersion: v1
kind: Pod
metadata:
  name: echo-{version}
  namespace: default
  labels: {{app: echo, version: {version}}}
status: {{podIP: 127.0.0.1}}
"""


SERVICE_YAML = """apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec:
  selector: {app: echo}
  ports:
  - {name: grpc, port: 7070, protocol: TCP}
"""


class GrpcRoutingTest(MeshTestCase):

    TMP_PREFIX = "meshpilot-routing-"

    def setUp(self):
        super().setUp()
        files = {"service.yaml": SERVICE_YAML, "routing.yaml": ROUTING_YAML,
                 "sticky.yaml": STICKY_YAML}
        for version, delay_ms in (("v1", 0), ("v2", 0), ("slow", SLOW_BACKEND_DELAY_MS)):
            port = self.start_backend(f"echo-{version}", "--delay_ms", str(delay_ms))
            files[f"backend-{version}.yaml"] = backend_yaml(version, port)
            if version != "slow":
                files[f"sticky-{version}.yaml"] = sticky_slice_yaml(version, port)
        for name, text in files.items():
            self.write_config(name, text)
        self.start_meshpilot()
        self.write_bootstrap()

    def calls(self, count, *metadata, timeout_ms=5000, interval_ms=0, target=TARGET):
        """Runs count calls (after the channel is ready) and returns the summary dict."""
        return self.run_client(target, "--count", str(count), "--interval_ms", str(interval_ms),
                               "--timeout_ms", str(timeout_ms), "--wait_for_ready",
                               metadata=metadata, env=self.xds_env())

    # ----- tests

    def test_weighted_split_between_subsets(self):
        summary = self.calls(SPLIT_CALLS)
        backends = parse_counts(summary["backends"])
        self.expect(summary["ok"] == str(SPLIT_CALLS), f"calls failed: {summary}")
        self.expect(set(backends) == {"echo-v1", "echo-v2"},
                    f"calls left subsets v1/v2 (the slow backend is no default): {backends}")
        expected_v1 = SPLIT_CALLS * SPLIT_V1_WEIGHT // 100
        self.expect(abs(backends["echo-v1"] - expected_v1) <= SPLIT_TOLERANCE,
                    f"split is not {SPLIT_V1_WEIGHT}/{100 - SPLIT_V1_WEIGHT}: {backends}")

    def test_header_match_routes_to_subset(self):
        summary = self.calls(30, "x-user=jason")
        self.expect(summary["ok"] == "30" and parse_counts(summary["backends"]) == {"echo-v2": 30},
                    f"x-user: jason did not reach only v2: {summary}")
        summary = self.calls(30, "x-user=someone-else")
        self.expect(summary["ok"] == "30" and "echo-slow" not in summary["backends"],
                    f"another user left the split: {summary}")

    def test_fault_abort_with_grpc_status(self):
        summary = self.calls(20, "x-fault=abort")
        self.expect(summary["ok"] == "0" and parse_counts(summary["codes"]) == {"ABORTED": 20},
                    f"fault abort did not fail every call with ABORTED: {summary}")

    def test_fault_fixed_delay(self):
        summary = self.calls(3, "x-fault=delay")
        self.expect(summary["ok"] == "3", f"delayed calls failed: {summary}")
        self.expect(int(summary["min_ms"]) >= 950,
                    f"calls were not delayed by the 1 s fault: {summary}")
        self.expect(int(summary["max_ms"]) < 1900, f"delay far longer than 1 s: {summary}")

    def test_route_timeout(self):
        summary = self.calls(2, "x-route=slow", timeout_ms=10000)
        self.expect(parse_counts(summary["codes"]) == {"DEADLINE_EXCEEDED": 2},
                    f"the 3 s route timeout did not end the calls: {summary}")
        # Without the route timeout these calls would succeed after 6 s. libgrpc 1.51 arms
        # the max_stream_duration deadline from a cycle-counter timestamp and fires it about
        # 1-1.7 s early (3 s ends after 1.3-2 s here), hence the loose lower bound.
        self.expect(1000 <= int(summary["min_ms"]) and int(summary["max_ms"]) < 4000,
                    f"calls did not end near the 3 s route timeout: {summary}")

    def grpc_version(self):
        out = subprocess.run([self.client_bin, "--grpc_version"], capture_output=True,
                             text=True, timeout=10).stdout.strip()
        return tuple(int(part) for part in out.split(".")[:2])

    def test_consistent_hash_keeps_a_user_on_one_backend(self):
        if self.grpc_version() < (1, 52):
            # Its ring_hash crashes (grpc/grpc#31766): meshpilot must send ROUND_ROBIN, so
            # one user's calls succeed and spread over both backends.
            summary = self.calls(20, "x-user=alice", target=STICKY_TARGET)
            self.expect(summary["rc"] == 0 and summary["ok"] == "20",
                        f"calls to a consistentHash service failed: {summary}")
            self.expect(set(parse_counts(summary["backends"])) == {"echo-v1", "echo-v2"},
                        f"expected the ROUND_ROBIN fallback: {summary}")
            return
        reached = set()
        for user in range(16):
            summary = self.calls(8, f"x-user=user-{user}", target=STICKY_TARGET)
            backends = parse_counts(summary["backends"])
            self.expect(summary["ok"] == "8" and len(backends) == 1,
                        f"user-{user} was not kept on one backend: {summary}")
            reached.update(backends)
        # 16 users all hashing to one of two backends would be a 1 in 30000 coincidence.
        self.expect(reached == {"echo-v1", "echo-v2"},
                    f"the users did not spread over both backends: {reached}")


if __name__ == "__main__":
    unittest.main()
