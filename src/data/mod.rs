//! The data stage: tokenizers (char-level, byte-level BPE) that turn text into token ids.

pub mod bpe;
pub mod tokenizer;

pub use tokenizer::Tokenizer;
