#!/usr/bin/env bash
# Builds every sink plugin as a WebAssembly component (wasm32-wasip2, cargo
# profile `plugin`) and copies it to
#   target/plugins/<name>.wasm       first-party plugins  (plugins/<name>/)
#   target/test-plugins/<name>.wasm  test plugins         (tests/plugins/<name>/)
# where <name> is the crate's directory name (file.wasm, chaos.wasm, ...).
# A first-party plugin's plugins/<name>/manifest.json is validated and
# embedded into its copy (custom section `sinkhost-manifest`) by the host
# binary, `sinkhost plugin manifest embed` (see docs/plugin-manifest.md):
# target/release/sinkhost, built first when it is missing.
#
# Works from any directory. Honours CARGO_TARGET_DIR for cargo's own output;
# the copies always go to <repo>/target/.
set -euo pipefail

TARGET=wasm32-wasip2
PROFILE=plugin

die() {
    echo "plugins/build.sh: error: $*" >&2
    exit 1
}

ROOT="$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/.." && pwd -P)"
cd "$ROOT"

command -v cargo >/dev/null 2>&1 || die "cargo not found on PATH (install Rust: https://rustup.rs)"

# The wasm32-wasip2 standard library must be installed.
if command -v rustup >/dev/null 2>&1; then
    if ! rustup target list --installed 2>/dev/null | grep -qx "$TARGET"; then
        echo "== installing Rust target $TARGET (rustup target add $TARGET)"
        rustup target add "$TARGET" ||
            die "could not install the Rust target $TARGET; run 'rustup target add $TARGET' by hand (it downloads from the Rust distribution server)"
    fi
else
    sysroot="$(rustc --print sysroot 2>/dev/null)" || die "rustc not found on PATH"
    [ -d "$sysroot/lib/rustlib/$TARGET" ] ||
        die "the Rust target $TARGET is not installed and rustup is not available to install it"
fi

# Which plugin crates exist, and which of them the workspace knows.
metadata="$(cargo metadata --no-deps --format-version 1)" ||
    die "cargo metadata failed (is $ROOT/Cargo.toml valid?)"

packages=()   # cargo package names to build
artifacts=()  # file name cargo produces, per package
dests=()      # where to copy it
for dir in plugins/*/ tests/plugins/*/; do
    manifest="$dir/Cargo.toml"
    [ -f "$manifest" ] || continue
    dir="${dir%/}"
    name="$(basename "$dir")"
    package="$(sed -n 's/^name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$manifest" | head -n 1)"
    [ -n "$package" ] || die "no package name in $manifest"
    if ! grep -qF "\"manifest_path\":\"$ROOT/$dir/Cargo.toml\"" <<<"$metadata"; then
        echo "warning: $dir is not a workspace member (Cargo.toml [workspace] members): skipped" >&2
        continue
    fi
    if grep -q '^\[\[bin\]\]' "$manifest"; then
        # A command component: the first [[bin]] name, else the package name.
        bin="$(sed -n '/^\[\[bin\]\]/,/^\[/s/^name[[:space:]]*=[[:space:]]*"\([^"]*\)".*/\1/p' "$manifest" | head -n 1)"
        artifact="${bin:-$package}.wasm"
    else
        artifact="${package//-/_}.wasm"
    fi
    case "$dir" in
        plugins/*) dest="target/plugins/$name.wasm" ;;
        *) dest="target/test-plugins/$name.wasm" ;;
    esac
    packages+=("$package")
    artifacts+=("$artifact")
    dests+=("$dest")
done
[ "${#packages[@]}" -gt 0 ] || die "no plugin crates found under plugins/ or tests/plugins/"

args=()
for package in "${packages[@]}"; do
    args+=(-p "$package")
done
echo "== cargo build --profile $PROFILE --target $TARGET ${args[*]}"
cargo build --profile "$PROFILE" --target "$TARGET" "${args[@]}" ||
    die "building the plugins failed (see the cargo output above)"

case "${CARGO_TARGET_DIR:-}" in
    "") out_dir="$ROOT/target" ;;
    /*) out_dir="$CARGO_TARGET_DIR" ;;
    *) out_dir="$ROOT/$CARGO_TARGET_DIR" ;;
esac
out_dir="$out_dir/$TARGET/$PROFILE"

case "${CARGO_TARGET_DIR:-}" in
    "") host="$ROOT/target/release/sinkhost" ;;
    /*) host="$CARGO_TARGET_DIR/release/sinkhost" ;;
    *) host="$ROOT/$CARGO_TARGET_DIR/release/sinkhost" ;;
esac
if [ ! -x "$host" ]; then
    echo "== $host is missing: cargo build --release -p sinkhost (it embeds the plugin manifests)"
    cargo build --release -p sinkhost ||
        die "building the host failed; it is needed to embed plugins/<name>/manifest.json"
fi

mkdir -p target/plugins target/test-plugins
for i in "${!packages[@]}"; do
    src="$out_dir/${artifacts[$i]}"
    [ -f "$src" ] || die "cargo did not produce $src for ${packages[$i]}"
    # Write to a temporary name and rename, so a running test never loads a
    # half-written component.
    dest="${dests[$i]}"
    manifest="plugins/$(basename "$dest" .wasm)/manifest.json"
    case "$dest" in
        target/plugins/*)
            [ -f "$manifest" ] || die "$manifest is missing: every first-party plugin has a manifest (docs/plugin-manifest.md)"
            "$host" plugin manifest embed --manifest "$manifest" --out "$dest.tmp" "$src" >/dev/null ||
                die "embedding $manifest into $dest failed (see the message above)"
            ;;
        *) cp -f "$src" "$dest.tmp" ;;
    esac
    mv -f "$dest.tmp" "$dest"
done

echo "== plugins built ($TARGET, profile $PROFILE); first-party manifests embedded"
for dest in "${dests[@]}"; do
    printf '%10d bytes  %s\n' "$(wc -c <"$dest")" "$dest"
done
