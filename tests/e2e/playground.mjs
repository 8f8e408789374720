// End-to-end test of the playground with the real default model, in headless Chromium:
// define a concept from examples, compute it (chart), add an intervention, generate baseline
// and steered side by side, read a text through the concept, share the setup and open the
// link in a fresh browser context (no storage) to see it restored and recomputed, Stop.
// Prints one JSON line with what it saw; screenshots of the main views go to SHOTS.
// Usage: node playground.mjs DIST CONCEPT_JSON PROMPT N SHOTS [RANDOM_LABELS_JSON]
import fs from 'node:fs';
import path from 'node:path';
import { serve, launch, report } from './serve.mjs';

const [dist, conceptFile, prompt, n, shots, randomFile] = process.argv.slice(2);
const concept = JSON.parse(fs.readFileSync(conceptFile, 'utf8'));
const { server, base } = await serve(dist);
const browser = await launch();
const out = { console_errors: [] };
const T = 600000;
const ids = async (page, id) => ((await page.getByTestId(id).getAttribute('data-ids')) || '').split(',').filter(Boolean).map(Number);
const shot = async (page, name) => { if (shots) await page.screenshot({ path: path.join(shots, name), fullPage: true }); };
await report(out, async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await ctx.newPage();
  page.on('console', m => { if (m.type() === 'error') out.console_errors.push(m.text()); });
  page.on('pageerror', e => out.console_errors.push(String(e)));
  const t0 = Date.now();
  // On the CPU backend: the flow on WebGPU (SwiftShader here, ~50x slower) is webgpu.mjs's,
  // on a smaller setup.
  await page.goto(base + '?backend=cpu');
  await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: T });
  out.ready_ms = Date.now() - t0;
  out.backend = await page.getByTestId('backend-name').innerText();
  // The starter concept computes on its own; wait for it so the worker is free.
  await page.waitForSelector('[data-testid=layer-chart]', { timeout: T });
  await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });

  // A new concept from examples.
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
  const chart = async (p) => p.locator('[data-testid=layer-chart] .col').evaluateAll(els => els.map(e => ({
    auroc: Number(e.dataset.auroc), lo: Number(e.dataset.nullLo), hi: Number(e.dataset.nullHi), probe: Number(e.dataset.probe),
  })));
  out.chart = await chart(page);
  out.null_band = await page.getByTestId('null-band').count();
  out.best_layer = Number(await page.locator('[data-testid=layer-chart] rect.best').evaluate(r => r.parentElement.dataset.layer));
  await page.locator(`[data-testid=layer-chart] .col[data-layer="${out.best_layer}"]`).click();
  out.best_title = await page.locator('.facts h3').innerText();
  await page.waitForSelector('[data-testid=promotes] li', { timeout: T });
  out.promotes_best = await page.locator('[data-testid=promotes] .tokens > div:first-child li code').allInnerTexts();
  await shot(page, 'concept.png');
  // Click a layer in the chart: it becomes the selected one.
  await page.locator('[data-testid=layer-chart] .col[data-layer="12"]').click();
  out.selected_layer_title = await page.locator('.facts h3').innerText();
  // What the direction promotes at the selected layer, on request.
  await page.getByTestId('promotes-compute').click();
  await page.waitForSelector('[data-testid=promotes] li', { timeout: T });
  out.promotes_12 = await page.locator('[data-testid=promotes] .tokens > div:first-child li code').allInnerTexts();
  await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });

  // An intervention at the best layer with a default strength.
  await page.getByTestId('intervention-add').click();
  const card = page.getByTestId('intervention').last();
  out.intervention_layers = await card.getByTestId('intervention-layers').innerText();
  out.intervention_strength = Number(await card.locator('input.num').inputValue());
  out.intervention_op = await card.getByTestId('intervention-op').inputValue();
  // Only this card steers (the starter concept has none; make sure).
  out.cards = await page.getByTestId('intervention').count();

  await page.getByTestId('prompt-input').fill(prompt);
  await page.getByTestId('max-tokens').fill(String(n));
  await page.getByTestId('generate').click();
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: T });
  await page.waitForSelector('[data-testid=steered-output][data-state=done]', { timeout: T });
  out.baseline_ids = await ids(page, 'baseline-output');
  out.steered_ids = await ids(page, 'steered-output');
  out.baseline_text = await page.getByTestId('baseline-output').innerText();
  out.steered_text = await page.getByTestId('steered-output').innerText();
  await shot(page, 'steering.png');

  // The card as a llama.cpp control vector, downloaded.
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: T }), card.getByTestId('export-cv').click()]);
  out.export_name = dl.suggestedFilename();
  if (shots) { out.export_path = path.join(shots, 'exported-control-vector.gguf'); await dl.saveAs(out.export_path); }

  // Reading view: the steered text through the concept.
  await page.locator('.out-col').last().locator('button.link').click();
  await page.getByTestId('read-text').click();
  await page.waitForSelector('[data-testid=reading-view] .tok', { timeout: T });
  out.reading_tokens = await page.locator('[data-testid=reading-view] .tok').count();
  out.reading_values = await page.locator('[data-testid=reading-view] .tok').evaluateAll(els => els.map(e => Number(e.dataset.value)));
  out.reading_coloured = await page.locator('[data-testid=reading-view] .tok').evaluateAll(els => els.filter(e => /rgba/.test(e.getAttribute('style') || '')).length);
  // The same text as the assistant's reply in a chat: the projection by turn.
  await page.getByTestId('reading-chat').check();
  await page.getByTestId('read-text').click();
  await page.waitForSelector('[data-testid=reading-turns] .turn', { timeout: T });
  out.reading_turns = await page.locator('[data-testid=reading-turns] .turn .role').allInnerTexts();
  await shot(page, 'reading.png');
  await page.getByTestId('reading-chat').uncheck();

  // Share, then open the link in a fresh context (no localStorage): the same setup, recomputed.
  await page.getByTestId('share').click();
  out.share_url = await page.getByTestId('share-url').inputValue();
  const fresh = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const p2 = await fresh.newPage();
  p2.on('pageerror', e => out.console_errors.push(String(e)));
  await p2.goto(out.share_url);
  await p2.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: T });
  await p2.locator('.tab', { hasText: concept.name }).click();
  out.restored = {
    name: await p2.getByTestId('concept-name').inputValue(),
    positives: await p2.getByTestId('positive-examples').inputValue(),
    negatives: await p2.getByTestId('negative-examples').inputValue(),
    prompt: await p2.getByTestId('prompt-input').inputValue(),
    max_tokens: await p2.getByTestId('max-tokens').inputValue(),
    cards: await p2.getByTestId('intervention').count(),
    layers: await p2.getByTestId('intervention').last().getByTestId('intervention-layers').innerText(),
    strength: Number(await p2.getByTestId('intervention').last().locator('input.num').inputValue()),
  };
  await p2.waitForFunction(name => {
    const h = document.querySelector('.results h2');
    return h && h.textContent.includes(name);
  }, concept.name, { timeout: T });
  out.restored.recomputed = true;
  // Generating there gives the same steered text.
  await p2.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
  await p2.getByTestId('generate').click();
  await p2.waitForSelector('[data-testid=steered-output][data-state=done]', { timeout: T });
  out.restored.steered_ids = await ids(p2, 'steered-output');
  await shot(p2, 'shared-link.png');
  await fresh.close();

  // The README's example link (the frozen corpus's reference add case) opens its setup; a link
  // carrying HTML in its texts shows it as text.
  const readmeLink = fs.readFileSync(new URL('../data/share-links/v1/reference-add.link', import.meta.url), 'utf8').trim();
  const everyOp = fs.readFileSync(new URL('../data/share-links/v1/every-op.link', import.meta.url), 'utf8').trim();
  const c3 = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const p3 = await c3.newPage();
  p3.on('pageerror', e => out.console_errors.push(String(e)));
  await p3.goto(base + readmeLink);
  await p3.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: T });
  out.readme_link = {
    tabs: await p3.locator('.tab').allInnerTexts(),
    layers: await p3.getByTestId('intervention-layers').first().innerText(),
    strength: Number(await p3.getByTestId('intervention').first().locator('input.num').inputValue()),
    prompt: await p3.getByTestId('prompt-input').inputValue(),
    max_tokens: await p3.getByTestId('max-tokens').inputValue(),
  };
  await p3.goto('about:blank');
  await p3.goto(base + everyOp);
  await p3.waitForSelector('[data-testid=model-status]', { timeout: T });
  out.html_as_text = {
    reading_input: await p3.getByTestId('reading-input').inputValue(),
    b_elements: await p3.locator('main b:not([data-testid])').count(),
    notice: await p3.getByTestId('notice').count() ? await p3.getByTestId('notice').innerText() : '',
  };
  await c3.close();

  // A reload keeps the working setup (autosave).
  const t2 = Date.now();
  await page.reload();
  await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: T });
  out.cached_ready_ms = Date.now() - t2;
  out.cached_status = await page.getByTestId('model-status').innerText();
  out.after_reload_tabs = await page.locator('.tab').allInnerTexts();

  // Stop stops.
  await page.getByTestId('max-tokens').fill('400');
  await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
  await page.getByTestId('generate').click();
  await page.waitForFunction(() => (document.querySelector('[data-testid=baseline-output]').dataset.ids || '').split(',').length >= 3, null, { timeout: T });
  await page.getByTestId('stop').click();
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: 60000 });
  out.stopped_after = (await ids(page, 'baseline-output')).length;

  // Sweep: curves against strength.
  await page.getByTestId('max-tokens').fill(String(n));
  await page.getByTestId('sweep').click();
  await page.waitForSelector('[data-testid=sweep-chart]', { timeout: T });
  await page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
  out.sweep_rows = await page.locator('.sweep-table tr').count() - 1;
  out.sweep_charts = await page.locator('.small-chart svg').count();
  out.sweep_control_lines = await page.locator('.small-chart polyline.dashed').count();
  await shot(page, 'sweep.png');
  await page.getByTestId('prompt-input').scrollIntoViewIfNeeded();
  await page.locator('input[type=checkbox]').first().check();
  await shot(page, 'large-text.png');
  await page.locator('input[type=checkbox]').first().uncheck();

  // A concept of unrelated sentences with random labels: held out, it separates at chance,
  // inside the null band the chart draws.
  if (randomFile) {
    const rnd = JSON.parse(fs.readFileSync(randomFile, 'utf8'));
    await page.getByTestId('concept-add').click();
    await page.getByTestId('concept-name').fill(rnd.name);
    await page.getByTestId('positive-examples').fill(rnd.pairs.map(p => p[0]).join('\n'));
    await page.getByTestId('negative-examples').fill(rnd.pairs.map(p => p[1]).join('\n'));
    await page.getByTestId('compute-concept').click();
    await page.waitForFunction(name => {
      const h = document.querySelector('.results h2');
      return h && h.textContent.includes(name) && document.querySelector('[data-testid=layer-chart]');
    }, rnd.name, { timeout: T });
    out.random_chart = await chart(page);
    out.random_null_band = await page.getByTestId('null-band').count();
    await page.getByTestId('layer-chart').scrollIntoViewIfNeeded();
    await shot(page, 'random-labels.png');
  }
}, async () => {
  await browser.close();
  server.close();
});
