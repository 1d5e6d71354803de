#!/usr/bin/env bash
# Installs everything meshpilot needs on Debian bookworm. Idempotent: a second run
# installs nothing and only refreshes what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBIAN_PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git curl
  protobuf-compiler libprotobuf-dev protobuf-compiler-grpc libgrpc++-dev
  libcpprest-dev libyaml-cpp-dev nlohmann-json3-dev libabsl-dev catch2
  libboost-dev libnghttp2-dev nghttp2-client libssl-dev prometheus-cpp-dev libspdlog-dev
  libjemalloc-dev libxxhash-dev
  libbenchmark-dev nodejs npm
  openssl python3-yaml iproute2 util-linux iptables
  clang-14 libbpf-dev bpftool
)

missing=()
for pkg in "${DEBIAN_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
# nodejs/npm may come from outside Debian's packages; a working binary is enough.
if command -v node >/dev/null && command -v npm >/dev/null; then
  missing=("${missing[@]/nodejs}"); missing=("${missing[@]/npm}")
fi
filtered=()
for pkg in "${missing[@]}"; do [ -n "$pkg" ] && filtered+=("$pkg"); done
if [ ${#filtered[@]} -gt 0 ]; then
  echo "setup: installing ${filtered[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${filtered[@]}"
fi

# Envoy / xDS API protos, pinned by package-lock.json.
if [ ! -d proto/node_modules/@grpc/grpc-js-xds ] || [ proto/package-lock.json -nt proto/node_modules/.package-lock.json ]; then
  (cd proto && npm ci --no-audit --no-fund --loglevel=error)
fi

# tests/kube builds kube-apiserver and etcd with Go (>= 1.21; it fetches the 1.26 toolchain
# tests/kube/apiserver/go.mod asks for). Debian's golang-go is too old.
if ! command -v go >/dev/null && [ ! -x /usr/local/go/bin/go ] && [ ! -x /usr/lib/go/bin/go ]; then
  echo "setup: Go is missing; tests/kube/build_binaries.sh needs it (install into /usr/local/go)" >&2
fi
