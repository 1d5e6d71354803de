#!/usr/bin/env bash
# Builds the meshpilot and meshproxy images, loads them into a kind cluster (created from
# kind-config.yaml if missing) and deploys meshpilot: CRDs, then `kubectl apply -k
# deploy/base`, then waits for the Deployment.
#
# Needs Docker, kind and kubectl. It cannot run on machines without Docker (CI and the
# development containers of this project have none): there, tests/kube/deploy_test.py checks
# the same manifests against a real kube-apiserver instead.
#
#   deploy/kind/deploy.sh                 # cluster "meshpilot", images tagged :dev
#   KIND_CLUSTER=other TAG=v1 deploy/kind/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/../.."

CLUSTER="${KIND_CLUSTER:-meshpilot}"
TAG="${TAG:-dev}"
TIMEOUT="${TIMEOUT:-180s}"

for tool in docker kind kubectl; do
  command -v "$tool" >/dev/null || { echo "deploy.sh: $tool is required" >&2; exit 1; }
done
docker info >/dev/null 2>&1 || { echo "deploy.sh: Docker is not running" >&2; exit 1; }

if ! kind get clusters | grep -qx "$CLUSTER"; then
  kind create cluster --name "$CLUSTER" --config deploy/kind/kind-config.yaml --wait "$TIMEOUT"
fi
kubectl config use-context "kind-$CLUSTER"

for target in meshpilot meshproxy; do
  DOCKER_BUILDKIT=1 docker build -f deploy/Dockerfile --target "$target" \
    -t "meshpilot/$target:$TAG" .
  kind load docker-image --name "$CLUSTER" "meshpilot/$target:$TAG"
done

kubectl apply --server-side -f crds/
kubectl wait --for=condition=Established --timeout="$TIMEOUT" \
  crd/virtualservices.networking.istio.io crd/destinationrules.networking.istio.io \
  crd/authorizationpolicies.security.istio.io
kubectl apply -k deploy/base
if [ "$TAG" != dev ]; then
  kubectl -n meshpilot-system set image deployment/meshpilot "discovery=meshpilot/meshpilot:$TAG"
fi
kubectl -n meshpilot-system rollout status deployment/meshpilot --timeout="$TIMEOUT"
kubectl -n meshpilot-system get lease meshpilot-leader \
  -o jsonpath='{"leader: "}{.spec.holderIdentity}{"\n"}'
echo "meshpilot is up: proxies connect to meshpilot.meshpilot-system.svc:15010"
