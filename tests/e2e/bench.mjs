// The wasm build in headless Chromium: page-open-to-ready time, the starter concept's compute
// (sentiment, 8 pairs: capture, directions, every diagnostic) as the page reports it, then a ~216-token
// prompt and 128 greedy tokens, as the page itself reports them (prompt ms, decode tok/s, and
// on WebGPU the dispatches and submits per decoded token); then the page's own benchmark panel.
// Usage: node bench.mjs DIST [cpu|webgpu] [QUERY]   prints one JSON line (default: cpu; QUERY
// is added to the page's address, e.g. threads=1 for the single-threaded engine)
import { serve, launch } from './serve.mjs';

const { server, base } = await serve(process.argv[2], () => null, { mode: 'isolated' });
const backend_asked = process.argv[3] || 'cpu';
const browser = await launch();
const page = await browser.newPage();
const t0 = Date.now();
await page.goto(base + '?backend=' + (backend_asked === 'cpu' ? 'cpu' : 'webgpu') + (process.argv[4] ? '&' + process.argv[4] : ''));
await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: 300000 });
const ready_ms = Date.now() - t0;
const computed = page.locator('.results .muted', { hasText: 'computed in' }).first();
await computed.waitFor({ timeout: 900000 });
const concept = await computed.innerText();
await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: 900000 });
const unit = 'The history of the printing press begins in the fifteenth century, when movable type changed how books were made and read across Europe. ';
await page.getByTestId('prompt-input').fill(unit.repeat(8));
await page.getByTestId('max-tokens').fill('128');
await page.getByTestId('generate').click();
await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: 600000 });
const stats = await page.locator('.stats').first().innerText();
const backend = await page.getByTestId('backend-name').innerText();
// The page's own benchmark (the panel a visitor runs): prefill, decode and a concept's compute
// timed inside the engine's worker, without the page drawing each token.
await page.locator('[data-testid=bench] summary').click();
await page.getByTestId('bench-run').click();
await page.waitForSelector('[data-testid=bench-json]', { timeout: 900000 });
const b = JSON.parse(await page.getByTestId('bench-json').inputValue());
const page_bench = { prefill_tok_s: b.prefill_tok_s, decode_tok_s: b.decode_tok_s, concept_ms: b.concept_ms, concept_stages_ms: b.concept_stages_ms, backend: b.backend };
await browser.close(); server.close();
console.log(JSON.stringify({ ready_ms, backend, concept, stats, page_bench }));
