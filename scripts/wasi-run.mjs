// Cargo's runner for wasm32-wasip1 test binaries (`./dev test` runs the engine's unit tests
// this way, with simd128, so the wasm kernels are checked against the scalar ones): Node's WASI
// with the working directory preopened, the test binary's arguments passed through.
import { WASI } from 'node:wasi';
import fs from 'node:fs';
import process from 'node:process';

const [file, ...args] = process.argv.slice(2);
const wasi = new WASI({
  version: 'preview1',
  args: [file, ...args],
  env: process.env,
  preopens: { '.': process.cwd() },
  returnOnExit: true,
});
const module = await WebAssembly.compile(fs.readFileSync(file));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exitCode = wasi.start(instance);
