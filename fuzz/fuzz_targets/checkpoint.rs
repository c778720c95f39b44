//! The checkpoint loader on any file: `load_model_bytes` (what `load_model` reads a
//! model.safetensors with) loads the small FUZZ_MODEL or says why not; what it loads has every
//! tensor at its size and saves to bytes that load back bit for bit. The same bytes as a
//! config.json: `model_from_config` accepts a valid model or says why not, and the config.json
//! written for what it accepts gives the same model, whose parameter table (what a load sizes its
//! buffers by) builds without overflow.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpt_fuzz::model::param_table;
use wgpt_fuzz::train::checkpoint::{hf_config, load_model_bytes, model_bytes, model_from_config};
use wgpt_fuzz::FUZZ_MODEL;

fuzz_target!(|data: &[u8]| {
    if let Ok(params) = load_model_bytes(data, &FUZZ_MODEL) {
        for s in param_table(&FUZZ_MODEL) {
            assert_eq!(params[&s.name].len(), s.numel(), "{}", s.name);
        }
        let bytes = model_bytes(&FUZZ_MODEL, &params).expect("a loaded model saves");
        let again = load_model_bytes(&bytes, &FUZZ_MODEL).expect("a saved model loads");
        for (name, v) in &params {
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(v), bits(&again[name]), "{name}");
        }
    }
    if let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(cfg) = model_from_config(&doc) {
            let again = model_from_config(&hf_config(&cfg, serde_json::Value::Null)).expect("a written config loads");
            assert_eq!(again, cfg);
            let total: u128 = param_table(&cfg).iter().map(|s| s.numel() as u128).sum();
            assert!(total > 0);
        }
    }
});
