// The page's training thread: a module worker that owns the GPU and the wasm engine (pkg/, built by
// `make web` from web/src/lib.rs), runs the training loop and answers the page's requests between
// steps. Calls into the engine go through one queue, one at a time; every step awaits a GPU
// read-back, so the worker takes messages between steps and the page never waits on it.
import init, * as wgpt from './pkg/wgpt_web.js';

const post = (type, data = {}, transfer = []) => postMessage({ type, ...data }, transfer);

// One call at a time, in the order asked; a failed call reports and the queue goes on.
let queue = Promise.resolve();
function serial(what, fn) {
  const run = queue.then(fn).catch((e) => post('error', { what, message: String(e && e.message ? e.message : e) }));
  queue = run;
  return run;
}

let run = null; // what new_run / open_model described
let training = false;
let settings = { mapEvery: 50, sampleEvery: 100, sampleTokens: 120, prompt: '' };
let since = { time: 0, steps: 0 };

async function start() {
  if (!('gpu' in navigator)) {
    post('nogpu', { reason: 'no-api' });
    return;
  }
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) {
    post('nogpu', { reason: 'no-adapter' });
    return;
  }
  const a = adapter.info || {};
  const name = [a.vendor, a.architecture, a.device, a.description].filter(Boolean).join(' ') || 'WebGPU adapter';
  const t0 = performance.now();
  await init();
  const info = JSON.parse(await wgpt.open_gpu(name));
  post('gpu', { info, wasmMs: performance.now() - t0 });
}

async function maps(prompt) {
  const m = await wgpt.attention(prompt || settings.prompt);
  post('maps', { step: run.step, n_layer: m.n_layer, n_head: m.n_head, t: m.t, labels: m.labels, probs: m.probs }, [m.probs.buffer]);
}

async function sampleNow(prompt, tokens, temperature, topK, seed) {
  const text = await wgpt.sample(prompt, tokens, temperature, topK, BigInt(seed));
  post('sample', { step: run.step, prompt, text });
}

async function oneStep() {
  if (!training || !run) return;
  const r = JSON.parse(await wgpt.step());
  run.step = r.step;
  since.steps += 1;
  const secs = (performance.now() - since.time) / 1000;
  post('step', { ...r, tokens_per_s: (since.steps * run.tokens_per_step) / secs });
  const last = r.step >= run.steps;
  if ((run.eval_every > 0 && r.step % run.eval_every === 0) || last) {
    post('eval', { step: r.step, val_loss: await wgpt.evaluate() });
  }
  if (settings.mapEvery > 0 && (r.step % settings.mapEvery === 0 || last)) await maps();
  if (settings.sampleEvery > 0 && (r.step % settings.sampleEvery === 0 || last)) {
    await sampleNow('', settings.sampleTokens, 0.8, 0, r.step);
  }
  if (last) {
    training = false;
    post('done', { step: r.step });
  }
}

async function loop() {
  while (training) {
    await serial('training step', oneStep);
    if (!training) break;
  }
}

function resume() {
  if (training || !run || run.step >= run.steps) return;
  training = true;
  since = { time: performance.now(), steps: 0 };
  post('state', { training });
  loop();
}

onmessage = (e) => {
  const m = e.data;
  switch (m.type) {
    case 'init':
      start().catch((err) => post('error', { what: 'opening the GPU', message: String(err) }));
      break;
    case 'start':
      training = false;
      serial('starting the run', async () => {
        const t0 = performance.now();
        run = JSON.parse(await wgpt.new_run(m.preset, m.text ? new Uint8Array(m.text) : undefined, m.settings || ''));
        post('run', { info: run, compileMs: performance.now() - t0 });
        settings.prompt = m.prompt || settings.prompt;
        await maps();
        resume();
      });
      break;
    case 'pause':
      training = false;
      post('state', { training });
      break;
    case 'resume':
      resume();
      break;
    case 'settings':
      settings = { ...settings, ...m.settings };
      break;
    case 'attention':
      if (m.prompt !== undefined) settings.prompt = m.prompt;
      serial('attention maps', () => maps(m.prompt));
      break;
    case 'sample':
      serial('sampling', () => sampleNow(m.prompt, m.tokens, m.temperature, m.topK, m.seed));
      break;
    case 'export':
      serial('download', async () => {
        const files = await wgpt.export_model();
        post('files', { step: run.step, files }, Object.values(files).map((a) => a.buffer));
      });
      break;
    case 'open':
      training = false;
      serial('opening the model', async () => {
        run = JSON.parse(await wgpt.open_model(new Uint8Array(m.config), new Uint8Array(m.model), new Uint8Array(m.tokenizer)));
        post('opened', { info: run, names: m.names });
        await maps();
      });
      break;
    case 'score':
      serial('scoring', async () => post('scored', { ...JSON.parse(await wgpt.score(m.text)) }));
      break;
  }
};
