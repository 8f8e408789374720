// The page with another family: Gemma 3 270M (Q4_K_M, SentencePiece) opened by URL on the CPU
// path, a concept computed from examples, an intervention added, baseline and steered generated.
// Prints one JSON line with what it saw.
// Usage: node gemma.mjs DIST MODEL_PATH_IN_DIST CONCEPT_JSON PROMPT N SHOTS
import fs from 'node:fs';
import path from 'node:path';
import { serve, launch, report } from './serve.mjs';

const [dist, modelPath, conceptFile, prompt, n, shots] = process.argv.slice(2);
const concept = JSON.parse(fs.readFileSync(conceptFile, 'utf8'));
const { server, base } = await serve(dist);
const browser = await launch();
const out = { console_errors: [] };
const T = 900000;
const ids = async (page, id) => ((await page.getByTestId(id).getAttribute('data-ids')) || '').split(',').filter(Boolean).map(Number);
await report(out, async () => {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('console', m => { if (m.type() === 'error') out.console_errors.push(m.text()); });
  page.on('pageerror', e => out.console_errors.push(String(e)));
  const t0 = Date.now();
  await page.goto(`${base}?backend=cpu&model=${encodeURIComponent(modelPath)}`);
  await page.waitForSelector('[data-testid=model-status][data-state=ready], [data-testid=model-status][data-state=error]', { timeout: T });
  out.status_text = await page.getByTestId('model-status').innerText();
  if (await page.getByTestId('model-status').getAttribute('data-state') !== 'ready') throw new Error(out.status_text);
  out.ready_ms = Date.now() - t0;
  await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
  await page.getByTestId('concept-add').click();
  await page.getByTestId('concept-name').fill(concept.name);
  await page.getByTestId('positive-examples').fill(concept.pairs.map(p => p[0]).join('\n'));
  await page.getByTestId('negative-examples').fill(concept.pairs.map(p => p[1]).join('\n'));
  const t1 = Date.now();
  await page.getByTestId('compute-concept').click();
  await page.waitForFunction(name => {
    const h = document.querySelector('.results h2');
    return h && h.textContent.includes(name) && document.querySelector('[data-testid=layer-chart]');
  }, concept.name, { timeout: T });
  out.concept_ms = Date.now() - t1;
  out.chart_layers = await page.locator('[data-testid=layer-chart] .col').count();
  out.best_layer = Number(await page.locator('[data-testid=layer-chart] rect.best').evaluate(r => r.parentElement.dataset.layer));
  await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
  await page.getByTestId('intervention-add').click();
  const card = page.getByTestId('intervention').last();
  out.intervention_layers = await card.getByTestId('intervention-layers').innerText();
  out.intervention_strength = Number(await card.locator('input.num').inputValue());
  await page.getByTestId('prompt-input').fill(prompt);
  await page.getByTestId('max-tokens').fill(String(n));
  await page.getByTestId('generate').click();
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: T });
  await page.waitForSelector('[data-testid=steered-output][data-state=done]', { timeout: T });
  out.baseline_ids = await ids(page, 'baseline-output');
  out.steered_ids = await ids(page, 'steered-output');
  out.baseline_text = await page.getByTestId('baseline-output').innerText();
  out.steered_text = await page.getByTestId('steered-output').innerText();
  if (shots) await page.screenshot({ path: path.join(shots, 'gemma.png'), fullPage: true });
}, async () => {
  await browser.close();
  server.close();
});
