#!/usr/bin/env bash
# The page's threaded engine worker: tiller-worker built with wasm atomics (shared memory, a
# rayon pool of Web Workers), beside the single-threaded one Trunk builds from the same source.
# Run by Trunk after each build (Trunk.toml's post_build hook), writing into its staging folder;
# by hand: scripts/build-threads.sh DIR.
#
# std must be rebuilt with atomics, which needs a nightly toolchain with rust-src: the one
# pinned here (./dev setup installs it; about 10 s).
set -euo pipefail
cd "$(dirname "$0")/.."
NIGHTLY=nightly-2026-05-20
OUT=${1:-${TRUNK_STAGING_DIR:?give the output folder}}
TARGET_DIR=target/wasm-threads
# Shared, imported memory (up to 4 GiB) and the thread-local storage exports wasm-bindgen needs
# to start a thread.
export RUSTFLAGS="-C target-feature=+atomics,+bulk-memory,+mutable-globals,+simd128 \
  -C link-arg=--shared-memory -C link-arg=--import-memory -C link-arg=--max-memory=4294967296 \
  -C link-arg=--export=__wasm_init_tls -C link-arg=--export=__tls_size \
  -C link-arg=--export=__tls_align -C link-arg=--export=__tls_base"
# Trunk's own settings (a wasm32 `cargo build` of the worker's crate) must not leak in.
unset CARGO_BUILD_TARGET CARGO_TARGET_DIR
cargo "+$NIGHTLY" build --release --target wasm32-unknown-unknown -Z build-std=panic_abort,std \
  --target-dir "$TARGET_DIR" -p tiller-web --bin tiller-worker
wasm-bindgen --target no-modules --no-typescript --out-dir "$TARGET_DIR/bindgen" --out-name tiller-worker-mt \
  "$TARGET_DIR/wasm32-unknown-unknown/release/tiller-worker.wasm"
wasm-opt -O3 --enable-threads --enable-bulk-memory --enable-mutable-globals --enable-simd \
  --enable-nontrapping-float-to-int --enable-sign-ext --enable-reference-types --enable-multivalue \
  "$TARGET_DIR/bindgen/tiller-worker-mt_bg.wasm" -o "$OUT/tiller-worker-mt_bg.wasm"
cp "$TARGET_DIR/bindgen/tiller-worker-mt.js" "$OUT/"
# A module that does not instantiate (a browser without wasm threads, no memory for the shared
# buffer) becomes the worker's error event, on which the page starts the single-threaded worker.
printf 'importScripts("./tiller-worker-mt.js");wasm_bindgen({module_or_path:"./tiller-worker-mt_bg.wasm"}).catch(e=>setTimeout(()=>{throw e;}));' > "$OUT/tiller-worker-mt_loader.js"
cp www/tiller-thread.js "$OUT/"
