# shellcheck shell=bash
# Shared environment for the .ci scripts; source it, don't run it.
#
# Why: the build tools live outside Debian's PATH. cargo-leptos and
# wasm-bindgen are `cargo install`ed into ~/.cargo/bin, and wasm-opt must be
# binaryen 132 from npm (end2end/node_modules/.bin): Debian's binaryen 108
# produces a release wasm that fails at hydration, so the npm copy has to win
# over anything else on PATH. The repo root is derived from this file's own
# location so the scripts work from any working directory and from a fresh
# clone (CI runs `bash .ci/run` from the clone's root with CI=true).

# Not exported, and deliberately not COUNTERSIGN_*: that prefix is the
# server's configuration namespace and must only carry real settings.
repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

# Prepend, but only once, so sourcing from several scripts doesn't grow PATH.
_countersign_prepend_path() {
  case ":$PATH:" in
    *":$1:"*) ;;
    *) PATH="$1:$PATH" ;;
  esac
}
_countersign_prepend_path "$HOME/.cargo/bin"
# Last so it ends up first: the pinned wasm-opt must shadow any other one.
_countersign_prepend_path "$repo_root/end2end/node_modules/.bin"
unset -f _countersign_prepend_path
export PATH

# Where cargo (and so cargo-leptos, whose default site-root is
# "<target dir>/site") puts its output; honours CARGO_TARGET_DIR if set.
# shellcheck disable=SC2034 # used by the scripts that source this file
target_dir="${CARGO_TARGET_DIR:-$repo_root/target}"

# The wasm-bindgen version Cargo.lock pins (empty if no lock or no such
# package). wasm-bindgen-cli must match it exactly or cargo-leptos's bindgen
# step refuses the wasm ("schema version mismatch").
countersign_lock_wasm_bindgen_version() {
  local lock="$repo_root/Cargo.lock"
  [[ -f "$lock" ]] || return 0
  awk '
    /^\[\[package\]\]/ { in_wb = 0; next }
    /^name = "wasm-bindgen"$/ { in_wb = 1; next }
    in_wb && /^version = / { gsub(/"/, "", $3); print $3; exit }
  ' "$lock"
}
