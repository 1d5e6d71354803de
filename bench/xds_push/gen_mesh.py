#!/usr/bin/env python3
"""Writes the benchmark mesh as Kubernetes/Istio YAML into a folder meshpilot --config-dir serves.

S services spread over namespaces bench-0..bench-(N-1), each with an `http` (80 -> 8080) and a
`grpc` (9090) port, E endpoints (Pods labelled version v1/v2, addresses 10.10+s/256.s%256.e+1),
and for every K-th service a DestinationRule (subsets v1, v2) and a VirtualService (header match
to v2, then 90/10 canary, timeout, retries). Service svc-0's EndpointSlice lives alone in
endpoints-watched.yaml, the file the benchmark edits: --first-address sets its first endpoint.
"""
import argparse
import os


def ns_of(s, namespaces):
    return f"bench-{s % namespaces}"


def address(s, e):
    return f"10.{10 + s // 256}.{s % 256}.{e + 1}"


def slice_yaml(s, args, first_address=None):
    ns = ns_of(s, args.namespaces)
    lines = [f"""apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: svc-{s}-1
  namespace: {ns}
  labels: {{kubernetes.io/service-name: svc-{s}}}
addressType: IPv4
ports:
- {{name: http, port: 8080, protocol: TCP}}
- {{name: grpc, port: 9090, protocol: TCP, appProtocol: grpc}}
endpoints:"""]
    for e in range(args.endpoints):
        ip = first_address if (first_address and e == 0) else address(s, e)
        lines.append(f"""- addresses: [{ip}]
  conditions: {{ready: true}}
  zone: zone-{e % 2}
  targetRef: {{kind: Pod, name: svc-{s}-{e}, namespace: {ns}}}""")
    return "\n".join(lines) + "\n"


def write(path, docs):
    with open(path + ".tmp", "w") as f:
        f.write("---\n".join(docs))
    os.replace(path + ".tmp", path)  # one atomic rename: the file source sees it whole


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", required=True)
    parser.add_argument("--services", type=int, default=200)
    parser.add_argument("--endpoints", type=int, default=10)
    parser.add_argument("--namespaces", type=int, default=4)
    parser.add_argument("--routed-every", type=int, default=5,
                        help="every K-th service gets a VirtualService and a DestinationRule")
    parser.add_argument("--first-address", default="",
                        help="address of svc-0's first endpoint (default: its usual one)")
    parser.add_argument("--watched-only", action="store_true",
                        help="rewrite only endpoints-watched.yaml (the benchmark's edit)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)

    write(os.path.join(args.out, "endpoints-watched.yaml"),
          [slice_yaml(0, args, args.first_address or None)])
    if args.watched_only:
        return

    namespaces = [f"apiVersion: v1\nkind: Namespace\nmetadata: {{name: bench-{n}}}\n"
                  for n in range(args.namespaces)]
    services, pods, slices, istio = [], [], [], []
    for s in range(args.services):
        ns = ns_of(s, args.namespaces)
        services.append(f"""apiVersion: v1
kind: Service
metadata: {{name: svc-{s}, namespace: {ns}, labels: {{app: svc-{s}}}}}
spec:
  clusterIP: 10.96.{s // 256}.{s % 256}
  selector: {{app: svc-{s}}}
  ports:
  - {{name: http, port: 80, targetPort: 8080, protocol: TCP}}
  - {{name: grpc, port: 9090, targetPort: 9090, protocol: TCP, appProtocol: grpc}}
""")
        for e in range(args.endpoints):
            pods.append(f"""apiVersion: v1
kind: Pod
metadata: {{name: svc-{s}-{e}, namespace: {ns}, labels: {{app: svc-{s}, version: v{1 + e % 2}}}}}
spec: {{serviceAccountName: svc-{s}}}
status: {{phase: Running, podIP: {address(s, e)}}}
""")
        if s != 0:
            slices.append(slice_yaml(s, args))
        if args.routed_every > 0 and s % args.routed_every == 0:
            istio.append(f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: svc-{s}, namespace: {ns}}}
spec:
  host: svc-{s}.{ns}.svc.cluster.local
  trafficPolicy:
    loadBalancer: {{simple: ROUND_ROBIN}}
    connectionPool: {{http: {{http1MaxPendingRequests: 100}}}}
  subsets:
  - {{name: v1, labels: {{version: v1}}}}
  - {{name: v2, labels: {{version: v2}}}}
""")
            istio.append(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: svc-{s}, namespace: {ns}}}
spec:
  hosts: [svc-{s}.{ns}.svc.cluster.local]
  http:
  - name: pinned
    match:
    - headers:
        end-user: {{exact: tester}}
    route:
    - destination: {{host: svc-{s}.{ns}.svc.cluster.local, subset: v2}}
  - name: canary
    timeout: 5s
    retries: {{attempts: 3, perTryTimeout: 1s, retryOn: 5xx}}
    route:
    - destination: {{host: svc-{s}.{ns}.svc.cluster.local, subset: v1}}
      weight: 90
    - destination: {{host: svc-{s}.{ns}.svc.cluster.local, subset: v2}}
      weight: 10
""")
    write(os.path.join(args.out, "services.yaml"), namespaces + services)
    write(os.path.join(args.out, "pods.yaml"), pods)
    write(os.path.join(args.out, "endpoints.yaml"), slices)
    if istio:
        write(os.path.join(args.out, "istio.yaml"), istio)


if __name__ == "__main__":
    main()
