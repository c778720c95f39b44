//! The data stage: tokenizers (char-level, byte-level BPE) that turn text into token ids, and
//! token shards on disk.

pub mod batches;
pub mod bpe;
pub mod dataset;
pub mod shard;
pub mod stories;
pub mod tokenizer;

pub use tokenizer::Tokenizer;
