// Opening the page, first visit and cached (headless Chromium, CPU backend): the open time and
// its steps as the model bar reports them, the sha256 the page holds (streamed while
// downloading; read back with the cached copy, not recomputed), and a damaged cache entry:
// an error the page shows, then a download on the next visit; then the page's own benchmark
// (its JSON).
// Prints one JSON line. Usage: node open.mjs DIST
import { serve, launch, report } from './serve.mjs';

const [dist] = process.argv.slice(2);
const { server, base } = await serve(dist, () => null, { mode: 'isolated' });
const browser = await launch({ webgpu: false });
const out = { console_errors: [], visits: [] };
const T = 600000;
const ready = page => page.waitForSelector('[data-testid=model-status]:is([data-state=ready], [data-state=error])', { timeout: T });
const visit = async (page, first) => {
  const t0 = Date.now();
  if (first) await page.goto(base + '?backend=cpu'); else await page.reload();
  await ready(page);
  const status = page.getByTestId('model-status');
  return {
    page_ms: Date.now() - t0,
    state: await status.getAttribute('data-state'),
    sha256: await status.getAttribute('data-sha256'),
    message: await page.locator('.model-message').innerText(),
  };
};
await report(out, async () => {
  const page = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  page.on('pageerror', e => out.console_errors.push(String(e)));
  // The engine's worker index.html starts early must be the one the page adopts: one engine
  // worker on the first visit, not a second beside it.
  const workers = [];
  page.on('worker', w => workers.push(new URL(w.url()).pathname));
  out.visits.push(await visit(page, true));
  out.first_visit_workers = [...workers];
  for (let i = 0; i < 3; i++) out.visits.push(await visit(page, false));
  // Damage the cached copy (keep its stored hash): the page says the model cannot be opened and
  // drops the entry; the next visit downloads it again.
  out.damaged = await page.evaluate(async () => {
    const c = await caches.open('tiller-models-v1');
    const keys = await c.keys();
    const hit = await c.match(keys[0]);
    const bytes = new Uint8Array(await hit.arrayBuffer()).slice(0, 1000);
    await c.put(keys[0], new Response(bytes, { headers: hit.headers }));
    return keys.length;
  });
  out.after_damage = await visit(page, false);
  out.after_damage.error = await page.locator('.model-message').innerText();
  out.redownload = await visit(page, false);
  // The page's own benchmark, as a visitor runs it.
  await page.locator('[data-testid=bench] summary').click();
  await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
  await page.getByTestId('bench-run').click();
  await page.waitForSelector('[data-testid=bench-json]', { timeout: T });
  out.bench = JSON.parse(await page.getByTestId('bench-json').inputValue());
}, async () => {
  await browser.close();
  server.close();
});
