// End-to-end test of the causal tools in headless Chromium with the real default model (CPU
// backend): conditional steering from two share links (condition met / not met), the
// activation-patching heatmap (and one cell's distribution), the logit lens, and a three-turn
// conversation from a link: per-turn readings, the steered reply kept as a fourth turn, shared
// and reopened in a fresh context.
// Prints one JSON line with what it saw; screenshots go to SHOTS.
// Usage: node causal.mjs DIST LINK_MET LINK_NOT_MET SHOTS LINK_CONVERSATION
import path from 'node:path';
import { serve, launch, untitledCharts, report } from './serve.mjs';

const [dist, linkMet, linkNot, shots, linkConv] = process.argv.slice(2);
const { server, base } = await serve(dist);
const browser = await launch({ webgpu: false });
const out = { console_errors: [] };
const T = 600000;
const ids = async (page, id) => ((await page.getByTestId(id).getAttribute('data-ids')) || '').split(',').filter(Boolean).map(Number);
const shot = async (page, name) => { if (shots) await page.screenshot({ path: path.join(shots, name), fullPage: true }); };
const untitled = untitledCharts;
const idle = page => page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
await report(out, async () => {
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.on('console', m => { if (m.type() === 'error') out.console_errors.push(m.text()); });
  page.on('pageerror', e => out.console_errors.push(String(e)));

  // Conditional steering, from links: generate, read the verdict and both outputs.
  out.condition = [];
  for (const link of [linkMet, linkNot]) {
    // A change of fragment alone is a same-document navigation: leave the page first.
    await page.goto('about:blank');
    await page.goto(base + '?backend=cpu' + link);
    await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: T });
    await idle(page);
    const on = await page.getByTestId('condition-on').isChecked();
    await page.getByTestId('generate').click();
    await page.waitForSelector('[data-testid=condition-result]', { timeout: T });
    await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: T });
    await page.waitForFunction(() => document.querySelector('[data-testid=steered-output]').dataset.state !== 'running', null, { timeout: T });
    const r = page.getByTestId('condition-result');
    out.condition.push({
      checkbox: on,
      met: (await r.getAttribute('data-met')) === 'true',
      score: Number(await r.getAttribute('data-score')),
      text: await r.innerText(),
      baseline: await ids(page, 'baseline-output'),
      steered: await ids(page, 'steered-output'),
    });
    await shot(page, `condition-${out.condition.length}.png`);
  }

  // Activation patching with the form's defaults (France -> Italy, " Rome" vs " Paris").
  await page.getByTestId('patch-run').scrollIntoViewIfNeeded();
  const t0 = Date.now();
  await page.getByTestId('patch-run').click();
  await page.waitForSelector('[data-testid=patch-heatmap]', { timeout: T });
  out.patch_ms = Date.now() - t0;
  out.patch = await page.locator('[data-testid=patch-cell]').evaluateAll(els => els.map(e => [Number(e.dataset.layer), Number(e.dataset.pos), Number(e.dataset.value)]));
  await page.locator('[data-testid=patch-cell][data-layer="0"][data-pos="3"]').click();
  await page.waitForSelector('[data-testid=patch-cell-top]', { timeout: T });
  out.cell_top = await page.locator('[data-testid=patch-cell-top] tbody tr td:first-child').allInnerTexts();
  await shot(page, 'patch.png');
  // Along a concept's direction.
  await page.getByTestId('patch-along').selectOption({ index: 1 });
  await page.getByTestId('patch-run').click();
  await page.waitForSelector('[data-testid=patch-heatmap][data-patched^="direction:"]', { timeout: T });
  out.patched_along = await page.getByTestId('patch-heatmap').getAttribute('data-patched');
  // Unequal lengths: said, no heatmap change.
  await page.getByTestId('patch-base').fill('The capital of the French Republic is');
  await page.getByTestId('patch-run').click();
  await page.waitForSelector('[data-testid=patch-error]', { timeout: T });
  out.patch_error = await page.getByTestId('patch-error').innerText();

  // The logit lens.
  await page.getByTestId('lens-input').fill('The capital of France is the city of');
  await page.getByTestId('lens-track').fill(' Paris');
  await page.getByTestId('lens-run').click();
  await page.waitForSelector('[data-testid=lens-grid]', { timeout: T });
  out.lens = await page.locator('[data-testid=lens-cell]').evaluateAll(els => els.map(e => [Number(e.dataset.layer), Number(e.dataset.pos), e.dataset.top, Number(e.dataset.prob), Number(e.dataset.tracked)]));
  out.lens_tracked_rows = await page.locator('[data-testid=lens-tracked] .turn').count();
  await page.getByTestId('lens-grid').scrollIntoViewIfNeeded();
  await shot(page, 'lens.png');
  // Attention patterns at layer 3.
  await page.getByTestId('attention-input').fill('The capital of France is the city of');
  await page.getByTestId('attention-layer').fill('3');
  await page.getByTestId('attention-layer').dispatchEvent('change');
  await page.getByTestId('attention-run').click();
  await page.waitForSelector('[data-testid=attention-view][data-layer="3"]', { timeout: T });
  out.attention_heads = await page.getByTestId('attention-head').count();
  out.attention_head0 = await page.locator('[data-testid=attention-head][data-head="0"] rect').evaluateAll(els => els.map(e => Number(e.getAttribute('fill-opacity')) ** 2));
  await page.getByTestId('attention-view').scrollIntoViewIfNeeded();
  await shot(page, 'attention.png');
  out.untitled_attention = await untitled(page);
  // No horizontal overflow from the new tables at phone width.
  await page.setViewportSize({ width: 390, height: 844 });
  out.overflow_390 = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  await page.setViewportSize({ width: 1280, height: 900 });

  // A conversation from a link: continue it, read it turn by turn, keep the steered reply.
  await page.goto('about:blank');
  await page.goto(base + '?backend=cpu' + linkConv);
  await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: T });
  await idle(page);
  out.turns_opened = await page.getByTestId('turn').count();
  await page.getByTestId('conversation-continue').click();
  await page.waitForSelector('[data-testid=turn-reading]', { timeout: T });
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: T });
  await page.waitForSelector('[data-testid=steered-output][data-state=done]', { timeout: T });
  out.readings = await page.locator('[data-testid=turn-reading]').evaluateAll(els => els.map(e => e.dataset.values.split(',').map(Number)));
  out.conv_baseline = await ids(page, 'baseline-output');
  out.conv_steered = await ids(page, 'steered-output');
  out.conv_chart = await page.getByTestId('conversation-readings').count();
  await page.getByTestId('conversation-keep-steered').click();
  out.turns_kept = await page.getByTestId('turn').count();
  await page.getByTestId('conversation').scrollIntoViewIfNeeded();
  await shot(page, 'conversation.png');
  out.untitled_conversation = await untitled(page);
  await page.getByTestId('share').click();
  const shared = await page.getByTestId('share-url').inputValue();
  const fresh = await (await browser.newContext({ viewport: { width: 1280, height: 900 } })).newPage();
  await fresh.goto(shared.replace(/^[^#]*/, base + '?backend=cpu'));
  await fresh.waitForSelector('[data-testid=turn]', { timeout: T });
  out.turns_reloaded = await fresh.locator('[data-testid=turn-text]').evaluateAll(els => els.map(e => e.value));
  out.turns_roles = await fresh.locator('[data-testid=turn]').evaluateAll(els => els.map(e => e.dataset.role));
}, async () => {
  await browser.close();
  server.close();
});
