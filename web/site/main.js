// The page: controls, the loss chart and the attention maps (drawn with Canvas 2D, which every
// browser and a headless screenshot show), samples, opening and downloading models. Training and
// the GPU live in worker.js; this thread only draws what it reports.
const $ = (id) => document.getElementById(id);
const worker = new Worker(new URL('./worker.js', import.meta.url), { type: 'module' });
const send = (type, data = {}, transfer = []) => worker.postMessage({ type, ...data }, transfer);

// What the page shows, also read by the browser test (web/test/page.mjs).
const state = (window.__wgpt = {
  status: 'starting', gpu: null, run: null, steps: [], evals: [], maps: null, samples: [], errors: [],
  files: null, scored: null, timings: {},
});
// The browser test scores a text with the current model (the loss `wgpt eval --data` gives).
window.__wgptScore = (t) => { state.scored = null; send('score', { text: t }); };
const PRESET_STEPS = { tiny: 1000, 'shakespeare-char': 2000 };
let text = null; // the dropped or picked text (ArrayBuffer), or null for the preset's own
let training = false;
// The run the page shows: each start, open and reset is a new one, and what the worker reports
// about an older one (a step that was in flight) is dropped.
let gen = 0;
const ABOUT_A_RUN = new Set(['run', 'opened', 'state', 'step', 'eval', 'maps', 'sample', 'done', 'files', 'scored']);
const pageStart = performance.now();

function showError(what, message) {
  const line = `${what}: ${message}`;
  state.errors.push(line);
  $('error').textContent = line;
  $('error').hidden = false;
}
const clearError = () => { $('error').hidden = true; };
const fmt = (x, d = 4) => (Number.isFinite(x) ? x.toFixed(d) : String(x));

function setTraining(on) {
  training = on;
  $('pause').textContent = on ? 'Pause' : 'Resume';
  $('pause').disabled = !state.run || !state.run.train_tokens;
  $('reset').disabled = !state.run;
}

function enableModel(on) {
  for (const id of ['maps-now', 'generate', 'download']) $(id).disabled = !on;
}

worker.onmessage = (e) => {
  const m = e.data;
  if (ABOUT_A_RUN.has(m.type) && m.gen !== gen) return;
  switch (m.type) {
    case 'nogpu': {
      state.status = 'no-webgpu';
      const why = m.reason === 'no-api'
        ? 'This browser has no WebGPU (navigator.gpu is missing), which wgpt needs to train: use a current Chrome, Edge or Safari, or start Chromium on Linux with --enable-unsafe-webgpu.'
        : 'This browser has WebGPU but offers no adapter for it, which wgpt needs to train: enable WebGPU for this GPU (chrome://flags/#enable-unsafe-webgpu, or --enable-unsafe-webgpu --enable-features=Vulkan on Linux) or update the graphics driver.';
      $('nogpu').textContent = why;
      $('nogpu').hidden = false;
      $('adapter').hidden = true;
      break;
    }
    case 'gpu': {
      state.gpu = m.info;
      state.status = 'ready';
      state.timings.wasm_ms = m.wasmMs;
      const l = m.info.limits;
      const mib = (b) => `${Math.round(b / 1048576)} MiB`;
      $('adapter').textContent = `Adapter: ${m.info.description}; shader-f16 ${m.info.f16 ? 'yes' : 'no'}, subgroups ${m.info.subgroups ? 'yes' : 'no'}; limits: buffer ${mib(l.max_buffer_size)}, binding ${mib(l.max_storage_buffer_binding_size)}, ${l.max_storage_buffers_per_shader_stage} storage buffers, workgroup memory ${l.max_compute_workgroup_storage_size / 1024} KiB, ${l.max_compute_invocations_per_workgroup} invocations.`;
      $('start').disabled = false;
      break;
    }
    case 'run':
      clearError();
      state.run = m.info;
      state.timings.compile_ms = m.compileMs;
      state.timings.first_step_ms = null;
      showRun(m.info);
      enableModel(true);
      break;
    case 'opened':
      clearError();
      Object.assign(state, { steps: [], evals: [], run: m.info, status: 'opened' });
      drawLoss();
      for (const id of ['loss', 'val', 'lr', 'tps']) $(id).textContent = '–';
      showRun(m.info);
      enableModel(true);
      setTraining(false);
      $('pause').disabled = true;
      break;
    case 'state':
      if (!state.run) break; // reset, or a run still being built
      setTraining(m.training);
      state.status = m.training ? 'training' : 'paused';
      break;
    case 'step':
      if (state.timings.first_step_ms == null) state.timings.first_step_ms = performance.now() - pageStart;
      state.steps.push([m.step, m.loss]);
      if (state.run) state.run.step = m.step;
      $('step').textContent = `${m.step} / ${state.run ? state.run.steps : '?'}`;
      $('loss').textContent = fmt(m.loss) + (m.skipped ? ' (skipped)' : '');
      $('lr').textContent = m.lr.toExponential(2);
      $('tps').textContent = Math.round(m.tokens_per_s).toString();
      state.tokens_per_s = m.tokens_per_s;
      scheduleDraw();
      break;
    case 'eval':
      state.evals.push([m.step, m.val_loss]);
      $('val').textContent = `${fmt(m.val_loss)} (step ${m.step}; perplexity ${fmt(Math.exp(m.val_loss), 2)})`;
      scheduleDraw();
      break;
    case 'maps':
      state.maps = m;
      fillPickers(m);
      drawAttention();
      break;
    case 'sample':
      state.samples.push(m);
      $('sample-text').textContent = `step ${m.step}: ${m.prompt}${m.text.slice(m.prompt.length)}`;
      break;
    case 'done':
      setTraining(false);
      state.status = 'done';
      $('pause').disabled = true;
      break;
    case 'files': {
      state.files = m.files;
      // Saved at once; the links stay for a browser that asks before saving several files.
      const links = Object.entries(m.files).map(([name, bytes]) => download(name, bytes));
      $('links').replaceChildren(`step ${m.step}: `, ...links.flatMap((a, i) => (i ? [', ', a] : [a])));
      break;
    }
    case 'scored':
      state.scored = m;
      break;
    case 'error':
      showError(m.what, m.message);
      if (m.what === 'training step') setTraining(false);
      break;
  }
};

