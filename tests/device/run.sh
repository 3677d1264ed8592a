#!/usr/bin/env bash
# Build flowlm with CUDA on a GPU machine and run the CUDA tests: unit_kernels (every op case on
# "cuda" against "reference", the backend semantics) and unit_cuda_model (each model family on
# "cuda" against "host"). Prints a short summary; the full logs are in <build>/logs/.
#
#   tests/device/run.sh [--deps DIR] [--build DIR] [--jobs N] [--allow-no-gpu] [--use-deps]
#   tests/device/run.sh --gather [--deps DIR] [--with-openblas]
#
# The GPU machine this is written for (Ubuntu 24.04, g++ 13, nvcc 13, CMake >= 3.21, ninja) has no
# package registry and lacks some of flowlm's dependencies. Whatever the machine lacks must travel
# with the working tree, in DEPS (default build/deps, which git ignores), laid out as:
#
#   DEPS/include/toml++/   TOML++ 3 headers (header-only)        Debian: /usr/include/toml++
#   DEPS/include/CLI/      CLI11 headers (header-only)           Debian: /usr/include/CLI
#   DEPS/include/nlohmann/ nlohmann-json 3 (header-only)          Debian: /usr/include/nlohmann
#   DEPS/include/fmt/      fmt headers (used header-only)         Debian: /usr/include/fmt
#   DEPS/kokkos-install/   a Kokkos >= 3.4 install prefix (lib/cmake/Kokkos), e.g. the one .ci/setup
#                          builds in ~/.cache/flowlm/kokkos-3.4.01-openmp; or instead
#   DEPS/kokkos/           a Kokkos source tree (Debian trilinos' packages/kokkos), built here
#   DEPS/googletest/       GoogleTest source (Debian: /usr/src/googletest), built here if the
#                          machine has no GTest
#   DEPS/openblas/         include/cblas.h + lib/libopenblas.so*, only if the machine has no OpenBLAS
#
# Each is used only when the machine has no copy of its own. MPI (mpicxx, mpi.h), HDF5 (serial is
# fine) and the CUDA toolkit (nvcc, cuBLAS) must be installed there: they are too large to carry.
# `--gather`, run on a machine that has them all (the Debian development machine), fills DEPS from
# its system copies (about 12 MB; --with-openblas adds about 40 MB of OpenBLAS libraries).
# `--use-deps` ignores the machine's own header-only libraries, Kokkos and GoogleTest and takes
# DEPS's: a rehearsal of the GPU machine's build on the development machine.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
deps=${FLOWLM_DEPS:-$here/build/deps}
build=${FLOWLM_DEVICE_BUILD:-$here/build/device}
jobs=$(nproc 2>/dev/null || echo 4)
gather=0
with_openblas=0
allow_no_gpu=0
use_deps=0
while [ $# -gt 0 ]; do
  case "$1" in
    --deps) deps=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --jobs) jobs=$2; shift 2 ;;
    --gather) gather=1; shift ;;
    --with-openblas) with_openblas=1; shift ;;
    --allow-no-gpu) allow_no_gpu=1; shift ;;
    --use-deps) use_deps=1; shift ;;
    -h|--help) sed -n '2,30p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "run.sh: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
