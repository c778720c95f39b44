// The page, end to end in headless Chromium on SwiftShader's WebGPU (make test-web): train the tiny
// preset and check the loss fell; download the model with its evaluation text and check that the
// native `wgpt eval` gives the loss the page reported; open a run the native binary trained, refuse
// a damaged one in one line, sample from the good one; screenshot the page and check its pixels;
// and, in a Chromium without WebGPU, check that the page says so in words. Any console error or
// uncaught exception fails it. Every wait has a deadline and names what it waited for.
//
//   node page.mjs SITE_DIR WGPT_BINARY NATIVE_RUN_DIR OUT_DIR        (see the Makefile's test-web)
//   node page.mjs --bench SITE_DIR STEPS                             (tokens/s and start-up, bench-web)
import { chromium } from 'playwright-core';
import { PNG } from 'pngjs';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import http from 'node:http';
import path from 'node:path';

const DEADLINE = 600_000; // ms, for any one wait: far beyond a loaded 2-core machine's slowest step
const WEBGPU = ['--enable-unsafe-webgpu', '--enable-unsafe-swiftshader', '--use-webgpu-adapter=swiftshader',
  '--use-angle=swiftshader', '--enable-features=Vulkan', '--disable-gpu-watchdog'];
const QUIET = ['--no-sandbox', '--headless=new', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';
// The native binary's GL backend probes EGL, which complains without a runtime directory.
const NATIVE = { encoding: 'utf8', env: { ...process.env, XDG_RUNTIME_DIR: process.env.XDG_RUNTIME_DIR || os.tmpdir() } };

function check(ok, what) {
  if (!ok) throw new Error(`check failed: ${what}`);
  console.log(`ok: ${what}`);
}

// A static server on 127.0.0.1 (a secure context, as WebGPU needs) with the MIME types modules and
// wasm streaming compilation want.
const TYPES = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.wasm': 'application/wasm',
  '.txt': 'text/plain; charset=utf-8', '.json': 'application/json' };
function serve(root) {
  const server = http.createServer((req, res) => {
    const rel = decodeURIComponent(new URL(req.url, 'http://x').pathname).replace(/^\/+/, '') || 'index.html';
    const file = path.join(path.resolve(root), rel);
    if (!file.startsWith(path.resolve(root)) || !fs.existsSync(file) || fs.statSync(file).isDirectory()) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[path.extname(file)] || 'application/octet-stream' });
    fs.createReadStream(file).pipe(res);
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

async function open(url, flags) {
  const browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: [...QUIET, ...flags] });
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 1100 } });
  const page = await context.newPage();
  const problems = [];
  page.on('console', (m) => { if (m.type() === 'error') problems.push(`console error: ${m.text()}`); });
  page.on('pageerror', (e) => problems.push(`uncaught: ${e.message}`));
  await page.goto(url);
  return { browser, page, problems };
}

// Waits until `fn` (run in the page) is true, failing with `what` when the deadline passes or
// when the page shows an error first (unless errors are what is awaited).
async function until(page, what, fn, arg, { errorsExpected = false } = {}) {
  const seen = await page.evaluate(() => (window.__wgpt ? window.__wgpt.errors.length : 0));
  const wait = (f) => page.waitForFunction(f, arg, { timeout: DEADLINE, polling: 100 });
  try {
    await Promise.race([wait(fn), errorsExpected ? new Promise(() => {}) : wait(new Function('arg', `return window.__wgpt && window.__wgpt.errors.length > ${seen}`))]);
  } catch (e) {
    throw new Error(`waited ${DEADLINE / 1000} s for ${what}, which did not happen: ${e.message}`);
  }
  const errors = await page.evaluate(() => window.__wgpt.errors);
  if (!errorsExpected && errors.length > seen) throw new Error(`the page showed an error while waiting for ${what}: ${errors.slice(seen).join('; ')}`);
}
const wgptState = (page) => page.evaluate(() => window.__wgpt);

async function train(page, preset, steps) {
  await page.selectOption('#preset', preset);
  await page.fill('#steps', String(steps));
  await page.click('#start');
  await until(page, `${steps} ${preset} steps in the page`, (n) => window.__wgpt.status === 'done' && window.__wgpt.steps.length >= n && window.__wgpt.evals.length > 0, steps);
  return wgptState(page);
}

// The page takes clicks while the worker trains, pauses, resumes and resets, on a run too long to
// end on its own while this happens.
async function interact(page) {
  await page.selectOption('#preset', 'tiny');
  await page.fill('#steps', '100000');
  await page.click('#start');
  await until(page, 'training to start', () => window.__wgpt.status === 'training' && window.__wgpt.steps.length >= 3);
  await page.click('#log');
  const at = (await wgptState(page)).steps.length;
  check(await page.isChecked('#log'), `a click during training (at step ${at}) is taken`);
  await until(page, 'training to go on after the click', (n) => window.__wgpt.steps.length > n + 2, at);
  await page.click('#log');
  await page.click('#pause');
  await until(page, 'the pause', () => window.__wgpt.status === 'paused');
  const paused = (await wgptState(page)).steps.length;
  check((await page.textContent('#pause')) === 'Resume', `paused at step ${paused}`);
  await page.click('#pause');
  await until(page, 'training to resume', (n) => window.__wgpt.status === 'training' && window.__wgpt.steps.length > n, paused);
  // Reset while a step is in flight: what that step reports is dropped, not drawn or thrown on.
  await page.click('#reset');
  await until(page, 'the reset', () => window.__wgpt.status === 'ready' && window.__wgpt.run === null);
  check((await wgptState(page)).steps.length === 0, 'reset cleared the run');
}