function showRun(r) {
  $('model').textContent = `${r.n_layer} layers, ${r.n_head} heads, C=${r.n_embd}, T=${r.block_size}, V=${r.vocab_size}; ${(r.params / 1e6).toFixed(2)}M parameters; ${r.precision}`;
  $('step').textContent = `${r.step} / ${r.steps}`;
  $('notice').hidden = !r.notice;
  $('notice').textContent = r.notice || '';
}

function download(name, bytes) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(new Blob([bytes]));
  a.download = name;
  a.textContent = name;
  a.click();
  return a;
}

// ---- controls ---------------------------------------------------------------------------------
$('preset').onchange = () => { $('steps').value = PRESET_STEPS[$('preset').value]; };

async function presetText(preset) {
  if (text) return text;
  if (preset !== 'shakespeare-char') return null; // tiny: the built-in stories
  const r = await fetch('tinyshakespeare.txt');
  if (!r.ok) throw new Error('tinyshakespeare.txt is not served with this page; drop a text file to train on instead');
  return r.arrayBuffer();
}

$('start').onclick = async () => {
  const preset = $('preset').value;
  const steps = Math.max(1, parseInt($('steps').value, 10) || 1);
  let body;
  try {
    body = await presetText(preset);
  } catch (err) {
    showError('the text', err.message);
    return;
  }
  Object.assign(state, { steps: [], evals: [], maps: null, run: null, status: 'compiling' });
  state.timings.start_clicked_ms = performance.now() - pageStart;
  drawLoss();
  const settings = [`steps=${steps}`, 'precision=f16'].join('\n');
  const copy = body ? body.slice(0) : null;
  send('settings', { settings: currentSettings() });
  send('start', { gen: ++gen, preset, text: copy, settings, prompt: promptText() }, copy ? [copy] : []);
};
$('pause').onclick = () => send(training ? 'pause' : 'resume');
$('reset').onclick = () => {
  send('reset', { gen: ++gen });
  Object.assign(state, { steps: [], evals: [], maps: null, run: null, status: 'ready' });
  for (const id of ['step', 'loss', 'val', 'lr', 'tps', 'model']) $(id).textContent = '–';
  setTraining(false);
  enableModel(false);
  $('pause').disabled = true;
  drawLoss();
  drawAttention();
};

