// The wasm build in headless Chromium: page-open-to-ready time, then a ~216-token prompt
// and 128 greedy tokens, as the page itself reports them (prompt ms, decode tok/s).
// Usage: node bench.mjs DIST   prints one JSON line
import { chromium } from 'playwright-core';
import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';

const dist = path.resolve(process.argv[2]);
const types = { '.html': 'text/html', '.js': 'text/javascript', '.wasm': 'application/wasm', '.css': 'text/css' };
const server = http.createServer((req, res) => {
  const p = new URL(req.url, 'http://x').pathname;
  const file = path.join(dist, decodeURIComponent(p === '/' ? '/index.html' : p));
  if (!file.startsWith(dist) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) { res.writeHead(404); return res.end(); }
  res.writeHead(200, { 'content-type': types[path.extname(file)] || 'application/octet-stream', 'content-length': fs.statSync(file).size });
  fs.createReadStream(file).pipe(res);
});
await new Promise(r => server.listen(0, '127.0.0.1', r));
const browser = await chromium.launch({ executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--enable-unsafe-webgpu', '--disable-background-networking', '--disable-component-update', '--no-first-run'] });
const page = await browser.newPage();
const t0 = Date.now();
await page.goto(`http://127.0.0.1:${server.address().port}/`);
await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: 300000 });
const ready_ms = Date.now() - t0;
const unit = 'The history of the printing press begins in the fifteenth century, when movable type changed how books were made and read across Europe. ';
await page.getByTestId('prompt-input').fill(unit.repeat(8));
await page.getByTestId('max-tokens').fill('128');
await page.getByTestId('generate').click();
await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: 600000 });
const stats = await page.locator('.stats').innerText();
const backend = await page.getByTestId('backend-name').innerText();
await browser.close(); server.close();
console.log(JSON.stringify({ ready_ms, backend, stats }));
