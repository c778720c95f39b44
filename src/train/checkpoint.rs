//! Checkpoints in a run directory, readable by Hugging Face `transformers` as they are:
//! `model.safetensors` with GPT-2 tensor names and layouts (Conv1D weights (in, out)), and
//! `config.json` with the `GPT2Config` keys plus wgpt's own settings under "wgpt". Every file is
//! written to a temporary name and renamed, so a crash never leaves a half-written checkpoint.

use std::collections::HashMap;
use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde_json::{json, Value};

use crate::error::{Error, Result};
use crate::model::{param_table, GptConfig};
use crate::util::write_atomic;

/// `config.json`: what `GPT2LMHeadModel.from_pretrained` reads, plus `extra` under "wgpt".
pub fn hf_config(cfg: &GptConfig, extra: Value) -> Value {
    json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_ctx": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": null,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": 1e-5,
        "resid_pdrop": 0.0,
        "embd_pdrop": 0.0,
        "attn_pdrop": 0.0,
        "initializer_range": 0.02,
        "tie_word_embeddings": true,
        // No end-of-text token yet: generation in transformers must not stop at token 0.
        "bos_token_id": null,
        "eos_token_id": null,
        "wgpt": extra,
    })
}

pub fn model_from_config(doc: &Value) -> Result<GptConfig> {
    let get = |k: &str| {
        doc.get(k)
            .and_then(Value::as_u64)
            .map(|v| v as usize)
            .ok_or_else(|| Error::Other(format!("config.json: missing or invalid \"{k}\"")))
    };
    let cfg = GptConfig {
        vocab_size: get("vocab_size")?,
        block_size: get("n_positions")?,
        n_layer: get("n_layer")?,
        n_head: get("n_head")?,
        n_embd: get("n_embd")?,
    };
    cfg.validate()?;
    Ok(cfg)
}

/// Writes `model.safetensors` from parameters keyed by Hugging Face name.
pub fn save_model(path: &Path, cfg: &GptConfig, params: &HashMap<String, Vec<f32>>) -> Result<()> {
    write_atomic(path, &model_bytes(cfg, params)?)
}

/// The bytes of `model.safetensors` for `params` (keyed by Hugging Face name).
pub fn model_bytes(cfg: &GptConfig, params: &HashMap<String, Vec<f32>>) -> Result<Vec<u8>> {
    let specs = param_table(cfg);
    let mut views = Vec::new();
    for s in &specs {
        let data = params.get(&s.name).ok_or_else(|| Error::Other(format!("parameter {} missing", s.name)))?;
        let view = TensorView::new(Dtype::F32, s.shape.clone(), bytemuck::cast_slice(data))
            .map_err(|e| Error::Other(format!("{}: {e}", s.name)))?;
        views.push((s.name.clone(), view));
    }
    let meta = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize(views, Some(meta)).map_err(|e| Error::Other(e.to_string()))
}

/// Reads `model.safetensors` and checks it against the model's parameter table; errors name the
/// file.
pub fn load_model(path: &Path, cfg: &GptConfig) -> Result<HashMap<String, Vec<f32>>> {
    let bytes = std::fs::read(path).map_err(|e| crate::util::io_error(path, &e))?;
    load_model_bytes(&bytes, cfg).map_err(|e| in_file(path, e))
}

/// The parameters in the bytes of a `model.safetensors`, checked against the model's parameter
/// table before any tensor is read: the number of transformer blocks, then every tensor's
/// presence, dtype (F32) and shape, then no tensor the model lacks.
pub fn load_model_bytes(bytes: &[u8], cfg: &GptConfig) -> Result<HashMap<String, Vec<f32>>> {
    let header = safetensors_header(bytes)?;
    let specs = param_table(cfg);
    let blocks: std::collections::BTreeSet<usize> =
        header.keys().filter_map(|k| k.strip_prefix("transformer.h.")?.split('.').next()?.parse().ok()).collect();
    if blocks.len() != cfg.n_layer {
        return Err(Error::Other(format!(
            "holds {} transformer blocks but config.json says n_layer {}: the config and the checkpoint disagree",
            blocks.len(),
            cfg.n_layer
        )));
    }
    for s in &specs {
        let entry = header
            .get(&s.name)
            .ok_or_else(|| Error::Other(format!("tensor {} is missing: a checkpoint of another model?", s.name)))?;
        let dtype = entry.get("dtype").and_then(Value::as_str).unwrap_or("(no dtype)");
        let shape: Option<Vec<usize>> = entry.get("shape").and_then(|v| serde_json::from_value(v.clone()).ok());
        if dtype != "F32" || shape.as_ref() != Some(&s.shape) {
            let shape = shape.map_or("(no shape)".to_string(), |v| format!("{v:?}"));
            return Err(Error::Other(format!("{} is {dtype} {shape}, the config needs F32 {:?}", s.name, s.shape)));
        }
    }
    let extra: Vec<&String> =
        header.keys().filter(|k| *k != "__metadata__" && !specs.iter().any(|s| &s.name == *k)).collect();
    if let Some(first) = extra.first() {
        return Err(Error::Other(format!(
            "holds {} tensor(s) the config does not have (first: {first}): a checkpoint of another model?",
            extra.len()
        )));
    }
    let st = deserialize(bytes)?;
    let mut out = HashMap::new();
    for s in specs {
        let v = st.tensor(&s.name).map_err(|e| Error::Other(format!("tensor {}: {e}", s.name)))?;
        out.insert(s.name.clone(), bytemuck::pod_collect_to_vec(v.data()));
    }
    Ok(out)
}

