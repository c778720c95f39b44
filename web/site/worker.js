// The page's training thread: a module worker that owns the GPU and the wasm engine (pkg/, built by
// `make web` from web/src/lib.rs), runs the training loop and answers the page's requests between
// steps. Calls into the engine go through one queue, one at a time; every step awaits a GPU
// read-back, so the worker takes messages between steps and the page never waits on it.
import init, * as wgpt from './pkg/wgpt_web.js';

// The page numbers its runs (start, open, reset); every message says which run it is about, so
// the page drops what a step already in flight reports after the run it belonged to is gone.
let gen = 0;
const post = (type, data = {}, transfer = []) => postMessage({ type, gen, ...data }, transfer);

// One call at a time, in the order asked. A failed call is reported in one line and the queue
// goes on; `onError` says what else to undo.
let queue = Promise.resolve();
function serial(what, fn, onError = () => {}) {
  const run = queue.then(fn).catch((e) => {
    onError();
    const message = e instanceof WebAssembly.RuntimeError
      ? `wgpt stopped on an internal error (${e.message}; the browser console has the details); reload the page to start again`
      : String(e && e.message ? e.message : e);
    post('error', { what, message });
  });
  queue = run;
  return run;
}

let run = null; // what new_run / open_model described
let training = false;
let loopId = 0; // a loop whose id is not this one ends
let settings = { mapEvery: 50, sampleEvery: 100, sampleTokens: 120, prompt: '' };
// Tokens/s over the last steps' own time (not the maps, evaluations and samples between them).
let stepMs = [];

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
  post('maps', { step: run ? run.step : 0, n_layer: m.n_layer, n_head: m.n_head, t: m.t, labels: m.labels, probs: m.probs }, [m.probs.buffer]);
}

async function sampleNow(prompt, tokens, temperature, topK, seed) {
  const text = await wgpt.sample(prompt, tokens, temperature, topK, BigInt(seed));
  post('sample', { step: run ? run.step : 0, prompt, text });
}

function setTraining(on) {
  training = on;
  post('state', { training });
}

async function oneStep() {
  if (!training || !run) return;
  const current = run;
  const t0 = performance.now();
  const r = JSON.parse(await wgpt.step());
  if (run !== current) return; // reset (or another run) while the step ran: nothing to report
  stepMs = stepMs.concat(performance.now() - t0).slice(-20);
  run.step = r.step;
  const secs = stepMs.reduce((a, b) => a + b, 0) / 1000;
  post('step', { ...r, tokens_per_s: (stepMs.length * run.tokens_per_step) / secs });
  const last = r.step >= run.steps;
  if ((run.eval_every > 0 && r.step % run.eval_every === 0) || last) {
    post('eval', { step: r.step, val_loss: await wgpt.evaluate() });
  }
  // A prompt the text's characters cannot spell gets an error line; training goes on.
  if (settings.mapEvery > 0 && (r.step % settings.mapEvery === 0 || last)) {
    await maps().catch((e) => post('error', { what: 'attention maps', message: String(e) }));
  }
  if (settings.sampleEvery > 0 && (r.step % settings.sampleEvery === 0 || last)) {
    await sampleNow('', settings.sampleTokens, 0.8, 0, r.step);
  }
  if (last) {
    training = false;
    post('done', { step: r.step });
  }
}

async function loop(id) {
  while (training && id === loopId) {
    await serial('training step', oneStep, () => setTraining(false));
  }
}

function resume() {
  if (training || !run || !run.train_tokens || run.step >= run.steps) return;
  setTraining(true);
  stepMs = [];
  loop(++loopId);
}

onmessage = (e) => {
  const m = e.data;
  if (m.gen !== undefined) gen = m.gen;
  switch (m.type) {
    case 'init':
      start().catch((err) => post('error', { what: 'opening the GPU', message: String(err) }));
      break;
    case 'start':
      setTraining(false);
      run = null;
      serial('starting the run', async () => {
        const t0 = performance.now();
        run = JSON.parse(await wgpt.new_run(m.preset, m.text ? new Uint8Array(m.text) : undefined, m.settings || ''));
        post('run', { info: run, compileMs: performance.now() - t0 });
        settings.prompt = m.prompt || settings.prompt;
        await maps().catch((err) => post('error', { what: 'attention maps', message: String(err) }));
        resume();
      });
      break;
    case 'pause':
      setTraining(false);
      break;
    case 'resume':
      resume();
      break;
    case 'reset':
      setTraining(false);
      run = null;
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
        post('files', { step: run ? run.step : 0, files }, Object.values(files).map((a) => a.buffer));
      });
      break;
    case 'open': {
      // A refused model leaves the current run as it was, training again if it was.
      const was = training;
      setTraining(false);
      serial('opening the model', async () => {
        run = JSON.parse(await wgpt.open_model(new Uint8Array(m.config), new Uint8Array(m.model), new Uint8Array(m.tokenizer)));
        post('opened', { info: run, names: m.names });
        await maps().catch((err) => post('error', { what: 'attention maps', message: String(err) }));
      }, () => { if (was) queueMicrotask(resume); });
      break;
    }
    case 'score':
      serial('scoring', async () => post('scored', { ...JSON.parse(await wgpt.score(m.text)) }));
      break;
  }
};
