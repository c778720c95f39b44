//! wgpt in a browser tab: the native engine (the same Rust, the same WGSL in `shaders/`) behind a
//! few async calls that the page's worker (`site/worker.js`) makes one at a time: open the GPU,
//! start a run on a text, train a step, evaluate, sample, draw attention maps, export the model as
//! `wgpt train` writes it, open such a model. Every call returns or rejects; nothing blocks (a
//! browser cannot wait on a GPU read-back).
#![cfg(target_arch = "wasm32")]
// A call holds the state across its GPU read-backs on purpose: a second call in the meantime gets
// "busy" from `try_borrow` instead of seeing a half-done step.
#![allow(clippy::await_holding_refcell_ref)]

use std::cell::RefCell;
use std::rc::Rc;

use js_sys::{Float32Array, Object, Reflect, Uint8Array};
use serde_json::json;
use wasm_bindgen::prelude::*;

use wgpt::data::batches::Rng;
use wgpt::data::dataset::{as_text, EMPTY};
use wgpt::gpu::{BackendChoice, Gpu};
use wgpt::train::checkpoint;
use wgpt::train::config::RunConfig;
use wgpt::train::trainer::Trainer;
use wgpt::viz::maps::AttentionProbe;

/// Tokens of an attention-map prompt (at most the model's block size).
const MAP_TOKENS: usize = 64;
/// Tokens of the held-out text the page scores and downloads with a model.
const EVAL_TOKENS: usize = 4096;

/// The one GPU, run and attention probe of this worker.
#[derive(Default)]
struct State {
    gpu: Option<Gpu>,
    trainer: Option<Trainer>,
    probe: Option<AttentionProbe>,
}

thread_local! {
    static STATE: Rc<RefCell<State>> = Rc::default();
}

fn state() -> Rc<RefCell<State>> {
    STATE.with(Rc::clone)
}

fn fail(e: impl std::fmt::Display) -> JsValue {
    JsValue::from_str(&e.to_string())
}

/// Calls overlap only if the page's worker is wrong; say so instead of panicking.
fn busy<T>(_: T) -> JsValue {
    fail("wgpt is busy with another call; calls must come one at a time")
}

#[wasm_bindgen(start)]
pub fn start() {
    std::panic::set_hook(Box::new(|info| web_sys::console::error_1(&format!("wgpt panicked: {info}").into())));
}

/// Opens the adapter the browser offers: its name, features and the limits wgpt works within.
/// `name` is what the page read of the adapter (`GPUAdapterInfo`), for a browser that tells wgpu
/// none.
#[wasm_bindgen]
pub async fn open_gpu(name: String) -> Result<String, JsValue> {
    let mut gpu = Gpu::with_name(BackendChoice::Auto, None).await.map_err(fail)?;
    if gpu.info.name.is_empty() {
        gpu.info.name = name;
    }
    let (l, f) = (&gpu.limits, gpu.features);
    let info = json!({
        "name": gpu.info.name,
        "description": gpu.describe(),
        "f16": f.contains(wgpu::Features::SHADER_F16),
        "subgroups": f.contains(wgpu::Features::SUBGROUP),
        "timestamps": f.contains(wgpu::Features::TIMESTAMP_QUERY),
        "limits": {
            "max_buffer_size": l.max_buffer_size,
            "max_storage_buffer_binding_size": l.max_storage_buffer_binding_size,
            "max_storage_buffers_per_shader_stage": l.max_storage_buffers_per_shader_stage,
            "max_compute_workgroup_storage_size": l.max_compute_workgroup_storage_size,
            "max_compute_invocations_per_workgroup": l.max_compute_invocations_per_workgroup,
        },
    });
    state().try_borrow_mut().map_err(busy)?.gpu = Some(gpu);
    Ok(info.to_string())
}

/// Starts a run of `preset` on `text` (UTF-8 bytes; none: the built-in stories), with `settings`
/// (`key=value` lines, as `wgpt train --set`). What was built, as JSON.
#[wasm_bindgen]
pub async fn new_run(preset: String, text: Option<Vec<u8>>, settings: String) -> Result<String, JsValue> {
    let mut cfg = RunConfig::preset(&preset).map_err(fail)?;
    for kv in settings.lines().map(str::trim).filter(|l| !l.is_empty()) {
        cfg.set(kv).map_err(fail)?;
    }
    cfg.validate().map_err(fail)?;
    let stories;
    let text = match &text {
        Some(bytes) => as_text(bytes).map_err(|e| fail(format!("the text: {e}")))?,
        None => {
            stories = wgpt::data::stories::corpus(42, wgpt::data::dataset::DEFAULT_CORPUS_BYTES);
            &stories
        }
    };
    if text.trim().is_empty() {
        return Err(fail(format!("the text: {EMPTY}")));
    }
    let (tokenizer, tokens) = Trainer::tokenize(&cfg, text).map_err(fail)?;
    let st = state();
    let mut s = st.try_borrow_mut().map_err(busy)?;
    s.trainer = None;
    s.probe = None;
    let gpu = s.gpu.as_ref().ok_or_else(|| fail("no GPU: call open_gpu first"))?;
    let t = Trainer::build(gpu, cfg, tokenizer, tokens, Vec::new()).await.map_err(fail)?;
    let info = describe(&t);
    s.trainer = Some(t);
    Ok(info.to_string())
}