function promptText() { return $('prompt').value; }
function currentSettings() {
  return {
    mapEvery: Math.max(0, parseInt($('map-every').value, 10) || 0),
    sampleEvery: Math.max(0, parseInt($('sample-every').value, 10) || 0),
    prompt: promptText(),
  };
}
for (const id of ['map-every', 'sample-every', 'prompt']) $(id).onchange = () => send('settings', { settings: currentSettings() });
$('maps-now').onclick = () => send('attention', { prompt: promptText() });
$('generate').onclick = () => send('sample', {
  prompt: $('sample-prompt').value,
  tokens: Math.max(1, parseInt($('sample-tokens').value, 10) || 1),
  temperature: Math.max(0, parseFloat($('temperature').value) || 0),
  topK: Math.max(0, parseInt($('top-k').value, 10) || 0),
  seed: Date.now() % 1000000,
});
$('download').onclick = () => send('export');
$('log').onchange = () => drawLoss();
for (const id of ['layer', 'head', 'grid']) $(id).onchange = () => drawAttention();

// Text: a file input or a drop on the box.
function takeText(file) {
  file.arrayBuffer().then((b) => { text = b; $('text-name').textContent = `${file.name} (${file.size} bytes)`; });
}
$('text-file').onchange = (e) => e.target.files[0] && takeText(e.target.files[0]);
// A run directory's three files, by name.
const MODEL_FILES = ['config.json', 'model.safetensors', 'tokenizer.json'];
async function takeModel(files) {
  const byName = Object.fromEntries([...files].map((f) => [f.name, f]));
  const missing = MODEL_FILES.filter((n) => !byName[n]);
  if (missing.length) {
    showError('opening a model', `need ${MODEL_FILES.join(', ')} from one run directory; missing ${missing.join(', ')}`);
    return;
  }
  const [config, model, tokenizer] = await Promise.all(MODEL_FILES.map((n) => byName[n].arrayBuffer()));
  send('open', { gen: ++gen, config, model, tokenizer, names: MODEL_FILES }, [config, model, tokenizer]);
}
$('model-files').onchange = (e) => takeModel(e.target.files);
for (const [id, take] of [['drop-text', (fs) => takeText(fs[0])], ['drop-model', takeModel]]) {
  const box = $(id);
  box.ondragover = (e) => { e.preventDefault(); box.classList.add('over'); };
  box.ondragleave = () => box.classList.remove('over');
  box.ondrop = (e) => { e.preventDefault(); box.classList.remove('over'); if (e.dataTransfer.files.length) take(e.dataTransfer.files); };
}

// ---- the loss chart ---------------------------------------------------------------------------
let drawPending = false;
function scheduleDraw() {
  if (!drawPending) { drawPending = true; requestAnimationFrame(() => { drawPending = false; drawLoss(); }); }
}

function drawLoss() {
  const c = $('loss-chart'), g = c.getContext('2d');
  const W = c.width, H = c.height, L = 52, R = 12, T = 12, B = 28;
  g.clearRect(0, 0, W, H);
  g.font = '11px system-ui, sans-serif';
  const all = state.steps.concat(state.evals).filter((p) => Number.isFinite(p[1]) && p[1] > 0);
  if (!all.length) { g.fillStyle = '#5b6575'; g.fillText('the loss appears here once training starts', L, H / 2); return; }
  const log = $('log').checked, f = (v) => (log ? Math.log10(v) : v);
  const maxStep = Math.max(1, ...all.map((p) => p[0]));
  let lo = Math.min(...all.map((p) => f(p[1]))), hi = Math.max(...all.map((p) => f(p[1])));
  if (hi - lo < 1e-6) { lo -= 0.5; hi += 0.5; }
  const x = (s) => L + (s / maxStep) * (W - L - R), y = (v) => T + (1 - (f(v) - lo) / (hi - lo)) * (H - T - B);
  g.strokeStyle = '#d5d9e0'; g.fillStyle = '#5b6575'; g.lineWidth = 1;
  for (let i = 0; i <= 4; i++) {
    const fv = lo + ((hi - lo) * i) / 4, yy = T + (1 - i / 4) * (H - T - B);
    g.beginPath(); g.moveTo(L, yy); g.lineTo(W - R, yy); g.stroke();
    g.fillText((log ? 10 ** fv : fv).toFixed(2), 4, yy + 4);
  }
  g.fillText('0', L, H - 10);
  g.fillText(`step ${maxStep}`, W - R - 60, H - 10);
  const line = (pts, colour, width) => {
    g.strokeStyle = colour; g.lineWidth = width; g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
    g.stroke();
  };
  const train = state.steps.filter((p) => Number.isFinite(p[1]) && p[1] > 0);
  line(train, '#2b6cb0', 1.5);
  const val = state.evals.filter((p) => p[1] > 0);
  line(val, '#dd6b20', 2);
  g.fillStyle = '#dd6b20';
  for (const p of val) { g.beginPath(); g.arc(x(p[0]), y(p[1]), 3.5, 0, 7); g.fill(); }
  g.fillStyle = '#2b6cb0'; g.fillText('train', W - R - 90, T + 12);
  g.fillStyle = '#dd6b20'; g.fillText('val', W - R - 40, T + 12);
}