/// `path: error`.
fn in_file(path: &Path, e: Error) -> Error {
    Error::Other(format!("{}: {e}", path.display()))
}

/// The JSON header of a safetensors file, after checking that its declared length fits the file.
fn safetensors_header(bytes: &[u8]) -> Result<serde_json::Map<String, Value>> {
    let not = |m: String| Error::Other(format!("not a valid safetensors file: {m}"));
    if bytes.len() < 8 {
        return Err(not(format!("{} bytes, too short for the 8-byte header length (truncated?)", bytes.len())));
    }
    let n = u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes"));
    let rest = bytes.len() - 8;
    if n > rest as u64 {
        return Err(not(format!("declares a {n}-byte header but only {rest} bytes follow (truncated or corrupt)")));
    }
    let header: Value =
        serde_json::from_slice(&bytes[8..8 + n as usize]).map_err(|e| not(format!("the header is not JSON ({e})")))?;
    match header {
        Value::Object(map) => Ok(map),
        _ => Err(not("the header is not a JSON object".into())),
    }
}

/// The safetensors crate's parse of bytes whose header `safetensors_header` has accepted.
fn deserialize(bytes: &[u8]) -> Result<SafeTensors<'_>> {
    SafeTensors::deserialize(bytes).map_err(|e| Error::Other(format!("not a valid safetensors file ({e})")))
}

/// Named 1-D f32 tensors (the optimizer state) as safetensors bytes.
pub fn flat_bytes(tensors: &HashMap<String, Vec<f32>>) -> Result<Vec<u8>> {
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut views = Vec::new();
    for n in names {
        let d = &tensors[n];
        views.push((
            n.clone(),
            TensorView::new(Dtype::F32, vec![d.len()], bytemuck::cast_slice(d))
                .map_err(|e| Error::Other(e.to_string()))?,
        ));
    }
    safetensors::serialize(views, None).map_err(|e| Error::Other(e.to_string()))
}

pub fn load_flat(path: &Path) -> Result<HashMap<String, Vec<f32>>> {
    let bad = |m: String| Error::Other(format!("{}: {m}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| crate::util::io_error(path, &e))?;
    let st = safetensors_header(&bytes).and_then(|_| deserialize(&bytes)).map_err(|e| in_file(path, e))?;
    let mut out = HashMap::new();
    for (name, v) in st.tensors() {
        if v.dtype() != Dtype::F32 {
            return Err(bad(format!("{name} is {:?}, expected F32", v.dtype())));
        }
        out.insert(name, bytemuck::pod_collect_to_vec(v.data()));
    }
    Ok(out)
}

/// The tokenizer must have the model's vocabulary: a tokenizer.json from another run would pass
/// every other check and produce nonsense.
pub fn check_tokenizer(model: &GptConfig, tokenizer: &crate::data::Tokenizer) -> Result<()> {
    if tokenizer.vocab_size() != model.vocab_size {
        return Err(Error::Other(format!(
            "tokenizer.json has {} tokens but config.json says vocab_size {}",
            tokenizer.vocab_size(),
            model.vocab_size
        )));
    }
    Ok(())
}

/// A checkpoint handed over as the bytes of its three files (the browser page gets them dropped
/// or picked): its config.json, model and tokenizer, and its weights, with the checks `wgpt
/// sample` makes on a run directory. Each error names the file it is about (a config.json that
/// describes an impossible model says "model config").
pub struct Opened {
    pub config: Value,
    pub model: GptConfig,
    pub tokenizer: crate::data::Tokenizer,
    pub params: HashMap<String, Vec<f32>>,
}

pub fn open_bytes(config: &[u8], model: &[u8], tokenizer: &[u8]) -> Result<Opened> {
    let json = |name: &str, bytes: &[u8]| {
        serde_json::from_slice::<Value>(bytes).map_err(|e| Error::Other(format!("{name}: not valid JSON ({e})")))
    };
    let doc = json("config.json", config)?;
    let gpt = model_from_config(&doc)?;
    let tok = crate::data::Tokenizer::from_json(&json("tokenizer.json", tokenizer)?)
        .map_err(|e| Error::Other(format!("tokenizer.json: {e}")))?;
    check_tokenizer(&gpt, &tok)?;
    let params = load_model_bytes(model, &gpt).map_err(|e| Error::Other(format!("model.safetensors: {e}")))?;
    Ok(Opened { config: doc, model: gpt, tokenizer: tok, params })
}

pub fn save_json(path: &Path, doc: &Value) -> Result<()> {
    write_atomic(path, &json_bytes(doc))
}

pub fn json_bytes(doc: &Value) -> Vec<u8> {
    serde_json::to_string_pretty(doc).expect("a JSON value serializes").into_bytes()
}

pub fn load_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| crate::util::io_error(path, &e))?;
    serde_json::from_str(&text).map_err(|e| Error::Other(format!("{}: not valid JSON ({e})", path.display())))
}
