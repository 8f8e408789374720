// Shared by the e2e scripts: a static server for the built page on a free loopback port,
// and Debian's headless Chromium launched with the flags this machine needs.
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.gguf': 'application/octet-stream', '.json': 'application/json' };

/// COOP + COEP: the page is cross-origin isolated, as under `./dev serve`, and runs its
/// threaded engine.
const ISOLATED = { 'cross-origin-opener-policy': 'same-origin', 'cross-origin-embedder-policy': 'require-corp' };

/// Serve `dir`; `extra(pathname)` may return a Buffer to answer a path itself. `mode`:
/// - `'isolated'`: with COOP/COEP, as `./dev serve` does: the threaded engine;
/// - `'plain'`: as a plain static host (no headers): `coi.js`'s service worker isolates the page
///   after one reload, threaded again;
/// - `'one-thread'` (the default): no headers and `coi.js` answered by a script that does
///   nothing, so the page runs its single-threaded engine. The flows' tests use it: two browser
///   tests run at once on 2 cores, and two threaded pages each wanting both cores made the
///   suite slower than before there were threads; the threaded engine's results are the same by construction, which
///   `threads.mjs` checks on the real flow.
export async function serve(dir, extra = () => null, { mode = 'one-thread' } = {}) {
  const iso = mode === 'isolated' ? ISOLATED : {};
  const noShim = Buffer.from('// one-thread test mode: no service worker, the page stays unisolated\n');
  const answer = p => (mode === 'one-thread' && p.endsWith('/coi.js') ? noShim : extra(p));
  const root = path.resolve(dir);
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const body = answer(p);
    if (body) {
      res.writeHead(200, { ...iso, 'content-type': TYPES[path.extname(p)] || 'application/octet-stream', 'content-length': body.length });
      return res.end(body);
    }
    const file = path.join(root, decodeURIComponent(p === '/' ? '/index.html' : p));
    if (!file.startsWith(root) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) { res.writeHead(404); return res.end('not found'); }
    res.writeHead(200, { ...iso, 'content-type': TYPES[path.extname(file)] || 'application/octet-stream', 'content-length': fs.statSync(file).size });
    fs.createReadStream(file).pipe(res);
  });
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  return { server, base: `http://127.0.0.1:${server.address().port}/` };
}

/// `webgpu: false` leaves out --enable-unsafe-webgpu: requestAdapter() then finds no adapter
/// (Chromium blocklists CPU adapters), as on a machine without WebGPU.
export function launch({ webgpu = true } = {}) {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    // --enable-unsafe-webgpu exposes Chromium's software WebGPU adapter (SwiftShader);
    // the rest keep Chromium from reaching for the network this machine does not have.
    args: ['--no-sandbox', ...(webgpu ? ['--enable-unsafe-webgpu'] : []), '--disable-quic', '--no-first-run',
           '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
}

/// The page's SVGs (charts) lacking two non-empty axis titles, by test id or class.
export function untitledCharts(page) {
  return page.evaluate(() => [...document.querySelectorAll('main svg')]
    .filter(s => [...s.querySelectorAll('.axis-title')].filter(t => t.textContent.trim()).length < 2)
    .map(s => s.dataset.testid || s.getAttribute('class') || 'svg'));
}

/// Run an e2e script's body: `out.ok` is true when it finishes, else false with the error;
/// then `cleanup` (close the browser and the server), then `out` printed as the one JSON line
/// the Rust test reads.
export async function report(out, body, cleanup) {
  try {
    await body();
    out.ok = true;
  } catch (e) {
    out.ok = false;
    out.error = String(e && e.stack || e);
  } finally {
    await cleanup();
  }
  console.log(JSON.stringify(out));
}
