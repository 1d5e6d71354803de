#!/usr/bin/env bash
# Builds kube-apiserver and etcd at the Kubernetes release pinned in tests/kube/apiserver/go.mod,
# once, into ${MESHPILOT_CACHE:-$HOME/.cache/meshpilot}/kube-<version>/ (outside the clone, so
# every clone and CI run on this machine reuses them). Idempotent: a cache whose binaries report
# the pinned versions is left alone. Prints the cache directory on its last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
module="$here/apiserver"
# The version of a module in go.mod, whether it sits in a require block or on a require line.
module_version() { awk -v m="$1" '{ sub(/^require[ \t]+/, "") } $1 == m { print $2; exit }' "$module/go.mod"; }
k8s_version="$(module_version k8s.io/kubernetes)"
etcd_version="$(module_version go.etcd.io/etcd/server/v3)"
[[ -n "$k8s_version" && -n "$etcd_version" ]] || { echo "cannot read versions from $module/go.mod" >&2; exit 1; }
out="${MESHPILOT_CACHE:-$HOME/.cache/meshpilot}/kube-${k8s_version}"

up_to_date() {
  [[ -x "$out/kube-apiserver" && -x "$out/etcd" ]] &&
    "$out/kube-apiserver" --version 2>/dev/null | grep -qx "Kubernetes $k8s_version" &&
    "$out/etcd" --version 2>/dev/null | grep -q "etcd Version: ${etcd_version#v}"
}

if up_to_date; then echo "$out"; exit 0; fi

go_bin="$(command -v go || true)"
for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
  [[ -z "$go_bin" && -x "$candidate" ]] && go_bin="$candidate"
done
[[ -n "$go_bin" ]] || { echo "Go (>= 1.21) is missing: install it, e.g. into /usr/local/go" >&2; exit 1; }

mkdir -p "$(dirname "$out")"
# One build at a time per cache; a second caller waits and then finds the binaries.
exec 9>"$out.lock"
flock 9
if up_to_date; then echo "$out"; exit 0; fi

start=$SECONDS
staging="$(mktemp -d "$out.tmp.XXXXXX")"
trap 'rm -rf "$staging"' EXIT
minor="${k8s_version#v1.}"; minor="${minor%%.*}"
ldflags="-s -w
  -X k8s.io/component-base/version.gitVersion=$k8s_version
  -X k8s.io/component-base/version.gitMajor=1
  -X k8s.io/component-base/version.gitMinor=$minor
  -X k8s.io/component-base/version.gitTreeState=clean"
echo "building kube-apiserver $k8s_version and etcd $etcd_version into $out (takes minutes once)" >&2
(
  cd "$module"
  # go.mod asks for go 1.26: an older Go (>= 1.21) fetches that toolchain from the module proxy.
  export GOFLAGS=-mod=readonly CGO_ENABLED=0
  nice "$go_bin" build -trimpath -ldflags "$ldflags" -o "$staging/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver
  nice "$go_bin" build -trimpath -ldflags "-s -w" -o "$staging/etcd" ./etcd
)
rm -rf "$out"
chmod 755 "$staging"
mv "$staging" "$out"
trap - EXIT
up_to_date || { echo "built binaries in $out do not report $k8s_version / $etcd_version" >&2; exit 1; }
echo "built in $((SECONDS - start)) s" >&2
echo "$out"
