//! Tokenizers: character-level (the corpus's characters) and byte-level BPE, saved and loaded as a
//! Hugging Face `tokenizer.json`. Both are written as BPE models so the Python `tokenizers` library
//! encodes text to the same ids: char-level is a BPE without merges or pre-tokenizer.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::{json, Value};

use super::bpe::Bpe;
use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub enum Tokenizer {
    /// Sorted distinct characters; id = index.
    Char(Vec<char>),
    Bpe(Bpe),
}

/// A merge as tokenizer.json holds it: "a b", or ["a", "b"] when a symbol has a space in it (a
/// vocabulary loaded from another tokenizer.json may), which "a b" would split at the wrong space.
fn merge_json(b: &Bpe, x: u32, y: u32) -> Value {
    let (a, b) = (&b.vocab[x as usize], &b.vocab[y as usize]);
    if a.contains(' ') || b.contains(' ') {
        json!([a, b])
    } else {
        json!(format!("{a} {b}"))
    }
}

impl Tokenizer {
    pub fn char_level(text: &str) -> Self {
        let set: BTreeSet<char> = text.chars().collect();
        Tokenizer::Char(set.into_iter().collect())
    }

    pub fn bpe(text: &str, vocab_size: usize) -> Result<Self> {
        if vocab_size < 256 {
            return Err(Error::Other(format!(
                "--vocab {vocab_size}: byte-level BPE needs at least the 256 byte symbols"
            )));
        }
        Ok(Tokenizer::Bpe(Bpe::train(text, vocab_size)))
    }

    /// GPT-2's end-of-text token, where the vocabulary has one: generation stops there.
    pub fn end_of_text(&self) -> Option<u32> {
        match self {
            Tokenizer::Bpe(b) => b.id("<|endoftext|>"),
            Tokenizer::Char(_) => None,
        }
    }

    pub fn vocab_size(&self) -> usize {
        match self {
            Tokenizer::Char(c) => c.len(),
            Tokenizer::Bpe(b) => b.vocab.len(),
        }
    }

