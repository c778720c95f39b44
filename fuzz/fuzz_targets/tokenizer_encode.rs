//! Tokenizers trained on the input text: char-level and byte-level BPE (vocabulary 256 + the first
//! byte's merges) encode the text and decode it back exactly, encode the sample text (BPE: any text)
//! likewise, and save to a tokenizer.json that loads back as the same tokenizer.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpt_fuzz::data::Tokenizer;

fuzz_target!(|data: &[u8]| {
    let Some((&merges, rest)) = data.split_first() else { return };
    let text = String::from_utf8_lossy(rest);
    let char_level = Tokenizer::char_level(&text);
    assert!(char_level.encode(&text).is_ok(), "char-level cannot encode the text it was made from");
    wgpt_fuzz::check_tokenizer(&char_level, &text);
    let bpe = Tokenizer::bpe(&text, 256 + merges as usize).expect("a vocabulary of 256 or more");
    assert!(bpe.encode(wgpt_fuzz::SAMPLE).is_ok(), "byte-level BPE encodes any text");
    wgpt_fuzz::check_tokenizer(&bpe, &text);
    wgpt_fuzz::check_tokenizer(&bpe, wgpt_fuzz::SAMPLE);
});
