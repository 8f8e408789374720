// A large model in the page (issue 12's scale check): open MODEL_PATH_IN_DIST on the CPU path,
// generate N tokens, and report the load time, the worker's peak wasm memory (the model bar's
// memory line) and the generated ids. Prints one JSON line.
// Usage: node scale.mjs DIST MODEL_PATH_IN_DIST PROMPT N [BACKEND]
import { serve, launch, report } from './serve.mjs';

const [dist, modelPath, prompt, n, backend] = process.argv.slice(2);
const { server, base } = await serve(dist);
const browser = await launch();
const out = { console_errors: [] };
const T = 1200000;
await report(out, async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('console', m => { if (m.type() === 'error') out.console_errors.push(m.text()); });
  page.on('pageerror', e => out.console_errors.push(String(e)));
  const t0 = Date.now();
  await page.goto(`${base}?backend=${backend || 'cpu'}&model=${encodeURIComponent(modelPath)}`);
  await page.waitForSelector('[data-testid=model-status][data-state=ready], [data-testid=model-status][data-state=error]', { timeout: T });
  out.status_text = await page.getByTestId('model-status').innerText();
  if (await page.getByTestId('model-status').getAttribute('data-state') !== 'ready') throw new Error(out.status_text);
  out.ready_ms = Date.now() - t0;
  out.memory = await page.getByTestId('memory').innerText();
  const m = out.memory.match(/worker memory ([\d.]+) MB/);
  out.wasm_mb = m ? Number(m[1]) : null;
  out.backend = await page.getByTestId('backend-name').innerText();
  await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
  await page.getByTestId('prompt-input').fill(prompt);
  await page.getByTestId('max-tokens').fill(String(n));
  const t1 = Date.now();
  await page.getByTestId('generate').click();
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: T });
  out.generate_ms = Date.now() - t1;
  out.baseline_ids = ((await page.getByTestId('baseline-output').getAttribute('data-ids')) || '').split(',').filter(Boolean).map(Number);
}, async () => {
  await browser.close();
  server.close();
});
