#!/usr/bin/env bash
# Prepares a Debian machine, as root, so that `cargo build --release --features cuda` succeeds
# offline (no GitHub). Run it once; it is idempotent.
#
# Why: burn's `cuda` feature → burn-cuda → cubecl-cuda → cubecl-llvm, whose build dependency
# tracel-llvm-bundler downloads an LLVM 23 bundle from GitHub at build time. The bundler skips
# the download when its marker file exists, and cubecl-llvm then only runs `<bundle>/bin/llvm-config`.
# Debian's LLVM 22 has every LLVM function cubecl-llvm calls (../shared/gpu-notes.md), so this
# script installs it and puts, in the bundle's place, an `llvm-config` that forwards to it, and
# the marker. A real bundle already there (a marker without our forwarder) is left alone.
# At run time ladder compiles kernels with NVRTC (cubecl-cuda's `cpp` feature), not this LLVM.
#
#   sudo scripts/setup-cuda-build.sh
#   cargo build --release --features cuda --bin ladder      # 28 min clean on 2 cores
#
# Environment: LLVM_VERSION (default 22); XDG_DATA_HOME as the bundler reads it.
set -euo pipefail
llvm=${LLVM_VERSION:-22}
bundle="${XDG_DATA_HOME:-$HOME/.local/share}/tracel/tracel-llvm-23.1.0-4"
marker="$bundle/.tracel-llvm-installed"
forwarder="$bundle/bin/llvm-config"
tag="# ladder: forwards to Debian's LLVM"

if [ -e "$marker" ] && ! grep -qs "$tag" "$forwarder"; then
    echo "setup-cuda-build: a real LLVM bundle is installed at $bundle; leaving it alone"
    exit 0
fi

packages=("llvm-$llvm-dev" "libpolly-$llvm-dev" libzstd-dev)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup-cuda-build: installing ${packages[*]} needs root: run it with sudo" >&2
        exit 1
    fi
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y "${packages[@]}"
fi
real="/usr/lib/llvm-$llvm/bin/llvm-config"
[ -x "$real" ] || { echo "setup-cuda-build: $real is missing after installing llvm-$llvm-dev" >&2; exit 1; }

mkdir -p "$bundle/bin"
tmp=$(mktemp "$bundle/bin/.llvm-config.XXXXXX")
cat > "$tmp" <<FORWARD
#!/usr/bin/env bash
$tag $llvm (scripts/setup-cuda-build.sh).
# The bundler turns a library given as a path (/usr/lib/.../libz3.so) into -llibz3; give it
# -lz3 instead. Everything else is llvm-config's own output.
set -o pipefail
"$real" "\$@" | sed -E ':a;s#(^| )/[^ ]*/lib([A-Za-z0-9_+-]+)\.(so|a)(\.[0-9.]+)?( |\$)#\1-l\2\5#;ta'
FORWARD
chmod 755 "$tmp"
mv "$tmp" "$forwarder"
touch "$marker"
echo "setup-cuda-build: $forwarder forwards to LLVM $("$forwarder" --version); marker written"
echo "now: cargo build --release --features cuda --bin ladder"
