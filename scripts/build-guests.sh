#!/usr/bin/env bash
# Builds the example WebAssembly guests (examples/wasm: risk-score,
# default-model, and the test guest mistakes) from source for wasm32-unknown-unknown, checks that they
# import nothing outside module `sandbox` and export the ABI, and copies the
# .wasm files to an output directory, printing their sizes and SHA-256.
#
#   scripts/build-guests.sh [OUT_DIR]
#
# OUT_DIR defaults to ${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}/wasm-guests.
#
# Two routes, tried in order (SANDBOX_GUEST_ROUTE=rustup|debian forces one):
#   1. rustup: `rustup target add wasm32-unknown-unknown` (needs a host that is
#      not a package registry, so it may fail here), then a plain
#      `cargo build --release --target wasm32-unknown-unknown`;
#   2. debian: Debian's rustc-web/cargo-web/rust-web-src/lld (installed with
#      apt-get if /usr/bin/cargo is missing), building std from source with
#      `-Z build-std=std,panic_abort` and linking with wasm-ld.
# Each route has its own cargo target directory next to OUT_DIR
# (wasm-guest-build/<route>, or $GUEST_BUILD_DIR/<route>): the toolchains
# differ from each other and from the host workspace's. Builds are
# incremental, and the script is safe to re-run unattended (no stdin).
#
# Reproducibility: the compile-time seed of ahash (used by arrow on wasm32) is
# fixed and source paths are remapped, so the same sources, toolchain and
# checkout path give the same bytes, even from a clean target directory. (A
# checkout at another path changes symbol hashes, hence function order: cargo
# hashes the absolute path of the SDK, which is outside the guests' workspace.)
set -euo pipefail

REPO="$(cd "$(dirname "$0")/.." && pwd)"
GUESTS_DIR="$REPO/examples/wasm"
TARGET=wasm32-unknown-unknown
OUT="${1:-${CARGO_TARGET_DIR:-$HOME/.cache/sandbox-target}/wasm-guests}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
BUILD_ROOT="${GUEST_BUILD_DIR:-$(dirname "$OUT")/wasm-guest-build}"
ROUTE="${SANDBOX_GUEST_ROUTE:-auto}"

# crate name -> the exports it must have beyond the common ABI ones.
# `mistakes` is a test guest (each mistake a job author makes, for the tests
# that check they are reported before any charge or counted in the release).
GUESTS=(risk_score default_model mistakes)
declare -A EXTRA_EXPORTS=(
    [risk_score]="sandbox_udf_risk_score sandbox_row_risk_score sandbox_last_error"
    [default_model]="sandbox_analyze sandbox_last_error"
    [mistakes]="sandbox_analyze sandbox_udf_panics sandbox_udf_clock sandbox_last_error"
)

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
export CONST_RANDOM_SEED="${CONST_RANDOM_SEED:-sandbox-guests-v1}"
REMAP="--remap-path-prefix=$REPO=/sandbox --remap-path-prefix=${CARGO_HOME:-$HOME/.cargo}=/cargo"

log() { printf '== %s\n' "$*"; }

rustup_route() {
    command -v rustup >/dev/null 2>&1 || { log "rustup route: rustup is not installed"; return 1; }
    log "rustup route: rustup target add $TARGET"
    if ! timeout 60 rustup target add "$TARGET" </dev/null; then
        log "rustup route: 'rustup target add $TARGET' failed or timed out"
        return 1
    fi
    local libdir
    libdir="$(rustc --print target-libdir --target "$TARGET" 2>/dev/null)" || return 1
    if ! compgen -G "$libdir/libstd-*.rlib" >/dev/null; then
        log "rustup route: no std for $TARGET in $libdir"
        return 1
    fi
    local dir="$BUILD_ROOT/rustup"
    log "rustup route: $(rustc --version); cargo target dir $dir"
    (
        cd "$GUESTS_DIR"
        CARGO_TARGET_DIR="$dir" RUSTFLAGS="${RUSTFLAGS:-} $REMAP" \
            cargo build --locked --release --target "$TARGET" </dev/null
    ) || return 1
    ARTIFACTS="$dir/$TARGET/release"
}

find_wasm_ld() {
    local c
    for c in wasm-ld /usr/bin/wasm-ld /usr/bin/wasm-ld-* /usr/lib/llvm-*/bin/wasm-ld; do
        if command -v "$c" >/dev/null 2>&1; then
            command -v "$c"
            return 0
        fi
    done
    return 1
}

debian_route() {
    if [ ! -x /usr/bin/cargo ] || ! find_wasm_ld >/dev/null; then
        log "debian route: installing rustc-web cargo-web rust-web-src lld with apt-get"
        if [ "$(id -u)" -ne 0 ]; then
            log "debian route: need root for apt-get"
            return 1
        fi
        DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null || return 1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q rustc-web cargo-web rust-web-src lld </dev/null ||
            return 1
    fi
    local ld
    ld="$(find_wasm_ld)" || { log "debian route: no wasm-ld after installing lld"; return 1; }
    local dir="$BUILD_ROOT/debian"
    log "debian route: $(/usr/bin/rustc --version); linker $ld; cargo target dir $dir"
    (
        cd "$GUESTS_DIR"
        PATH="/usr/bin:$PATH" \
            CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER="$ld" \
            RUSTC_BOOTSTRAP=1 \
            CARGO_TARGET_DIR="$dir" \
            RUSTFLAGS="${RUSTFLAGS:-} $REMAP" \
            /usr/bin/cargo build --locked --release --target "$TARGET" -Z build-std=std,panic_abort </dev/null
    ) || return 1
    ARTIFACTS="$dir/$TARGET/release"
}