case "$deps" in /*) ;; *) deps=$PWD/$deps ;; esac
case "$build" in /*) ;; *) build=$PWD/$build ;; esac

say() { printf '[device] %s\n' "$*"; }
die() { printf '[device] ERROR: %s\n' "$*" >&2; exit 1; }
t0=$(date +%s)
elapsed() { echo "$(( $(date +%s) - t0 )) s"; }

# --- --gather: fill DEPS from this machine's system copies --------------------------------
if [ "$gather" = 1 ]; then
  mkdir -p "$deps/include"
  for d in toml++ CLI nlohmann fmt; do
    [ -d "/usr/include/$d" ] || die "/usr/include/$d not found (install the Debian -dev package first)"
    rm -rf "${deps:?}/include/$d" && cp -r "/usr/include/$d" "$deps/include/$d"
  done
  [ -f /usr/src/googletest/CMakeLists.txt ] || die "/usr/src/googletest not found (Debian: libgtest-dev)"
  rm -rf "$deps/googletest" && cp -r /usr/src/googletest "$deps/googletest"
  kroot=${Kokkos_ROOT:-${FLOWLM_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/flowlm}/kokkos-3.4.01-openmp}
  [ -d "$kroot/lib/cmake/Kokkos" ] || die "no Kokkos install at $kroot (run .ci/setup, or set Kokkos_ROOT)"
  rm -rf "$deps/kokkos-install" && cp -r "$kroot" "$deps/kokkos-install"
  if [ "$with_openblas" = 1 ]; then
    inc=$(dirname "$(find /usr/include -name cblas.h -path '*openblas-openmp*' -print -quit)")
    lib=$(find /usr/lib -name 'libopenblas.so.0' -path '*openblas-openmp*' -print -quit)
    [ -n "$lib" ] && [ -f "$inc/cblas.h" ] || die "OpenBLAS (OpenMP build) not found (Debian: libopenblas-openmp-dev)"
    rm -rf "$deps/openblas" && mkdir -p "$deps/openblas/include" "$deps/openblas/lib"
    cp "$inc"/cblas.h "$inc"/openblas_config.h "$deps/openblas/include/"
    cp -L "$lib" "$deps/openblas/lib/libopenblas.so.0" && ln -s libopenblas.so.0 "$deps/openblas/lib/libopenblas.so"
    for so in libgfortran.so.5 libquadmath.so.0; do  # OpenBLAS's runtime dependencies
      p=$(ldconfig -p | awk -v n="$so" '$1 == n {print $NF; exit}')
      [ -n "$p" ] && cp -L "$p" "$deps/openblas/lib/"
    done
  fi
  say "gathered into $deps ($(du -sh "$deps" | cut -f1)); let the GPU machine's copy of the tree carry it"
  exit 0
fi

mkdir -p "$build/logs"
logs=$build/logs
missing=()

# --- 1. tools and the GPU --------------------------------------------------------------------
command -v cmake >/dev/null || missing+=("cmake (>= 3.21)")
cxx=$(command -v "${CXX:-c++}" || command -v g++ || true)
[ -n "$cxx" ] || missing+=("a C++17 compiler (g++)")
generator=Ninja
command -v ninja >/dev/null || generator="Unix Makefiles"
nvcc=$(command -v nvcc || true)
[ -z "$nvcc" ] && [ -x /usr/local/cuda/bin/nvcc ] && nvcc=/usr/local/cuda/bin/nvcc
[ -n "$nvcc" ] || missing+=("nvcc (the CUDA toolkit; not on PATH nor in /usr/local/cuda/bin)")
gpu=""
if command -v nvidia-smi >/dev/null; then
  gpu=$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null | head -n1 || true)
fi
if [ -z "$gpu" ]; then
  [ "$allow_no_gpu" = 1 ] || missing+=("a visible NVIDIA GPU (nvidia-smi shows none; --allow-no-gpu builds and runs anyway)")
  gpu="none visible"
fi

# --- 2. libraries: the machine's own, else DEPS ---------------------------------------------------
# One CMake probe finds what the machine has, with the same find_package calls as flowlm.
probe=$build/_probe
mkdir -p "$probe"
cat >"$probe/CMakeLists.txt" <<'EOF'
cmake_minimum_required(VERSION 3.21)
project(flowlm_probe LANGUAGES C CXX)
foreach(pkg fmt nlohmann_json tomlplusplus CLI11 Kokkos GTest)
  find_package(${pkg} QUIET)
  message(STATUS "probe ${pkg}=${${pkg}_FOUND}")
endforeach()
find_package(MPI QUIET COMPONENTS C CXX)
message(STATUS "probe MPI=${MPI_CXX_FOUND}")
find_package(HDF5 QUIET COMPONENTS C)
message(STATUS "probe HDF5=${HDF5_FOUND}")
find_library(OB openblas PATHS /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp
             /usr/lib/${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread)
find_path(CB cblas.h PATH_SUFFIXES openblas openblas-pthread openblas-openmp
          ${CMAKE_LIBRARY_ARCHITECTURE}/openblas-openmp ${CMAKE_LIBRARY_ARCHITECTURE}/openblas-pthread)
if(OB AND CB)
  message(STATUS "probe OpenBLAS=1")
else()
  message(STATUS "probe OpenBLAS=0")
endif()
EOF
if command -v cmake >/dev/null; then
  cmake -S "$probe" -B "$probe/build" -DCMAKE_POLICY_VERSION_MINIMUM=3.5 >"$logs/probe.log" 2>&1 ||
    { tail -20 "$logs/probe.log" >&2; die "the dependency probe failed to configure (log: $logs/probe.log)"; }
fi
has() {
  if [ "$use_deps" = 1 ]; then
    case "$1" in fmt | nlohmann_json | tomlplusplus | CLI11 | Kokkos | GTest) return 1 ;; esac
  fi
  grep -Eq "probe $1=(1|TRUE|ON|YES)\$" "$logs/probe.log" 2>/dev/null
}

cmake_args=(-DCMAKE_POLICY_VERSION_MINIMUM=3.5)
shims=$build/_shims
# shim <package> <target> <header under DEPS/include> [version] [definitions]: a CMake config
# for a header-only copy in DEPS/include.
shim() {
  local pkg=$1 target=$2 header=$3 version=${4:-0} defs=${5:-}
  [ -f "$deps/include/$header" ] || return 1
  mkdir -p "$shims/$pkg"
  cat >"$shims/$pkg/${pkg}Config.cmake" <<EOF
# Written by tests/device/run.sh: the header-only copy of $pkg carried in $deps/include.
if(NOT TARGET $target)
  add_library($target INTERFACE IMPORTED)
  set_target_properties($target PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "$deps/include"
                                           INTERFACE_COMPILE_DEFINITIONS "$defs")
endif()
set(${pkg}_FOUND TRUE)
EOF
  cat >"$shims/$pkg/${pkg}ConfigVersion.cmake" <<EOF
set(PACKAGE_VERSION "$version")
set(PACKAGE_VERSION_COMPATIBLE TRUE)
if(PACKAGE_FIND_VERSION_MAJOR AND NOT PACKAGE_FIND_VERSION_MAJOR EQUAL "${version%%.*}")
  set(PACKAGE_VERSION_COMPATIBLE FALSE)
endif()
EOF
  cmake_args+=("-D${pkg}_DIR=$shims/$pkg")
}
major() { grep -rhoE "define $1 +[0-9]+" "$deps/include/$2" 2>/dev/null | head -n1 | grep -oE '[0-9]+$' || echo 0; }
used=()

has fmt || { shim fmt fmt::fmt fmt/format.h 9 FMT_HEADER_ONLY=1 && used+=(fmt); } ||
  missing+=("fmt: not on the machine, and no $deps/include/fmt/format.h")
has nlohmann_json || { shim nlohmann_json nlohmann_json::nlohmann_json nlohmann/json.hpp \
  "$(major NLOHMANN_JSON_VERSION_MAJOR nlohmann)" && used+=(nlohmann_json); } ||
  missing+=("nlohmann-json 3: not on the machine, and no $deps/include/nlohmann/json.hpp")
has tomlplusplus || { shim tomlplusplus tomlplusplus::tomlplusplus toml++/toml.h \
  "$(major TOML_LIB_MAJOR toml++)" TOML_HEADER_ONLY=1 && used+=(toml++); } ||
  missing+=("TOML++ 3: not on the machine, and no $deps/include/toml++/toml.h")
has CLI11 || { shim CLI11 CLI11::CLI11 CLI/CLI.hpp 2 && used+=(CLI11); } ||
  missing+=("CLI11: not on the machine, and no $deps/include/CLI/CLI.hpp")
has MPI || missing+=("MPI development files (mpicxx, mpi.h): must be installed on the machine")
has HDF5 || missing+=("HDF5 development files (hdf5.h, libhdf5; serial is fine): must be installed on the machine")
if ! has OpenBLAS; then
  if [ -f "$deps/openblas/include/cblas.h" ] && ls "$deps"/openblas/lib/libopenblas.so* >/dev/null 2>&1; then
    # OpenBLAS_ROOT is where flowlm's CMakeLists looks first; rpath-link finds libgfortran beside it.
    cmake_args+=("-DOpenBLAS_ROOT=$deps/openblas" "-DCMAKE_EXE_LINKER_FLAGS=-Wl,-rpath-link,$deps/openblas/lib")
    export LD_LIBRARY_PATH="$deps/openblas/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    used+=(OpenBLAS)
  else
    missing+=("OpenBLAS (cblas.h + libopenblas): not on the machine, and no $deps/openblas (--gather --with-openblas)")
  fi
fi
kokkos_src=""
gtest_src=""
if [ -n "${Kokkos_ROOT:-}" ] && [ "$use_deps" = 0 ]; then
  cmake_args+=("-DKokkos_ROOT=$Kokkos_ROOT")
elif ! has Kokkos; then
  if [ -d "$deps/kokkos-install/lib/cmake/Kokkos" ] || [ -d "$deps/kokkos-install/lib64/cmake/Kokkos" ]; then
    cmake_args+=("-DKokkos_ROOT=$deps/kokkos-install")
    used+=("Kokkos (install)")
  elif [ -f "$deps/kokkos/CMakeLists.txt" ]; then
    kokkos_src=$deps/kokkos
    cmake_args+=("-DKokkos_ROOT=$build/_deps/kokkos")
    used+=("Kokkos (source)")
  else
    missing+=("Kokkos >= 3.4: not on the machine, and neither $deps/kokkos-install nor $deps/kokkos")
  fi
fi
if ! has GTest; then
  if [ -f "$deps/googletest/CMakeLists.txt" ]; then
    gtest_src=$deps/googletest
    cmake_args+=("-DGTest_ROOT=$build/_deps/gtest")
    used+=(GoogleTest)
  else
    missing+=("GoogleTest: not on the machine, and no $deps/googletest (source)")
  fi
fi

if [ ${#missing[@]} -gt 0 ]; then
  say "cannot build: missing"
  for m in "${missing[@]}"; do printf '  - %s\n' "$m" >&2; done
  say "see the top of tests/device/run.sh for what to carry in $deps (and --gather to collect it)"
  exit 2
fi
say "GPU: $gpu; nvcc: $("$nvcc" --version | grep -o 'release [0-9.]*' | head -n1); $("$cxx" --version | head -n1)"
say "from $deps: ${used[*]:-nothing (the machine has every dependency)}"

# --- 3. dependencies built from source (once per build dir) ---------------------------------------
build_dep() {  # <name> <source> <prefix> <cmake args...>
  local name=$1 src=$2 prefix=$3
  shift 3
  [ -f "$prefix/.built" ] && return 0
  say "building $name from $src ..."
  cmake -S "$src" -B "$build/_deps/$name-build" -G "$generator" -DCMAKE_BUILD_TYPE=Release \
    -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_POSITION_INDEPENDENT_CODE=ON -DCMAKE_CXX_STANDARD=17 \
    -DCMAKE_POLICY_VERSION_MINIMUM=3.5 "$@" >"$logs/$name.log" 2>&1 &&
    cmake --build "$build/_deps/$name-build" -j "$jobs" >>"$logs/$name.log" 2>&1 &&
    cmake --install "$build/_deps/$name-build" >>"$logs/$name.log" 2>&1 ||
    { tail -30 "$logs/$name.log" >&2; die "building $name failed (log: $logs/$name.log)"; }
  touch "$prefix/.built"
}
[ -n "$kokkos_src" ] && build_dep kokkos "$kokkos_src" "$build/_deps/kokkos" -DKokkos_ENABLE_SERIAL=ON \
  -DKokkos_ENABLE_OPENMP=ON -DKokkos_ENABLE_TESTS=OFF -DKokkos_ENABLE_EXAMPLES=OFF
[ -n "$gtest_src" ] && build_dep gtest "$gtest_src" "$build/_deps/gtest" -DBUILD_GMOCK=OFF -DINSTALL_GTEST=ON

# --- 4. configure and build the two test programs ----------------------------------------------
say "configuring ($generator, CUDA architecture 90) ... [$(elapsed)]"
cmake -S "$here" -B "$build" -G "$generator" -DCMAKE_BUILD_TYPE=Release -DFLOWLM_CUDA=ON \
  -DCMAKE_CUDA_COMPILER="$nvcc" -DCMAKE_CUDA_ARCHITECTURES=90 -DFLOWLM_WERROR=OFF -DFLOWLM_BENCH=OFF \
  -DFLOWLM_TESTS=ON "${cmake_args[@]}" >"$logs/configure.log" 2>&1 ||
  { grep -A8 -E 'CMake Error' "$logs/configure.log" | head -40 >&2; die "configure failed (log: $logs/configure.log)"; }
grep -q 'FLOWLM_HAVE_CUDA 1' "$build/generated/flowlm/build_config.hpp" ||
  die "configured without CUDA (log: $logs/configure.log)"
say "building unit_kernels and unit_cuda_model with $jobs jobs ... [$(elapsed)]"
cmake --build "$build" --target unit_kernels unit_cuda_model -j "$jobs" >"$logs/build.log" 2>&1 ||
  { grep -E -B2 -A6 'error|Error' "$logs/build.log" | head -60 >&2; die "build failed (log: $logs/build.log)"; }

# --- 5. run and summarise -----------------------------------------------------------------------
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-4} OMP_PROC_BIND=false OMP_WAIT_POLICY=passive
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
export FLOWLM_SOURCE_DIR=$here
status=0
for t in unit_kernels unit_cuda_model; do
  say "running $t ... [$(elapsed)]"
  set +e
  "$build/tests/$t" --gtest_brief=1 --gtest_output="xml:$logs/$t.xml" >"$logs/$t.log" 2>&1
  rc=$?
  set -e
  [ "$rc" = 0 ] || status=1
  # Counts from the XML: all tests, and those with "cuda" in the name or parameter (the cuda cases).
  summary=$(python3 - "$logs/$t.xml" <<'EOF' 2>/dev/null || true
import sys, xml.etree.ElementTree as ET
cases = ET.parse(sys.argv[1]).getroot().iter("testcase")
n = {"all": [0, 0, 0], "cuda": [0, 0, 0]}  # passed, skipped, failed
for c in cases:
    k = 2 if c.find("failure") is not None else 1 if c.get("result") == "skipped" else 0
    n["all"][k] += 1
    if "cuda" in (c.get("name", "") + c.get("value_param", "") + c.get("classname", "")).lower() \
       or sys.argv[1].endswith("unit_cuda_model.xml"):
        n["cuda"][k] += 1
f = lambda v: "%d passed, %d skipped, %d failed" % tuple(v)
print("all: %s | cuda: %s" % (f(n["all"]), f(n["cuda"])))
if n["cuda"][0] == 0:
    print("NO CUDA TEST RAN")
EOF
)
  say "$t (exit $rc): ${summary:-no XML report (crashed?); see $logs/$t.log}"
  case "$summary" in
    *"NO CUDA TEST RAN"*)
      [ "$allow_no_gpu" = 1 ] || status=1
      grep -m1 -A1 'Skipped$' "$logs/$t.log" | tail -n1 | sed 's/^/  skipped because: /' ;;
  esac
  if [ "$rc" != 0 ]; then
    grep -E 'Failure|FAILED|error|Expected|Which is|normalised|actual' "$logs/$t.log" | head -40 || tail -20 "$logs/$t.log"
  fi
done
say "done in $(elapsed): $([ "$status" = 0 ] && echo PASS || echo FAIL) (logs: $logs)"
exit "$status"