/// The run's model and data, for the page's header.
fn describe(t: &Trainer) -> serde_json::Value {
    let m = &t.model;
    json!({
        "preset": t.cfg.preset, "steps": t.cfg.steps, "step": t.step,
        "n_layer": m.n_layer, "n_head": m.n_head, "n_embd": m.n_embd, "block_size": m.block_size,
        "vocab_size": m.vocab_size, "params": wgpt::model::param_table(m).iter().map(|p| p.numel()).sum::<usize>(),
        "batch_size": t.cfg.batch_size, "grad_accum": t.cfg.grad_accum,
        "tokens_per_step": t.cfg.batch_size * t.cfg.block_size * t.cfg.grad_accum,
        "train_tokens": t.train.len(), "val_tokens": t.val.len(),
        "precision": t.cfg.precision.name(), "notice": t.notice,
        "eval_every": t.cfg.eval_every, "log_every": t.cfg.log_every,
    })
}

/// Runs `f` on the current run; an error when there is none.
fn with_trainer<T>(f: impl FnOnce(&mut Trainer) -> T) -> Result<T, JsValue> {
    let st = state();
    let mut s = st.try_borrow_mut().map_err(busy)?;
    s.trainer.as_mut().map(f).ok_or_else(|| fail("no run: start one or open a model first"))
}

/// One optimizer step: `{step, loss, lr, grad_norm, skipped}`.
#[wasm_bindgen]
pub async fn step() -> Result<String, JsValue> {
    let st = state();
    let mut s = st.try_borrow_mut().map_err(busy)?;
    let t = s.trainer.as_mut().ok_or_else(|| fail("no run: start one first"))?;
    if t.train.is_empty() {
        return Err(fail("this model was opened for sampling; it has no text to train on"));
    }
    let d = t.train_step().await.map_err(fail)?;
    let r = d.stats;
    Ok(json!({"step": t.step, "loss": r.loss, "lr": d.lr, "grad_norm": r.grad_norm, "skipped": r.skipped}).to_string())
}

/// The mean validation loss (`eval_batches` fixed batches, as natively).
#[wasm_bindgen]
pub async fn evaluate() -> Result<f64, JsValue> {
    let st = state();
    let s = st.try_borrow().map_err(busy)?;
    let t = s.trainer.as_ref().ok_or_else(|| fail("no run: start one first"))?;
    t.evaluate().await.map_err(fail)
}

/// `n` tokens after `prompt` (temperature 0: greedy; top_k 0: every token).
#[wasm_bindgen]
pub async fn sample(prompt: String, n: usize, temperature: f64, top_k: usize, seed: u64) -> Result<String, JsValue> {
    let st = state();
    let s = st.try_borrow().map_err(busy)?;
    let t = s.trainer.as_ref().ok_or_else(|| fail("no model: train one or open one first"))?;
    let ids = t.tokenizer.encode(&prompt).map_err(|e| fail(format!("the prompt: {e}")))?;
    let sampling = wgpt::infer::Sampling { temperature, top_k, top_p: 1.0 };
    let out = t.sample(&ids, n, sampling, &mut Rng(seed)).await.map_err(fail)?;
    Ok(t.tokenizer.decode(&[ids, out].concat()))
}

/// Every head's attention map of every layer for the first tokens of `prompt`:
/// `{n_layer, n_head, t, labels, probs}`, `probs` a Float32Array of (L, NH, t, t).
#[wasm_bindgen]
pub async fn attention(prompt: String) -> Result<JsValue, JsValue> {
    let st = state();
    let mut s = st.try_borrow_mut().map_err(busy)?;
    let State { gpu, trainer, probe } = &mut *s;
    let (gpu, t) = gpu.as_ref().zip(trainer.as_ref()).ok_or_else(|| fail("no model: train one or open one first"))?;
    let mut ids = t.tokenizer.encode(&prompt).map_err(|e| fail(format!("the prompt: {e}")))?;
    if ids.is_empty() {
        return Err(fail("the prompt is empty; type a few words"));
    }
    let cap = MAP_TOKENS.min(t.model.block_size);
    ids.truncate(cap);
    if probe.as_ref().is_none_or(|p| p.model != t.model) {
        *probe = Some(AttentionProbe::build(gpu, t.model, cap).await.map_err(fail)?);
    }
    let params = t.ts.read_params().await.map_err(fail)?;
    let maps = probe.as_ref().expect("built above").maps_async(&params, &ids).await.map_err(fail)?;
    let labels: Vec<String> = ids.iter().map(|&id| t.tokenizer.decode(&[id])).collect();
    let out = Object::new();
    let set = |k: &str, v: JsValue| Reflect::set(&out, &k.into(), &v).map(|_| ());
    set("n_layer", maps.n_layer.into())?;
    set("n_head", maps.n_head.into())?;
    set("t", maps.t().into())?;
    set("labels", labels.iter().map(|l| JsValue::from_str(l)).collect::<js_sys::Array>().into())?;
    set("probs", Float32Array::from(&maps.probs[..]).into())?;
    Ok(out.into())
}

