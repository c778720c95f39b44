//! `Tokenizer::from_json` on any JSON document: it loads or says why not, and a tokenizer it loads
//! encodes and decodes text without panicking, round-trips it, and saves to a file that loads back
//! as the same tokenizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpt_fuzz::data::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Ok(doc) = serde_json::from_slice::<serde_json::Value>(data) else { return };
    let Ok(tok) = Tokenizer::from_json(&doc) else { return };
    wgpt_fuzz::check_tokenizer(&tok, wgpt_fuzz::SAMPLE);
});
