// End-to-end test of the built page in headless Chromium (playwright-core, Debian's chromium).
// Serves DIST on a free loopback port, then: the model loads; a greedy generation of N tokens
// streams and finishes; Stop stops a long one; an empty prompt is refused with a message;
// a corrupt model file shows an error. Prints one JSON line with what it saw.
// Usage: node page.mjs DIST PROMPT N SCREENSHOT_DIR
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const [distArg, prompt, n, shots] = process.argv.slice(2);
const dist = path.resolve(distArg);
const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css', '.gguf': 'application/octet-stream' };
const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://x');
  if (url.pathname === '/corrupt.gguf') {
    // A GGUF header whose tensor table promises far more than the file holds.
    const b = Buffer.alloc(64); b.write('GGUF'); b.writeUInt32LE(3, 4); b.writeBigUInt64LE(1000n, 8); b.writeBigUInt64LE(5n, 16);
    res.writeHead(200, { 'content-type': types['.gguf'], 'content-length': b.length }); return res.end(b);
  }
  const file = path.join(dist, decodeURIComponent(url.pathname === '/' ? '/index.html' : url.pathname));
  if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) { res.writeHead(404); return res.end('not found'); }
  const st = fs.statSync(file);
  res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream', 'content-length': st.size });
  fs.createReadStream(file).pipe(res);
});
await new Promise(r => server.listen(0, '127.0.0.1', r));
const base = `http://127.0.0.1:${server.address().port}/`;
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
         '--disable-component-update', '--disable-sync'],
});
const out = { console_errors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('console', m => { if (m.type() === 'error') out.console_errors.push(m.text()); });
  page.on('pageerror', e => out.console_errors.push(String(e)));
  const t0 = Date.now();
  await page.goto(base);
  const status = page.getByTestId('model-status');
  await page.waitForSelector('[data-testid=model-status][data-state=ready], [data-testid=model-status][data-state=error]', { timeout: 300000 });
  out.load_state = await status.getAttribute('data-state');
  out.load_ms = Date.now() - t0;
  out.status_text = await status.innerText();
  out.backend = await page.getByTestId('backend-name').innerText();
  if (out.load_state !== 'ready') throw new Error('model did not load: ' + out.status_text);

  // Greedy generation of n tokens.
  await page.getByTestId('prompt-input').fill(prompt);
  await page.getByTestId('max-tokens').fill(String(n));
  const t1 = Date.now();
  await page.getByTestId('generate').click();
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: 300000 });
  out.generate_ms = Date.now() - t1;
  const o = page.getByTestId('baseline-output');
  out.ids = (await o.getAttribute('data-ids')).split(',').filter(Boolean).map(Number);
  out.text = await o.innerText();
  out.stats = await page.locator('.stats').innerText();
  if (shots) await page.screenshot({ path: path.join(shots, 'generate.png') });

  // Stop: a long generation is stopped after a few tokens.
  await page.getByTestId('max-tokens').fill('400');
  await page.getByTestId('generate').click();
  await page.waitForFunction(() => (document.querySelector('[data-testid=baseline-output]').dataset.ids || '').split(',').length >= 3, null, { timeout: 120000 });
  await page.getByTestId('stop').click();
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: 60000 });
  out.stopped_after = (await o.getAttribute('data-ids')).split(',').filter(Boolean).length;

  // Empty prompt: a message, no generation.
  await page.getByTestId('prompt-input').fill('   ');
  await page.getByTestId('generate').click();
  out.empty_prompt_error = await page.getByTestId('generation-error').innerText();

  // A corrupt model file: the page says so and stays usable.
  const bad = await browser.newPage();
  await bad.goto(base + '?model=corrupt.gguf');
  await bad.waitForSelector('[data-testid=model-status][data-state=error]', { timeout: 60000 });
  out.corrupt_error = await bad.getByTestId('model-status').innerText();
  if (shots) await bad.screenshot({ path: path.join(shots, 'corrupt-model.png') });
  out.ok = true;
} catch (e) {
  out.ok = false;
  out.error = String(e && e.stack || e);
} finally {
  await browser.close();
  server.close();
}
console.log(JSON.stringify(out));
