// End-to-end test of the built page in headless Chromium (playwright-core, Debian's chromium).
// Serves DIST on a free loopback port, then: the model loads; a greedy generation of N tokens
// streams and finishes; Stop stops a long one; an empty prompt is refused with a message;
// a corrupt model file shows an error; in a browser without WebGPU the page falls back to the
// CPU and generates the same tokens. Prints one JSON line with what it saw.
// Usage: node page.mjs DIST PROMPT N SCREENSHOT_DIR
import fs from 'node:fs';
import path from 'node:path';
import { serve, launch, report } from './serve.mjs';

const [dist, prompt, n, shots] = process.argv.slice(2);
// A GGUF header whose tensor table promises far more than the file holds.
const corrupt = Buffer.alloc(64);
corrupt.write('GGUF'); corrupt.writeUInt32LE(3, 4); corrupt.writeBigUInt64LE(1000n, 8); corrupt.writeBigUInt64LE(5n, 16);
// /broken/ is the page again, but its engine worker dies on start (as on a wasm trap or OOM).
const brokenWorker = Buffer.from('throw new Error("simulated engine crash");');
const { server, base } = await serve(dist, p => {
  if (p === '/corrupt.gguf') return corrupt;
  // Both engines: the threaded one fails, the page falls back to the single-threaded one, which
  // fails too.
  if (p === '/broken/tiller-worker_loader.js' || p === '/broken/tiller-worker-mt_loader.js') return brokenWorker;
  if (p.startsWith('/broken/')) {
    const f = path.join(path.resolve(dist), p.slice('/broken/'.length) || 'index.html');
    return fs.existsSync(f) && fs.statSync(f).isFile() ? fs.readFileSync(f) : null;
  }
  return null;
});
const browser = await launch();
const out = { console_errors: [] };
// A setup with one tiny concept (a pair of one-word texts): the page computes the concepts of
// its setup on load, on the model's device, and SwiftShader runs the GPU path about 50 times
// slower than the CPU backend; the default setup's 16 pairs would take minutes there.
const small = fs.readFileSync(new URL('../data/share-links/v1/minimal.link', import.meta.url), 'utf8').trim();
await report(out, async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('console', m => { if (m.type() === 'error') out.console_errors.push(m.text()); });
  page.on('pageerror', e => out.console_errors.push(String(e)));
  const t0 = Date.now();
  // SwiftShader is a software adapter: the page uses it only when asked.
  await page.goto(base + '?backend=webgpu' + small);
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
  out.stats = await page.locator('.stats').first().innerText();
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
  // The engine worker dies: the page says so instead of waiting forever.
  const crashed = await browser.newPage();
  await crashed.goto(base + 'broken/index.html');
  await crashed.waitForSelector('[data-testid=model-status][data-state=error]', { timeout: 60000 });
  out.worker_crash = await crashed.getByTestId('model-status').innerText();

  // The WebGPU device is lost after 3 tokens (test hook): the page says so, the generation is
  // rerun on the CPU and finishes with the same tokens.
  const lost = await browser.newPage();
  await lost.goto(base + '?backend=webgpu&lose-gpu-after=3' + small);
  await lost.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: 300000 });
  await lost.getByTestId('prompt-input').fill(prompt);
  await lost.getByTestId('max-tokens').fill(String(n));
  await lost.getByTestId('generate').click();
  await lost.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: 300000 });
  out.lost_backend = await lost.getByTestId('backend-name').innerText();
  out.lost_ids = (await lost.getByTestId('baseline-output').getAttribute('data-ids')).split(',').filter(Boolean).map(Number);
  await lost.close();

  // Not asked for WebGPU, on a software adapter: the page runs on the CPU and says why.
  const soft = await browser.newPage();
  await soft.goto(base);
  await soft.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: 300000 });
  out.soft_backend = await soft.getByTestId('backend-name').innerText();
  await soft.close();

  // Without WebGPU (no --enable-unsafe-webgpu): the page says it runs on the CPU, and why,
  // and generates the same greedy tokens.
  const plain = await launch({ webgpu: false });
  try {
    const cpu = await plain.newPage();
    await cpu.goto(base);
    await cpu.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: 300000 });
    out.fallback_backend = await cpu.getByTestId('backend-name').innerText();
    await cpu.getByTestId('prompt-input').fill(prompt);
    await cpu.getByTestId('max-tokens').fill(String(n));
    await cpu.getByTestId('generate').click();
    await cpu.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: 300000 });
    out.fallback_ids = (await cpu.getByTestId('baseline-output').getAttribute('data-ids')).split(',').filter(Boolean).map(Number);
  } finally {
    await plain.close();
  }
}, async () => {
  await browser.close();
  server.close();
});