// ---- attention maps ---------------------------------------------------------------------------
function fillPickers(m) {
  const fill = (sel, n, prefix) => {
    if (sel.options.length === n) return;
    const keep = Math.min(sel.selectedIndex, n - 1);
    sel.replaceChildren(...Array.from({ length: n }, (_, i) => new Option(`${prefix}${i}`, i)));
    sel.selectedIndex = Math.max(0, keep);
  };
  fill($('layer'), m.n_layer, 'L');
  fill($('head'), m.n_head, 'H');
}

// A perceptual ramp (dark blue → teal → yellow), so maps show many distinct colours.
const RAMP = [[13, 8, 135], [84, 2, 163], [139, 10, 165], [185, 50, 137], [219, 92, 104], [244, 136, 73], [254, 188, 43], [240, 249, 33]];
function colour(v) {
  const t = Math.min(1, Math.max(0, v)) * (RAMP.length - 1), i = Math.min(RAMP.length - 2, Math.floor(t)), k = t - i;
  return RAMP[i].map((c, j) => Math.round(c + (RAMP[i + 1][j] - c) * k));
}

function heat(g, probs, offset, t, x0, y0, size) {
  const img = g.createImageData(t, t);
  // Square-root scale: the small probabilities off the diagonal stay visible.
  for (let i = 0; i < t * t; i++) {
    const [r, gg, b] = colour(Math.sqrt(probs[offset + i]));
    img.data.set([r, gg, b, 255], 4 * i);
  }
  const tmp = document.createElement('canvas');
  tmp.width = tmp.height = t;
  tmp.getContext('2d').putImageData(img, 0, 0);
  g.imageSmoothingEnabled = false;
  g.drawImage(tmp, x0, y0, size, size);
}

function drawAttention() {
  const c = $('attention'), g = c.getContext('2d'), m = state.maps;
  g.clearRect(0, 0, c.width, c.height);
  g.font = '10px monospace';
  if (!m) { g.fillStyle = '#5b6575'; g.fillText('attention maps appear here once a model is trained or opened', 12, 24); return; }
  const layer = Math.min($('layer').selectedIndex, m.n_layer - 1), t = m.t, tt = t * t;
  const label = (s) => JSON.stringify(s).slice(1, -1).slice(0, 4);
  if ($('grid').checked) {
    const cols = Math.ceil(Math.sqrt(m.n_head)), rows = Math.ceil(m.n_head / cols);
    const size = Math.floor(Math.min((c.width - 10) / cols, (c.height - 10) / rows)) - 14;
    for (let h = 0; h < m.n_head; h++) {
      const x0 = 6 + (h % cols) * (size + 14), y0 = 16 + Math.floor(h / cols) * (size + 14);
      g.fillStyle = '#1d2430'; g.fillText(`L${layer} H${h}`, x0, y0 - 3);
      heat(g, m.probs, (layer * m.n_head + h) * tt, t, x0, y0, size);
    }
    return;
  }
  const head = Math.min($('head').selectedIndex, m.n_head - 1);
  const margin = 38, size = Math.min(c.width, c.height) - margin - 6, cell = size / t;
  heat(g, m.probs, (layer * m.n_head + head) * tt, t, margin, margin, size);
  g.fillStyle = '#1d2430';
  const every = Math.max(1, Math.ceil(10 / cell));
  for (let i = 0; i < t; i += every) {
    g.fillText(label(m.labels[i]), 2, margin + (i + 0.75) * cell); // query (rows)
    g.save(); g.translate(margin + (i + 0.7) * cell, margin - 4); g.rotate(-Math.PI / 3); g.fillText(label(m.labels[i]), 0, 0); g.restore();
  }
  g.fillText(`layer ${layer}, head ${head}, step ${m.step}: rows attend to columns`, margin + size - 250, c.height - 2);
}

drawLoss();
drawAttention();
send('init');
