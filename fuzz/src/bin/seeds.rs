//! Writes the seed corpus of each fuzz target into <dir>/<target>/ (default dir: seeds), valid
//! inputs made by wgpt's own writers: tokenizer.json files (char-level and BPE), texts, shards with
//! u16 and u32 ids, a model.safetensors of FUZZ_MODEL and its config.json.

use std::collections::HashMap;
use std::path::Path;

use wgpt_fuzz::data::{shard, Tokenizer};
use wgpt_fuzz::model::param_table;
use wgpt_fuzz::train::checkpoint::{hf_config, json_bytes, model_bytes};
use wgpt_fuzz::FUZZ_MODEL;

const TEXT: &str = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n\
First Citizen:\nYou are all resolved rather to die than to famish? We're 100% sure, aren't we?\n\
Zwölf Boxkämpfer jagen Viktor quer über den großen Sylter Deich — 東京 🦀\t  tabs  and   spaces \r\n";

// Built with the fuzz targets' instrumentation (one build for `make fuzz-ci`), this binary calls
// libFuzzer's coverage hooks, so it must link libFuzzer, which nothing here would pull in: naming
// the crate and its driver does (nothing calls it).
extern crate libfuzzer_sys;
extern "C" {
    fn LLVMFuzzerRunDriver(
        argc: *mut i32,
        argv: *mut *mut *mut i8,
        test_one: extern "C" fn(*const u8, usize) -> i32,
    ) -> i32;
}

fn main() {
    std::hint::black_box(LLVMFuzzerRunDriver as *const ());
    let dir = std::env::args().nth(1).unwrap_or_else(|| "seeds".into());
    let dir = Path::new(&dir);
    let put = |target: &str, name: &str, bytes: &[u8]| {
        let d = dir.join(target);
        std::fs::create_dir_all(&d).expect("create the seed folder");
        std::fs::write(d.join(name), bytes).expect("write a seed");
    };
    let json = |t: &Tokenizer| serde_json::to_vec(&t.to_json()).expect("JSON");

    let char_level = Tokenizer::char_level(TEXT);
    let bpe = Tokenizer::bpe(TEXT, 320).expect("BPE");
    put("tokenizer_json", "char.json", &json(&char_level));
    put("tokenizer_json", "bpe.json", &json(&bpe));

    put("tokenizer_encode", "text", &[&[64u8][..], TEXT.as_bytes()].concat());
    put("tokenizer_encode", "short", b"\x10aaabdaaabac  aa  bb\n\n");

    let tmp = std::env::temp_dir().join(format!("wgpt-fuzz-seed-{}.bin", std::process::id()));
    for (name, vocab) in [("u16.bin", bpe.vocab_size()), ("u32.bin", 70_000)] {
        let ids: Vec<u32> = bpe.encode(TEXT).expect("encode").iter().map(|&i| i * (vocab as u32 / 320)).collect();
        shard::write(&tmp, &ids, vocab).expect("write a shard");
        put("shard", name, &std::fs::read(&tmp).expect("read the shard"));
        std::fs::remove_file(&tmp).expect("remove the shard");
    }

    let params: HashMap<String, Vec<f32>> = param_table(&FUZZ_MODEL)
        .into_iter()
        .map(|s| {
            let v = (0..s.numel()).map(|i| (i as f32 * 0.37).sin()).collect();
            (s.name, v)
        })
        .collect();
    put("checkpoint", "model.safetensors", &model_bytes(&FUZZ_MODEL, &params).expect("model bytes"));
    put("checkpoint", "config.json", &json_bytes(&hf_config(&FUZZ_MODEL, serde_json::json!({"train": {}}))));
    println!("seeds written in {}", dir.display());
}
