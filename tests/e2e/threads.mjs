// The page's threads (issue 14), in headless Chromium on the CPU backend, three ways a visitor
// meets it: served with COOP/COEP (as `./dev serve` does: the threaded engine), from a static
// host that sends no headers (the service worker of coi.js makes the page isolated after one
// reload: threaded again), and from such a host where service workers are blocked (one thread,
// and the backend line says why); and, served with the headers, a threaded module that does not
// instantiate (the page starts the single-threaded worker instead and says so). Each computes
// the starter concept and generates; the numbers and tokens must be the same every way. Prints one JSON line. Usage: node threads.mjs DIST
import { serve, launch, report } from './serve.mjs';

const [dist] = process.argv.slice(2);
const iso = await serve(dist, () => null, { mode: 'isolated' });
const plain = await serve(dist, () => null, { mode: 'plain' });
const broken = await serve(dist, p => p === '/tiller-worker-mt_bg.wasm' ? Buffer.from('not a wasm module') : null, { mode: 'isolated' });
const browser = await launch({ webgpu: false });
const out = { console_errors: [], runs: {} };
const T = 600000;
const ids = async (page, id) => ((await page.getByTestId(id).getAttribute('data-ids')) || '').split(',').filter(Boolean).map(Number);

async function run(mode) {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, serviceWorkers: mode === 'blocked' ? 'block' : 'allow' });
  const page = await ctx.newPage();
  // The broken module's failure is the worker's error event, which Chromium also reports as a
  // page error: expected there, kept apart.
  page.on('pageerror', e => (mode === 'broken' ? (out.broken_errors ||= []) : out.console_errors).push(`${mode}: ${e}`));
  page.on('console', m => { if (m.type() === 'error') (mode === 'broken' ? (out.broken_errors ||= []) : out.console_errors).push(`${mode}: ${m.text()}`); });
  const t0 = Date.now();
  const base = { headers: iso.base, 'service-worker': plain.base, blocked: plain.base, broken: broken.base }[mode];
  await page.goto(base + '?backend=cpu');
  const r = { mode };
  if (mode === 'service-worker') {
    // coi.js registers its service worker and reloads the page once.
    for (let i = 0; ; i++) {
      try { if (await page.evaluate(() => window.crossOriginIsolated)) break; } catch { /* reloading */ }
      if (i > 300) throw new Error('the page did not become cross-origin isolated');
      await page.waitForTimeout(100);
    }
  }
  await page.waitForSelector('[data-testid=model-status]:is([data-state=ready], [data-state=error])', { timeout: T });
  r.ready_ms = Date.now() - t0;
  r.isolated = await page.evaluate(() => window.crossOriginIsolated);
  r.reloaded = await page.evaluate(() => sessionStorage.getItem('tiller-coi-reloaded') === '1');
  r.state = await page.getByTestId('model-status').getAttribute('data-state');
  r.backend = await page.getByTestId('backend-name').innerText();
  const computed = page.locator('.results .muted', { hasText: 'computed in' }).first();
  await computed.waitFor({ timeout: T });
  r.concept = await computed.innerText();
  await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
  r.chart = await page.locator('[data-testid=layer-chart] .col').evaluateAll(els => els.map(e => [e.dataset.auroc, e.dataset.probe].join(' ')));
  await page.getByTestId('intervention-add').click();
  await page.getByTestId('max-tokens').fill('24');
  await page.getByTestId('generate').click();
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: T });
  await page.waitForSelector('[data-testid=steered-output][data-state=done]', { timeout: T });
  r.stats = await page.locator('.stats').first().innerText();
  r.baseline = await ids(page, 'baseline-output');
  r.steered = await ids(page, 'steered-output');
  await ctx.close();
  return r;
}

await report(out, async () => {
  for (const mode of ['headers', 'service-worker', 'blocked', 'broken']) out.runs[mode] = await run(mode);
}, async () => {
  await browser.close();
  iso.server.close();
  plain.server.close();
  broken.server.close();
});
