#!/usr/bin/env bash
# Linker launcher for meshproxy (its CXX_LINKER_LAUNCHER, see CMakeLists.txt): runs the link
# command it is given with every library that has a static archive beside it (Debian ships
# libgrpc*.a, libprotobuf.a, libabsl_*.a, libre2.a, libnghttp2.a, libssl.a, libcrypto.a, ...)
# taken from that archive instead of its shared object, the archives in one group (their order
# on CMake's line is only right for shared objects). glibc's libraries stay shared, and so does
# any library without an archive.
#
# Why: a shared library costs resident pages in every process that maps it even for the code
# it does not run (its symbol tables read by the dynamic loader, its relocated data, and the
# kernel's fault-around of 16 pages at every touch), ~1 MiB of it anonymous. Linked statically,
# only the object files meshproxy references are in the binary: 21.0 -> 16.3 MiB idle, and
# 20.4 -> 13.5 MiB with the rest of sidecar/CMakeLists.txt's changes (docs/benchmarks.md,
# "Memory").
set -euo pipefail

args=()
grouped=false
in_group() {
  if ! $grouped; then args+=(-Wl,--start-group); grouped=true; fi
  args+=("$1")
}
for arg in "$@"; do
  case $arg in
    /*/lib*.so | /*/lib*.so.*)
      archive=${arg%%.so*}.a
      if [[ -f $archive ]]; then in_group "$archive"; continue; fi
      ;;
    -l*)
      name=${arg#-l}
      case $name in
        c | m | dl | rt | pthread | util | resolv | stdc++ | gcc | gcc_s) ;;
        *)
          archive=$("${1}" -print-file-name="lib$name.a")
          if [[ $archive == /* && -f $archive ]]; then in_group "$archive"; continue; fi
          ;;
      esac
      ;;
  esac
  args+=("$arg")
done
if $grouped; then args+=(-Wl,--end-group); fi
exec "${args[@]}"
