//! Text as it is generated: byte-level tokens may end inside a UTF-8 character, so a stream shows
//! only the whole characters decoded so far and keeps the rest for the next token.

use crate::data::Tokenizer;

/// The tokens of one sequence so far and the text already shown.
#[derive(Default)]
pub struct TextStream {
    ids: Vec<u32>,
    shown: String,
}

impl TextStream {
    /// Adds a token; returns the new whole characters, if any.
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Option<String> {
        self.ids.push(id);
        let text = tokenizer.decode(&self.ids);
        if text.ends_with('\u{fffd}') || text.len() <= self.shown.len() || !text.starts_with(self.shown.as_str()) {
            return None;
        }
        let new = text[self.shown.len()..].to_string();
        self.shown = text;
        Some(new)
    }

    /// What is left to show once the sequence is done (a character the last tokens left unfinished
    /// is decoded as the replacement character).
    pub fn finish(self, tokenizer: &Tokenizer) -> String {
        let text = tokenizer.decode(&self.ids);
        text.get(self.shown.len()..).unwrap_or("").to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_whole_characters_only() {
        // Bytes only (no merges): 'é' is two tokens, shown once both have come.
        let tok = Tokenizer::Bpe(crate::data::bpe::Bpe::train("é", 256));
        let e = tok.encode("é").unwrap();
        assert_eq!(e.len(), 2);
        let x = tok.encode("x").unwrap()[0];
        let mut s = TextStream::default();
        assert_eq!(s.push(&tok, x).as_deref(), Some("x"));
        assert_eq!(s.push(&tok, e[0]), None);
        assert_eq!(s.push(&tok, e[1]).as_deref(), Some("é"));
        assert_eq!(s.finish(&tok), "");
        let mut s = TextStream::default();
        assert_eq!(s.push(&tok, e[0]), None);
        assert_eq!(s.finish(&tok), "\u{fffd}");
    }
}
