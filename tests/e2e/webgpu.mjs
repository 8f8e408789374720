// The playground flow with the model on WebGPU (Chromium's SwiftShader adapter, asked for with
// ?backend=webgpu) and on the CPU, on the same small setup (a share link): the concept is
// computed (chart, what it promotes), steered generation, the control-vector export and the
// reading view. The caller compares the two. (A strength sweep is 12 steered generations and
// 52 forward passes: over 15 minutes on SwiftShader, so the sweep on a GPU is checked natively,
// on lavapipe, in gpu_golden.rs: the same generic code.) Then a WebGPU device lost in the middle
// of a concept compute (test hook): the page moves to the CPU and finishes there.
// Prints one JSON line. Usage: node webgpu.mjs DIST LINK_FRAGMENT OUT_DIR
import path from 'node:path';
import { serve, launch, report } from './serve.mjs';

const [dist, link, outDir] = process.argv.slice(2);
const { server, base } = await serve(dist);
const browser = await launch();
const out = { console_errors: [] };
const T = 900000;
const idle = page => page.waitForFunction(() => !document.querySelector('[data-testid=working]'), null, { timeout: T });
const ids = async (page, id) => ((await page.getByTestId(id).getAttribute('data-ids')) || '').split(',').filter(Boolean).map(Number);
const t00 = Date.now();
const log = (...a) => console.error(`[${((Date.now() - t00) / 1000).toFixed(0)} s]`, ...a);
const chart = page => page.locator('[data-testid=layer-chart] .col').evaluateAll(els => els.map(e => Number(e.dataset.auroc)));

async function flow(backend) {
  const r = {};
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('console', m => { if (m.type() === 'error') out.console_errors.push(`${backend}: ${m.text()}`); });
  page.on('pageerror', e => out.console_errors.push(`${backend}: ${e}`));
  await page.goto(base + '?backend=' + backend + link);
  await page.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: T });
  const name = page.getByTestId('backend-name');
  r.backend = await name.innerText();
  r.concepts = await name.getAttribute('data-concepts');
  r.memory = await page.getByTestId('memory').innerText();
  // The link's concept computes on its own (chart, then what it promotes at the best layer).
  let t = Date.now();
  await page.waitForSelector('[data-testid=layer-chart]', { timeout: T });
  r.chart_ms = Date.now() - t;
  await idle(page);
  r.concept_ms = Date.now() - t;
  r.chart = await chart(page);
  log(backend, 'concept computed');
  r.promotes = await page.locator('[data-testid=promotes] .tokens > div:first-child li code').allInnerTexts();
  // Baseline and steered generation.
  t = Date.now();
  await page.getByTestId('generate').click();
  await page.waitForSelector('[data-testid=baseline-output][data-state=done]', { timeout: T });
  await page.waitForSelector('[data-testid=steered-output][data-state=done]', { timeout: T });
  r.generate_ms = Date.now() - t;
  r.baseline_ids = await ids(page, 'baseline-output');
  r.steered_ids = await ids(page, 'steered-output');
  log(backend, 'generated');
  // The intervention as a llama.cpp control vector.
  const card = page.getByTestId('intervention').last();
  const [dl] = await Promise.all([page.waitForEvent('download', { timeout: T }), card.getByTestId('export-cv').click()]);
  r.export_path = path.join(outDir, `control-vector-${backend}.gguf`);
  await dl.saveAs(r.export_path);
  log(backend, 'exported');
  // The steered text through the concept.
  await page.locator('.out-col').last().locator('button.link').click();
  await page.getByTestId('read-text').click();
  await page.waitForSelector('[data-testid=reading-view] .tok', { timeout: T });
  r.reading_values = await page.locator('[data-testid=reading-view] .tok').evaluateAll(els => els.map(e => Number(e.dataset.value)));
  log(backend, 'read');
  await page.screenshot({ path: path.join(outDir, `webgpu-flow-${backend}.png`), fullPage: true });
  await page.close();
  return r;
}

await report(out, async () => {
  out.webgpu = await flow('webgpu');
  out.cpu = await flow('cpu');
  // The device is lost in the middle of the concept compute: the page loads the model again
  // on the CPU and computes the concept there, the setup kept.
  const lost = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  lost.on('pageerror', e => out.console_errors.push(`lost: ${e}`));
  await lost.goto(base + '?backend=webgpu&lose-gpu-in=analyze' + link);
  await lost.waitForSelector('[data-testid=model-status][data-state=ready]', { timeout: T });
  log('lost: ready');
  out.lost = { concepts_before: await lost.getByTestId('backend-name').getAttribute('data-concepts') };
  await lost.waitForSelector('[data-testid=backend-name][data-concepts=cpu]', { timeout: T });
  await lost.waitForSelector('[data-testid=layer-chart]', { timeout: T });
  await idle(lost);
  out.lost.backend = await lost.getByTestId('backend-name').innerText();
  out.lost.concepts = await lost.getByTestId('backend-name').getAttribute('data-concepts');
  out.lost.notice = await lost.getByTestId('notice').count() ? await lost.getByTestId('notice').innerText() : '';
  out.lost.chart = await chart(lost);
  out.lost.tabs = await lost.locator('.tab').allInnerTexts();
  await lost.close();
}, async () => {
  await browser.close();
  server.close();
});