    /// Token ids of `text`. Char-level fails on a character it never saw, naming it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        match self {
            Tokenizer::Char(chars) => text
                .chars()
                .map(|c| {
                    chars
                        .binary_search(&c)
                        .map(|i| i as u32)
                        .map_err(|_| Error::Other(format!("character {c:?} is not in the char-level vocabulary")))
                })
                .collect(),
            Tokenizer::Bpe(b) => Ok(b.encode(text)),
        }
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        match self {
            Tokenizer::Char(chars) => ids.iter().filter_map(|&i| chars.get(i as usize)).collect(),
            Tokenizer::Bpe(b) => b.decode(ids),
        }
    }

    /// The Hugging Face `tokenizer.json` document.
    pub fn to_json(&self) -> Value {
        let (vocab, merges, byte_level): (Vec<String>, Vec<Value>, bool) = match self {
            Tokenizer::Char(chars) => (chars.iter().map(|c| c.to_string()).collect(), Vec::new(), false),
            Tokenizer::Bpe(b) => (b.vocab.clone(), b.merges.iter().map(|&(x, y)| merge_json(b, x, y)).collect(), true),
        };
        let vocab: serde_json::Map<String, Value> = vocab.into_iter().enumerate().map(|(i, s)| (s, json!(i))).collect();
        let byte_level_cfg =
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true});
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": [],
            "normalizer": null,
            "pre_tokenizer": if byte_level { byte_level_cfg.clone() } else { Value::Null },
            "post_processor": null,
            "decoder": if byte_level { byte_level_cfg } else { json!({"type": "Fuse"}) },
            "model": {
                "type": "BPE",
                "dropout": null,
                "unk_token": null,
                "continuing_subword_prefix": null,
                "end_of_word_suffix": null,
                "fuse_unk": false,
                "byte_fallback": false,
                "ignore_merges": false,
                "vocab": vocab,
                "merges": merges,
            },
        })
    }

    pub fn from_json(doc: &Value) -> Result<Self> {
        let bad = |m: &str| Error::Other(format!("tokenizer.json: {m}"));
        let model = doc.get("model").ok_or_else(|| bad("no \"model\""))?;
        if model.get("type").and_then(Value::as_str) != Some("BPE") {
            return Err(bad("only BPE models (as wgpt writes them) are supported"));
        }
        let vocab_map =
            model.get("vocab").and_then(Value::as_object).ok_or_else(|| bad("model.vocab is not an object"))?;
        let mut vocab = vec![String::new(); vocab_map.len()];
        let mut seen = vec![false; vocab_map.len()];
        for (s, id) in vocab_map {
            let id =
                id.as_u64().filter(|&i| (i as usize) < vocab.len()).ok_or_else(|| bad("vocab ids must be 0..N"))?;
            if std::mem::replace(&mut seen[id as usize], true) {
                return Err(bad(&format!("vocab id {id} appears twice")));
            }
            vocab[id as usize] = s.clone();
        }
        let byte_level =
            doc.get("pre_tokenizer").and_then(|p| p.get("type")).and_then(Value::as_str) == Some("ByteLevel");
        if !byte_level {
            let chars: Option<Vec<char>> = vocab
                .iter()
                .map(|s| {
                    let mut it = s.chars();
                    match (it.next(), it.next()) {
                        (Some(c), None) => Some(c),
                        _ => None,
                    }
                })
                .collect();
            let chars = chars.ok_or_else(|| bad("a char-level vocabulary holds single characters"))?;
            if chars.windows(2).any(|w| w[0] >= w[1]) {
                return Err(bad("char-level vocabulary is not in character order"));
            }
            return Ok(Tokenizer::Char(chars));
        }
        let bpe0 = Bpe::from_parts(vocab.clone(), Vec::new());
        let mut merges = Vec::new();
        for m in model.get("merges").and_then(Value::as_array).ok_or_else(|| bad("model.merges is not a list"))? {
            let (a, b) = match m {
                Value::String(s) => s.split_once(' ').map(|(a, b)| (a.to_string(), b.to_string())),
                Value::Array(p) if p.len() == 2 => {
                    Some((p[0].as_str().unwrap_or("").to_string(), p[1].as_str().unwrap_or("").to_string()))
                }
                _ => None,
            }
            .ok_or_else(|| bad("a merge is not a pair"))?;
            let (Some(x), Some(y)) = (bpe0.id(&a), bpe0.id(&b)) else {
                return Err(bad(&format!("merge {a:?} {b:?} names a symbol outside the vocabulary")));
            };
            merges.push((x, y));
        }
        // Every byte must have its symbol and every merge its result, or encoding could not proceed.
        if let Some(c) = super::bpe::byte_chars().iter().find(|c| bpe0.id(&c.to_string()).is_none()) {
            return Err(bad(&format!("the byte symbol {c:?} is missing from the vocabulary")));
        }
        if let Some(&(x, y)) =
            merges.iter().find(|&&(x, y)| bpe0.id(&format!("{}{}", vocab[x as usize], vocab[y as usize])).is_none())
        {
            return Err(bad(&format!(
                "merge {:?} {:?} has no token for its result",
                vocab[x as usize], vocab[y as usize]
            )));
        }
        Ok(Tokenizer::Bpe(Bpe::from_parts(vocab, merges)))
    }

    /// Writes `tokenizer.json` atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(&self.to_json()).map_err(|e| Error::Other(e.to_string()))?;
        crate::util::write_atomic(path, text.as_bytes())
    }

    /// The tokenizer of a model directory: its `tokenizer.json`, or GPT-2's original pair
    /// `vocab.json` (symbol to id) and `merges.txt` (a `#version` line, then one merge per line).
    pub fn load_dir(dir: &Path) -> Result<Self> {
        let json = dir.join("tokenizer.json");
        if json.is_file() {
            return Self::load(&json);
        }
        let (vocab, merges) = (dir.join("vocab.json"), dir.join("merges.txt"));
        if !vocab.is_file() || !merges.is_file() {
            return Err(Error::Other(format!(
                "{}: no tokenizer.json, nor GPT-2's vocab.json and merges.txt",
                dir.display()
            )));
        }
        let text = std::fs::read_to_string(&vocab).map_err(|e| crate::util::io_error(&vocab, &e))?;
        let vocab_doc: Value =
            serde_json::from_str(&text).map_err(|e| Error::Other(format!("{}: not JSON: {e}", vocab.display())))?;
        let text = std::fs::read_to_string(&merges).map_err(|e| crate::util::io_error(&merges, &e))?;
        let merge_lines: Vec<Value> = text
            .lines()
            .filter(|l| !l.starts_with("#version") && !l.trim().is_empty())
            .map(|l| Value::String(l.to_string()))
            .collect();
        let doc = json!({
            "model": {"type": "BPE", "vocab": vocab_doc, "merges": merge_lines},
            "pre_tokenizer": {"type": "ByteLevel"},
        });
        Self::from_json(&doc).map_err(|e| Error::Other(format!("{} + merges.txt: {e}", vocab.display())))
    }

    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| crate::util::io_error(path, &e))?;
        let doc: Value =
            serde_json::from_str(&text).map_err(|e| Error::Other(format!("{}: not JSON: {e}", path.display())))?;
        Self::from_json(&doc).map_err(|e| Error::Other(format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found with the fuzz target tokenizer_json (its save-and-load check): a merge of symbols with a space in them
    /// was saved as "a b c", which loads as the merge ("a", "b c").
    #[test]
    fn merges_of_symbols_with_spaces_save_and_load() {
        let Tokenizer::Bpe(b) = Tokenizer::bpe("", 256).unwrap() else { unreachable!() };
        let mut vocab = b.vocab.clone();
        vocab.extend(["a b".to_string(), "a bc".to_string()]);
        let c = vocab.iter().position(|s| s == "c").unwrap() as u32;
        let tok = Tokenizer::Bpe(Bpe::from_parts(vocab, vec![(256, c)]));
        let doc = tok.to_json();
        assert_eq!(doc["model"]["merges"], json!([["a b", "c"]]));
        assert_eq!(Tokenizer::from_json(&doc).unwrap(), tok);
        // Merges of symbols without spaces stay in the "a b" form Python's tokenizers reads everywhere.
        let tok = Tokenizer::bpe("aaaa aaaa", 300).unwrap();
        assert!(tok.to_json()["model"]["merges"].as_array().unwrap().iter().all(Value::is_string));
    }
}