// The pixels of the screenshot inside an element's box.
function region(png, box) {
  const px = [];
  for (let y = Math.ceil(box.y); y < Math.floor(box.y + box.height); y++) {
    for (let x = Math.ceil(box.x); x < Math.floor(box.x + box.width); x++) {
      const i = 4 * (y * png.width + x);
      px.push([png.data[i], png.data[i + 1], png.data[i + 2]]);
    }
  }
  return px;
}

async function bench(site, steps) {
  const server = await serve(site);
  const url = `http://127.0.0.1:${server.address().port}/index.html`;
  for (const preset of ['tiny', 'shakespeare-char']) {
    const { browser, page } = await open(url, WEBGPU);
    await until(page, 'the adapter', () => window.__wgpt.status === 'ready');
    await page.evaluate(() => { document.getElementById('map-every').value = 0; document.getElementById('sample-every').value = 0; });
    const s = await train(page, preset, steps);
    const t = s.timings;
    console.log(JSON.stringify({ preset, steps, tokens_per_s: Math.round(s.tokens_per_s), adapter: s.gpu.description,
      wasm_ms: Math.round(t.wasm_ms), compile_ms: Math.round(t.compile_ms), first_step_after_start_ms: Math.round(t.first_step_ms - t.start_clicked_ms) }));
    await browser.close();
  }
  server.close();
}

