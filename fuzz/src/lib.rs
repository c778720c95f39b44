//! wgpt's GPU-free parsers, compiled from wgpt's own source files (`#[path]` into ../src) in a
//! module tree shaped like wgpt's, so their `crate::` paths resolve without building wgpu. The
//! fuzz targets (fuzz_targets/) and the seed writer (src/bin/seeds.rs) use them from here.

#[path = "../../src/error.rs"]
pub mod error;
#[path = "../../src/util.rs"]
pub mod util;

pub use error::{Error, Result};

#[path = "../../src/data"]
pub mod data {
    pub mod bpe;
    pub mod shard;
    pub mod tokenizer;

    pub use tokenizer::Tokenizer;
}

#[path = "../../src/model"]
pub mod model {
    pub mod config;
    pub mod params;

    pub use config::GptConfig;
    pub use params::{param_table, Init, ParamSpec};
}

#[path = "../../src/train"]
pub mod train {
    pub mod checkpoint;
}

/// The model the checkpoint target loads: small, so a seed is a few kilobytes.
pub const FUZZ_MODEL: model::GptConfig =
    model::GptConfig { vocab_size: 8, block_size: 4, n_layer: 1, n_head: 2, n_embd: 4 };

/// Text every tokenizer the fuzzer loads encodes (where it can) and decodes.
pub const SAMPLE: &str = "Hello world! It's 2026, naïve café — 日本語 \n\t done.";

/// What must hold for any tokenizer: ids of a text it encodes decode to that text, decoding any
/// ids (out-of-range ones too) does not panic, and its tokenizer.json loads back as the same
/// tokenizer.
pub fn check_tokenizer(tok: &data::Tokenizer, text: &str) {
    if let Ok(ids) = tok.encode(text) {
        let n = tok.vocab_size() as u32;
        assert!(ids.iter().all(|&i| i < n), "an id outside the vocabulary of {n}: {ids:?}");
        assert_eq!(tok.decode(&ids), text, "decode(encode(text)) != text; ids {ids:?}");
    }
    let n = tok.vocab_size() as u32;
    let _ = tok.decode(&[0, 1, n.saturating_sub(1), n, u32::MAX]);
    let again = data::Tokenizer::from_json(&tok.to_json())
        .unwrap_or_else(|e| panic!("a tokenizer's own tokenizer.json does not load: {e}"));
    assert_eq!(&again, tok, "the tokenizer.json of a tokenizer loads as another tokenizer");
}
