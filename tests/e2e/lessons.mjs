// End-to-end test of the lessons and of the page as a teacher uses it, in headless Chromium
// with the real default model (CPU backend): every lesson in the menu opens its lesson panel
// with its steps (next / back work; a screenshot of each first step), a step that selects a
// layer selects it in the chart, steps that run the reading view, a generation and the sweep
// run them; every chart's SVG has axis titles; keyboard (arrows on the layer chart, Enter on
// Next) and a metric's explanation on focus; large text widens the charts; no horizontal
// overflow at 390 x 844 (and 360); screenshots at 390 and 1920 px.
// Prints one JSON line with what it saw. Usage: node lessons.mjs DIST SHOTS
import fs from 'node:fs';
import path from 'node:path';
import { serve, launch, untitledCharts, report } from './serve.mjs';

const [dist, shots] = process.argv.slice(2);
const { server, base } = await serve(dist);
const browser = await launch({ webgpu: false });
const out = { console_errors: [], lessons: [] };
const T = 600000;
const ids = async (page, id) => ((await page.getByTestId(id).getAttribute('data-ids')) || '').split(',').filter(Boolean).map(Number);
const shot = async (page, name, fullPage = false) => { if (shots) await page.screenshot({ path: path.join(shots, name), fullPage }); };
const settled = page => page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
const step = page => page.getByTestId('lesson-panel').getAttribute('data-step').then(Number);
// The step after a click on Next or Back: waits (up to 15 s) for it to leave `from`, then two
// animation frames (the panel scrolls to its current step and moves the focus in the next frame:
// a click sent before that, on a loaded machine, can land where the button no longer is), then
// reads it.
const stepAfter = async (page, from) => {
  await page.waitForFunction(f => document.querySelector('[data-testid=lesson-panel]')?.dataset.step !== String(f), from, { timeout: 15000 }).catch(() => {});
  await page.evaluate(() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r))));
  return step(page);
};
const overflow = page => page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
const untitled = untitledCharts;
const selectedLayer = page => page.evaluate(() => {
  const r = document.querySelector('[data-testid=layer-chart] .col rect.sel');
  return r ? Number(r.parentElement.dataset.layer) : null;
});
await report(out, async () => {
  const index = JSON.parse(fs.readFileSync(path.join(dist, 'presets', 'index.json'), 'utf8'));
  const lessons = index.filter(e => e.kind === 'lesson');
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await ctx.newPage();
  page.on('console', m => { if (m.type() === 'error') out.console_errors.push(m.text()); });
  page.on('pageerror', e => out.console_errors.push(String(e)));
  await page.goto(base + '?backend=cpu');
  await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: T });
  await settled(page);
  out.overflow_start_1280 = await overflow(page);

  // Every lesson: its panel and steps, next and back, a screenshot of its first step.
  for (const l of lessons) {
    await page.getByTestId('presets').selectOption(l.file);
    await page.waitForSelector('[data-testid=lesson-panel]', { timeout: T });
    await page.waitForFunction(t => document.querySelector('[data-testid=lesson-panel] h2').textContent.includes(t), l.title.split(':')[0], { timeout: T });
    const r = { file: l.file, title: await page.locator('[data-testid=lesson-panel] h2').innerText() };
    r.steps = await page.getByTestId('lesson-step').count();
    r.first = await step(page);
    r.back_disabled = await page.getByTestId('lesson-back').isDisabled();
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot(page, `lesson-${path.basename(l.file, '.json')}.png`);
    await page.getByTestId('lesson-next').click();
    r.after_next = await stepAfter(page, r.first);
    await page.getByTestId('lesson-back').click();
    r.after_back = await stepAfter(page, r.after_next);
    out.lessons.push(r);
  }

  // The reading lesson: step 2 selects layer 2, step 3 layer 21; step 5 runs the reading view.
  await page.getByTestId('presets').selectOption('lesson-reading-a-concept.json');
  await page.waitForFunction(() => document.querySelector('[data-testid=lesson-panel] h2')?.textContent.includes('Reading a concept'), null, { timeout: T });
  await page.waitForSelector('[data-testid=layer-chart]', { timeout: T });
  await settled(page);
  out.untitled_results = await untitled(page);
  await page.getByTestId('lesson-next').click();
  await page.waitForFunction(() => document.querySelector('[data-testid=layer-chart] .col rect.sel')?.parentElement.dataset.layer === '2', null, { timeout: T });
  out.layer_step2 = await selectedLayer(page);
  // Keyboard: Enter on the focused Next button; arrows on the focused chart.
  await page.getByTestId('lesson-next').focus();
  await page.keyboard.press('Enter');
  await page.waitForFunction(() => document.querySelector('[data-testid=lesson-panel]').dataset.step === '2', null, { timeout: T });
  out.layer_step3 = await selectedLayer(page);
  await page.getByTestId('layer-chart').focus();
  await page.keyboard.press('ArrowRight');
  out.layer_arrow = await selectedLayer(page);
  out.chart_focus_outline = await page.evaluate(() => getComputedStyle(document.querySelector('[data-testid=layer-chart]')).outlineStyle);
  // A metric's explanation shows on keyboard focus.
  const term = page.locator('[data-testid=layer-facts] [data-testid=term]').first();
  out.tip_hidden = await term.locator('.tip').isVisible();
  await term.focus();
  out.tip_on_focus = await term.locator('.tip').isVisible();
  out.tip_text = await term.locator('.tip').innerText();
  await page.getByTestId('lesson-next').click();
  await page.getByTestId('lesson-next').click();
  await page.waitForSelector('[data-testid=reading-view]', { timeout: T });
  out.reading_label = await page.getByTestId('reading-view').getAttribute('aria-label');
  out.reading_tokens = await page.locator('[data-testid=reading-view] .tok').count();
  await settled(page);
  out.next_disabled_at_end = await page.getByTestId('lesson-next').isDisabled();

  // The steering lesson: step 2 generates (baseline and steered), step 4 sweeps.
  await page.getByTestId('presets').selectOption('lesson-steering-sentiment.json');
  await page.waitForFunction(() => document.querySelector('[data-testid=lesson-panel] h2')?.textContent.includes('mean difference'), null, { timeout: T });
  await settled(page);
  await page.getByTestId('lesson-next').click();
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: T });
  await page.waitForSelector('[data-testid=steered-output][data-state=done]', { timeout: T });
  out.steer_baseline = await ids(page, 'baseline-output');
  out.steer_steered = await ids(page, 'steered-output');
  await page.getByTestId('lesson-next').click();
  await page.getByTestId('lesson-next').click();
  await page.waitForSelector('[data-testid=sweep-ppl]', { timeout: T });
  await page.waitForFunction(() => !document.querySelector('[data-testid=sweep]').disabled, null, { timeout: T });
  out.sweep_charts = await page.locator('[data-testid^=sweep-] ').count();
  out.untitled_all = await untitled(page);
  out.svg_count = await page.locator('main svg').count();
  await shot(page, 'lesson-sweep.png');

  // Large text: one column, so the chart is wider.
  const w0 = (await page.getByTestId('layer-chart').boundingBox()).width;
  await page.locator('header.top input[type=checkbox]').check();
  const w1 = (await page.getByTestId('layer-chart').boundingBox()).width;
  out.large_chart_widths = [w0, w1];
  await page.locator('header.top input[type=checkbox]').uncheck();

  // Any screen: 390 x 844 (and 360) with a lesson open and every panel filled; screenshots.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => window.scrollTo(0, 0));
  out.overflow_390 = await overflow(page);
  await shot(page, 'page-390.png', true);
  await page.setViewportSize({ width: 360, height: 740 });
  out.overflow_360 = await overflow(page);
  await page.setViewportSize({ width: 1920, height: 1080 });
  out.overflow_1920 = await overflow(page);
  await page.evaluate(() => window.scrollTo(0, 0));
  await shot(page, 'page-1920.png', true);

  // A lesson travels in a share link, at its open step.
  await page.getByTestId('share').click();
  const shared = await page.getByTestId('share-url').inputValue();
  const fresh = await (await browser.newContext({ viewport: { width: 390, height: 844 } })).newPage();
  await fresh.goto(shared.replace(/^[^#]*/, base + '?backend=cpu'));
  await fresh.waitForSelector('[data-testid=lesson-panel]', { timeout: T });
  out.shared_title = await fresh.locator('[data-testid=lesson-panel] h2').innerText();
  out.shared_step = Number(await fresh.getByTestId('lesson-panel').getAttribute('data-step'));
  out.shared_overflow_390 = await overflow(fresh);
  await fresh.getByTestId('lesson-close').click();
  out.closed = await fresh.getByTestId('lesson-panel').count();
}, async () => {
  await browser.close();
  server.close();
});