async function main() {
  if (process.argv[2] === '--bench') return bench(process.argv[3], Number(process.argv[4] || 100));
  const [site, wgpt, nativeRun, out] = process.argv.slice(2);
  fs.mkdirSync(out, { recursive: true });
  const server = await serve(site);
  const url = `http://127.0.0.1:${server.address().port}/index.html`;

  // 1. No WebGPU: the page says so in words.
  {
    const { browser, page, problems } = await open(url, []);
    await until(page, 'the no-WebGPU sentence', () => !document.getElementById('nogpu').hidden);
    const said = await page.textContent('#nogpu');
    check(/WebGPU/.test(said) && /(enable|use a current)/.test(said), `without WebGPU the page says what is missing and how to get it: "${said}"`);
    check(problems.length === 0, `no console errors without WebGPU (${problems.join('; ')})`);
    await browser.close();
  }

  const { browser, page, problems } = await open(url, WEBGPU);
  await until(page, 'the adapter', () => window.__wgpt.status === 'ready');
  const adapter = await page.textContent('#adapter');
  check(/Adapter: \S/.test(adapter) && /shader-f16 (yes|no)/.test(adapter) && /binding \d+ MiB/.test(adapter), `the page names the adapter, f16 and limits: "${adapter}"`);

  // 2. Train tiny; the loss falls; the f32 fallback is announced where there is no f16.
  const steps = Number(process.env.WEB_STEPS || 60);
  await interact(page);
  const s = await train(page, 'tiny', steps);
  const mean = (a) => a.reduce((x, y) => x + y, 0) / a.length;
  const first = mean(s.steps.slice(0, 5).map((p) => p[1])), last = mean(s.steps.slice(-5).map((p) => p[1]));
  check(s.steps.length >= 50 && last < first - 0.3, `training ${s.steps.length} tiny steps in the page lowered the loss: ${first.toFixed(3)} -> ${last.toFixed(3)}`);
  if (!s.gpu.f16) check(/no shader-f16; running in f32/.test(s.run.notice || ''), `f32 fallback notice: "${s.run.notice}"`);
  check(s.maps && s.maps.t > 4 && s.samples.length > 0, `attention maps (${s.maps && s.maps.t} tokens) and a sample after training`);
  console.log(`page: ${Math.round(s.tokens_per_s)} tok/s; start-up: wasm ${Math.round(s.timings.wasm_ms)} ms, run built in ${Math.round(s.timings.compile_ms)} ms`);

  // 3. The screenshot: a drawn curve in the loss chart, a many-coloured map in the attention panel.
  await page.click('#grid');
  await page.waitForTimeout(300);
  const shot = path.join(out, '..', 'page.png');
  await page.screenshot({ path: shot, fullPage: true });
  const png = PNG.sync.read(fs.readFileSync(shot));
  const boxOf = (sel) => page.locator(sel).boundingBox();
  const loss = region(png, await boxOf('#loss-chart'));
  const curve = loss.filter(([r, g, b]) => Math.abs(r - 0x2b) < 40 && Math.abs(g - 0x6c) < 40 && Math.abs(b - 0xb0) < 40).length;
  check(curve > 150, `the loss chart in the screenshot holds a drawn curve (${curve} curve-coloured pixels)`);
  const att = region(png, await boxOf('#attention'));
  const colours = new Set(att.map((p) => p.join(','))).size;
  check(colours > 40, `the attention panel in the screenshot holds maps of many colours (${colours} distinct)`);

  // 4. Download what was trained, with its evaluation text; the native binary scores it the same.
  const downloads = [];
  page.on('download', (d) => downloads.push(d));
  await page.click('#download');
  await until(page, 'the files of the download', () => window.__wgpt.files !== null);
  const want = ['model.safetensors', 'tokenizer.json', 'config.json', 'eval.txt', 'eval.json'];
  const t0 = Date.now();
  while (downloads.length < want.length && Date.now() - t0 < DEADLINE) await page.waitForTimeout(100);
  const pageRun = path.join(out, 'page-run');
  fs.rmSync(pageRun, { recursive: true, force: true });
  fs.mkdirSync(pageRun, { recursive: true });
  for (const d of downloads) await d.saveAs(path.join(pageRun, d.suggestedFilename()));
  check(want.every((f) => fs.existsSync(path.join(pageRun, f))), `the page downloaded ${want.join(', ')} (got ${downloads.map((d) => d.suggestedFilename()).join(', ')})`);
  const pageLoss = JSON.parse(fs.readFileSync(path.join(pageRun, 'eval.json'), 'utf8')).loss;
  const native = JSON.parse(execFileSync(wgpt, ['eval', '--ckpt', pageRun, '--data', path.join(pageRun, 'eval.txt'), '--json'], NATIVE).trim().split('\n').pop());
  const rel = Math.abs(native.loss - pageLoss) / Math.abs(native.loss);
  check(rel <= 1e-4, `wgpt eval on the page's model and text gives the page's loss: ${native.loss} vs ${pageLoss} (relative ${rel.toExponential(2)})`);
  const text = execFileSync(wgpt, ['sample', '--ckpt', pageRun, '--tokens', '20', '--prompt', 'The'], NATIVE);
  // It stops at the model's context (16 positions for the page's model: 14 tokens after "The").
  check(text.startsWith('The') && text.trim().length > 10, `wgpt sample opens the page's model: "${text.trim().slice(0, 40)}"`);

  // 5. A damaged model is refused in one line and the page keeps working; a native run opens.
  const broken = path.join(out, 'broken');
  fs.mkdirSync(broken, { recursive: true });
  for (const f of ['config.json', 'tokenizer.json']) fs.copyFileSync(path.join(nativeRun, f), path.join(broken, f));
  fs.writeFileSync(path.join(broken, 'model.safetensors'), fs.readFileSync(path.join(nativeRun, 'model.safetensors')).subarray(0, 1000));
  await page.setInputFiles('#model-files', ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => path.join(broken, f)));
  await until(page, 'the damaged model refused', () => window.__wgpt.errors.length > 0, undefined, { errorsExpected: true });
  const refused = await page.textContent('#error');
  check(/model\.safetensors/.test(refused) && !refused.includes('\n'), `a damaged model.safetensors is refused in one line: "${refused}"`);
  await page.setInputFiles('#model-files', ['config.json', 'model.safetensors', 'tokenizer.json'].map((f) => path.join(nativeRun, f)));
  await until(page, 'the native run opened', () => window.__wgpt.status === 'opened');
  const nativeStep = JSON.parse(fs.readFileSync(path.join(nativeRun, 'config.json'), 'utf8')).wgpt.step;
  check((await wgptState(page)).run.step === nativeStep, `the page opened the natively trained run at its step ${nativeStep}`);
  const before = (await wgptState(page)).samples.length;
  await page.fill('#sample-prompt', 'Once');
  await page.fill('#sample-tokens', '60');
  await page.click('#generate');
  await until(page, 'a sample of the native run', (n) => window.__wgpt.samples.length > n, before);
  const sample = (await wgptState(page)).samples.at(-1).text;
  check(sample.startsWith('Once') && sample.length >= 60, `the page samples the native run: "${sample.slice(0, 60)}"`);
  // The same model computes the same loss in the page and natively (same text, same windows).
  const evalText = fs.readFileSync(path.join(pageRun, 'eval.txt'), 'utf8');
  await page.evaluate((t) => window.__wgptScore(t), evalText);
  await until(page, 'the page scoring the native run', () => window.__wgpt.scored !== null);
  const inPage = (await wgptState(page)).scored.loss;
  const natively = JSON.parse(execFileSync(wgpt, ['eval', '--ckpt', nativeRun, '--data', path.join(pageRun, 'eval.txt'), '--json'], NATIVE).trim().split('\n').pop()).loss;
  const rel2 = Math.abs(natively - inPage) / Math.abs(natively);
  check(rel2 <= 1e-4, `the native run scores the same in the page and natively: ${inPage} vs ${natively} (relative ${rel2.toExponential(2)})`);

  check(problems.length === 0, `no console errors or uncaught exceptions (${problems.join('; ')})`);
  await browser.close();
  server.close();
}

main().catch((e) => {
  console.error(`test-web: ${e.message}`);
  process.exit(1);
});