# Checks one module with a tiny parser of the wasm binary format: imports only
# from module `sandbox` (none at all is fine), the ABI exports present.
check_module() {
    if ! command -v python3 >/dev/null 2>&1; then
        log "check: python3 not found; skipping the import/export check of $1"
        return 0
    fi
    python3 - "$@" <<'PY'
import sys

path, required = sys.argv[1], sys.argv[2:]
data = open(path, "rb").read()
if data[:8] != b"\0asm\x01\0\0\0":
    sys.exit(f"{path}: not a wasm module (version 1)")

def leb(buf, i):
    v = shift = 0
    while True:
        b = buf[i]; i += 1
        v |= (b & 0x7F) << shift; shift += 7
        if b < 0x80:
            return v, i

def name(buf, i):
    n, i = leb(buf, i)
    return buf[i:i + n].decode("utf-8"), i + n

def limits(buf, i):
    flags, i = leb(buf, i)
    _, i = leb(buf, i)
    if flags & 1:
        _, i = leb(buf, i)
    return i

KIND = {0: "func", 1: "table", 2: "memory", 3: "global", 4: "tag"}
imports, exports = [], {}
i = 8
while i < len(data):
    sid = data[i]; size, j = leb(data, i + 1); end = j + size
    if sid == 2:  # import section
        count, j = leb(data, j)
        for _ in range(count):
            mod, j = name(data, j); field, j = name(data, j)
            kind = data[j]; j += 1
            if kind == 0: _, j = leb(data, j)          # function: type index
            elif kind == 1: j = limits(data, j + 1)    # table: reftype, limits
            elif kind == 2: j = limits(data, j)        # memory: limits
            elif kind == 3: j += 2                     # global: valtype, mutability
            elif kind == 4: _, j = leb(data, j + 1)    # tag: attribute, type index
            else: sys.exit(f"{path}: unknown import kind {kind}")
            imports.append((mod, field, KIND.get(kind, kind)))
    elif sid == 7:  # export section
        count, j = leb(data, j)
        for _ in range(count):
            field, j = name(data, j); kind = data[j]; _, j = leb(data, j + 1)
            exports[field] = KIND.get(kind, kind)
    i = end

bad = [imp for imp in imports if imp[0] != "sandbox"]
if bad:
    sys.exit(f"{path}: imports outside module `sandbox`: {bad}")
missing = [e for e in required if e not in exports]
if missing:
    sys.exit(f"{path}: missing exports {missing}; it exports {sorted(exports)}")
if exports.get("memory") != "memory":
    sys.exit(f"{path}: `memory` is not an exported memory")
print(f"   {path.rsplit('/', 1)[-1]}: imports {len(imports)} ({', '.join(m + '.' + f for m, f, _ in imports) or 'none'}); "
      f"exports {', '.join(sorted(exports))}")
PY
}

start=$(date +%s)
ARTIFACTS=""
used=""
case "$ROUTE" in
    auto)
        if rustup_route; then
            used=rustup
        else
            log "falling back to Debian's toolchain"
            if debian_route; then used=debian; fi
        fi
        ;;
    rustup) if rustup_route; then used=rustup; fi ;;
    debian) if debian_route; then used=debian; fi ;;
    *)
        echo "build-guests: SANDBOX_GUEST_ROUTE must be auto, rustup or debian (got '$ROUTE')" >&2
        exit 2
        ;;
esac
if [ -z "$used" ]; then
    cat >&2 <<EOF
build-guests: FAILED to build the WebAssembly guests (route: $ROUTE).
  - rustup route: 'rustup target add $TARGET' needs a host this machine may not reach;
  - debian route: needs root and Debian's packages rustc-web cargo-web rust-web-src lld.
See the messages above and docs/wasm.md ("Building").
EOF
    exit 1
fi
elapsed=$(($(date +%s) - start))

log "built with the $used route in ${elapsed}s; copying to $OUT"
for g in "${GUESTS[@]}"; do
    src="$ARTIFACTS/$g.wasm"
    [ -f "$src" ] || { echo "build-guests: $src was not produced" >&2; exit 1; }
    cp -f "$src" "$OUT/$g.wasm"
    # shellcheck disable=SC2086 # the extra exports are a space-separated list
    check_module "$OUT/$g.wasm" memory sandbox_alloc sandbox_dealloc sandbox_manifest ${EXTRA_EXPORTS[$g]}
done
log "guests (route $used):"
for g in "${GUESTS[@]}"; do
    f="$OUT/$g.wasm"
    printf '   %-20s %9d bytes  sha256 %s\n' "$g.wasm" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"
done