/// The model as `wgpt train` writes it (`model.safetensors`, `tokenizer.json`, `config.json`),
/// plus `eval.txt`, the start of the held-out text, and `eval.json`, the loss the page scores on
/// it (what `wgpt eval --data eval.txt` should give): an object of Uint8Arrays by file name.
#[wasm_bindgen]
pub async fn export_model() -> Result<JsValue, JsValue> {
    let st = state();
    let s = st.try_borrow().map_err(busy)?;
    let t = s.trainer.as_ref().ok_or_else(|| fail("no model to download: train one or open one first"))?;
    let out = Object::new();
    for (name, bytes) in t.model_files().await.map_err(fail)? {
        Reflect::set(&out, &name.into(), &Uint8Array::from(&bytes[..]).into())?;
    }
    if !t.val.is_empty() || !t.train.is_empty() {
        let text = t.tokenizer.decode(&t.val_tokens(EVAL_TOKENS));
        let ids = t.tokenizer.encode(&text).map_err(fail)?;
        let (loss, n) = t.score_windows(&ids).await.map_err(fail)?;
        let scored = json!({"loss": loss, "perplexity": loss.exp(), "tokens": n, "step": t.step}).to_string();
        Reflect::set(&out, &"eval.txt".into(), &Uint8Array::from(text.as_bytes()).into())?;
        Reflect::set(&out, &"eval.json".into(), &Uint8Array::from(scored.as_bytes()).into())?;
    }
    Ok(out.into())
}

/// Opens a model from the bytes of a run directory's `config.json`, `model.safetensors` and
/// `tokenizer.json` (what `wgpt train` writes) for sampling and attention maps. Bad files are
/// refused with the checks `wgpt sample` makes, the current run kept.
#[wasm_bindgen]
pub async fn open_model(config: Vec<u8>, model: Vec<u8>, tokenizer: Vec<u8>) -> Result<String, JsValue> {
    let opened = checkpoint::open_bytes(&config, &model, &tokenizer).map_err(fail)?;
    let m = opened.model;
    // A wgpt checkpoint records its settings; one from transformers gets the tiny preset's.
    let saved = opened.config.get("wgpt").and_then(|w| RunConfig::from_json(&w["train"]).ok());
    let mut cfg = saved.unwrap_or(RunConfig::preset("tiny").map_err(fail)?);
    (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.batch_size) =
        (m.n_layer, m.n_head, m.n_embd, m.block_size, 1);
    let st = state();
    let mut s = st.try_borrow_mut().map_err(busy)?;
    let gpu = s.gpu.as_ref().ok_or_else(|| fail("no GPU: call open_gpu first"))?;
    let mut t = Trainer::build_for_model(gpu, cfg, m, opened.tokenizer, &opened.params).await.map_err(fail)?;
    t.step = opened.config["wgpt"]["step"].as_u64().unwrap_or(0);
    let info = describe(&t);
    s.trainer = Some(t);
    s.probe = None;
    Ok(info.to_string())
}

/// The loss of the current model on `text` (its `block_size` windows, as `wgpt eval --data`).
#[wasm_bindgen]
pub async fn score(text: String) -> Result<String, JsValue> {
    let st = state();
    let s = st.try_borrow().map_err(busy)?;
    let t = s.trainer.as_ref().ok_or_else(|| fail("no model: train one or open one first"))?;
    let ids = t.tokenizer.encode(&text).map_err(|e| fail(format!("the text: {e}")))?;
    let (loss, n) = t.score_windows(&ids).await.map_err(fail)?;
    Ok(json!({"loss": loss, "perplexity": loss.exp(), "tokens": n}).to_string())
}

/// The current run's step and settings (after `new_run` or `open_model`).
#[wasm_bindgen]
pub fn run_info() -> Result<String, JsValue> {
    with_trainer(|t| describe(t).to_string())
}
