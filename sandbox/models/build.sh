#!/usr/bin/env bash
# Builds the example models into prebuilt/, installing missing tools first.
#
#   sandbox/models/build.sh            # C and Python
#   sandbox/models/build.sh c          # the three C models only (seconds)
#   sandbox/models/build.sh python     # pystats only (about half a minute)
#
# The C components are byte-for-byte reproducible with the pinned tools; the
# Python one is not (componentize-py snapshots a CPython heap whose hash seeds
# and addresses vary from build to build), so its SHA-256 changes on every build.
set -euo pipefail

LLVM=19
WASM_TOOLS_VERSION=1.263.0
WIT_BINDGEN_VERSION=0.63.0
COMPONENTIZE_PY_VERSION=0.25.1

here=$(cd "$(dirname "$0")" && pwd)
wit=$here/../wit/anyu-model.wit
out=$here/prebuilt
what=${1:-all}
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/tools-target}
export PATH=$HOME/.cargo/bin:$PATH

say() { printf '== %s\n' "$*" >&2; }

have_version() { # command, version: is the command there, at that version?
    command -v "$1" >/dev/null && "$1" --version 2>/dev/null | grep -qF "$2"
}

c_tools() {
    local pkgs=()
    command -v "clang-$LLVM" >/dev/null || pkgs+=("clang-$LLVM")
    [ -x "/usr/lib/llvm-$LLVM/bin/wasm-ld" ] || pkgs+=("lld-$LLVM")
    [ -f /usr/lib/wasm32-wasi/libc.a ] || pkgs+=(wasi-libc)
    [ -f "/usr/lib/llvm-$LLVM/lib/clang/$LLVM/lib/wasi/libclang_rt.builtins-wasm32.a" ] ||
        pkgs+=("libclang-rt-$LLVM-dev-wasm32")
    if [ ${#pkgs[@]} -gt 0 ]; then
        say "installing ${pkgs[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >/dev/null
    fi
    local crates=()
    have_version wasm-tools "$WASM_TOOLS_VERSION" || crates+=("wasm-tools@$WASM_TOOLS_VERSION")
    have_version wit-bindgen "$WIT_BINDGEN_VERSION" || crates+=("wit-bindgen-cli@$WIT_BINDGEN_VERSION")
    if [ ${#crates[@]} -gt 0 ]; then
        say "installing ${crates[*]} (cargo, several minutes)"
        cargo install --locked "${crates[@]}"
    fi
}

python_tools() {
    have_version wasm-tools "$WASM_TOOLS_VERSION" ||
        cargo install --locked "wasm-tools@$WASM_TOOLS_VERSION"
    if ! have_version componentize-py "$COMPONENTIZE_PY_VERSION"; then
        say "installing componentize-py $COMPONENTIZE_PY_VERSION"
        python3 -m pip install -q "componentize-py==$COMPONENTIZE_PY_VERSION"
    fi
}

# Fails unless the component imports anyu:model interfaces only.
check_imports() {
    local bad
    bad=$(wasm-tools component wit "$1" | grep -E '^\s*import ' | grep -v 'anyu:model/' || true)
    if [ -n "$bad" ]; then
        echo "$1 imports more than anyu:model:" >&2
        echo "$bad" >&2
        exit 1
    fi
}

build_c() {
    c_tools
    local gen=$work/c
    mkdir -p "$gen"
    # Bindings are generated, not committed: they follow the WIT file.
    wit-bindgen c "$wit" --world model --out-dir "$gen" >/dev/null 2>&1 ||
        wit-bindgen c "$wit" --world model --out-dir "$gen"
    # -O3: k-means (nearly all Lloyd loops) 5.26x -> 4.55x native. Not
    # -msimd128 (no gain: the reductions must keep their order to match the
    # native reference bit for bit), never -ffast-math (it reorders them).
    local cflags=(
        --target=wasm32-wasi -O3 -std=c11 -Wall -Wextra -Werror
        -Wno-unused-parameter -I"$gen" -I"$here/c"
        -mexec-model=reactor
        # wasm-tools needs the component-type section; drop only debug info.
        "-Wl,--strip-debug"
    )
    for m in describe ols kmeans; do
        say "C: $m"
        "clang-$LLVM" "${cflags[@]}" -o "$gen/$m.core.wasm" \
            "$here/c/$m.c" "$here/c/common.c" "$gen/model.c" "$gen/model_component_type.o"
        # The core module may import nothing but the anyu:model functions:
        # wasi-libc contributes malloc, string and math routines only.
        if wasm-tools print "$gen/$m.core.wasm" | grep -E '^\s*\(import "wasi' >&2; then
            echo "$m: the core module imports WASI" >&2
            exit 1
        fi
        wasm-tools component new "$gen/$m.core.wasm" -o "$out/$m.c.wasm"
        wasm-tools validate --features component-model "$out/$m.c.wasm"
        check_imports "$out/$m.c.wasm"
    done
}

build_python() {
    python_tools
    say "Python: pystats (about half a minute)"
    local tmp=$work/python
    mkdir -p "$tmp"
    # Work on a copy: componentize-py writes __pycache__ next to the app.
    cp "$here/python/app.py" "$tmp/"
    (cd "$tmp" && componentize-py -q -d "$wit" -w model componentize --stub-wasi app \
        -o "$out/pystats.py.wasm")
    wasm-tools validate --features component-model "$out/pystats.py.wasm"
    check_imports "$out/pystats.py.wasm"
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"
case $what in
    c) build_c ;;
    python) build_python ;;
    all) build_c; build_python ;;
    *) echo "usage: $0 [c|python|all]" >&2; exit 2 ;;
esac
# prebuilt/0.1.0/ holds components of the superseded anyu:model@0.1.0, kept
# (never rebuilt) so that tests prove such models still run.
(cd "$out" && sha256sum -- *.wasm 0.1.0/*.wasm > SHA256SUMS)
ls -l "$out" >&2
