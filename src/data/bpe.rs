//! Byte-level BPE as GPT-2 defines it: text is split by GPT-2's pre-tokenizer pattern, each piece's
//! UTF-8 bytes are mapped to printable characters, and merges learned on the corpus join frequent
//! adjacent symbols. Training, encoding and decoding live here; `tokenizer.rs` saves and loads it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::sync::OnceLock;

use regex::Regex;

/// GPT-2's byte → character table: printable Latin-1 bytes stand for themselves, the other 68
/// bytes take the characters from U+0100 on, so every byte sequence is a printable string.
pub fn byte_chars() -> &'static [char; 256] {
    static TABLE: OnceLock<[char; 256]> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut t = ['\0'; 256];
        let mut next = 256u32;
        for b in 0..256u32 {
            let printable = (0x21..=0x7e).contains(&b) || (0xa1..=0xac).contains(&b) || (0xae..=0xff).contains(&b);
            t[b as usize] = if printable {
                char::from_u32(b).unwrap()
            } else {
                next += 1;
                char::from_u32(next - 1).unwrap()
            };
        }
        t
    })
}

fn char_bytes() -> &'static HashMap<char, u8> {
    static MAP: OnceLock<HashMap<char, u8>> = OnceLock::new();
    MAP.get_or_init(|| byte_chars().iter().enumerate().map(|(b, &c)| (c, b as u8)).collect())
}

/// Splits text the way GPT-2's pattern `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+|
/// ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+` does. The regex crate has no look-ahead, so the `\s+(?!\S)`
/// branch is emulated: a run of whitespace followed by text gives up its last character, which
/// then starts the next piece (a space joins the word after it, other whitespace stands alone).
pub fn pretokenize(text: &str) -> Vec<&str> {
    static RE: OnceLock<Regex> = OnceLock::new();
    let re = RE
        .get_or_init(|| Regex::new(r"^(?:'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+)").unwrap());
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < text.len() {
        let m = re.find(&text[pos..]).expect("the pattern matches any character");
        let mut end = pos + m.end();
        let piece = &text[pos..end];
        if end < text.len() && piece.chars().all(char::is_whitespace) {
            let last = piece.chars().next_back().unwrap().len_utf8();
            if piece.len() > last {
                end -= last;
            }
        }
        out.push(&text[pos..end]);
        pos = end;
    }
    out
}

/// A byte-level BPE model: the symbol strings (index = token id) and the ranked merges.
#[derive(Debug, Clone, PartialEq)]
pub struct Bpe {
    pub vocab: Vec<String>,
    pub merges: Vec<(u32, u32)>,
    ids: HashMap<String, u32>,
    ranks: HashMap<(u32, u32), u32>,
}

impl Bpe {
    pub fn from_parts(vocab: Vec<String>, merges: Vec<(u32, u32)>) -> Self {
        let ids = vocab.iter().enumerate().map(|(i, s)| (s.clone(), i as u32)).collect();
        let ranks = merges.iter().enumerate().map(|(r, &p)| (p, r as u32)).collect();
        Bpe { vocab, merges, ids, ranks }
    }

    pub fn id(&self, symbol: &str) -> Option<u32> {
        self.ids.get(symbol).copied()
    }

    /// Learns merges on `text` until the vocabulary holds `vocab_size` symbols (256 bytes + merges)
    /// or no pair occurs twice. Each round merges the most frequent adjacent pair; ties go to the
    /// pair whose symbols have the lowest ids, so training is deterministic.
    pub fn train(text: &str, vocab_size: usize) -> Self {
        let table = byte_chars();
        let mut vocab: Vec<String> = table.iter().map(|c| c.to_string()).collect();
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for piece in pretokenize(text) {
            *counts.entry(piece).or_insert(0) += 1;
        }
        let mut words: Vec<(Vec<u32>, u64)> =
            counts.into_iter().map(|(w, n)| (w.bytes().map(u32::from).collect(), n)).collect();
        words.sort();
        // Pair counts are kept up to date as merges rewrite the words that hold the merged pair,
        // instead of recounting the corpus every round; the heap holds (count, pair) entries, and
        // an entry whose count is no longer the pair's is stale and skipped.
        let mut pairs: HashMap<(u32, u32), u64> = HashMap::new();
        let mut holders: HashMap<(u32, u32), Vec<usize>> = HashMap::new();
        for (i, (w, n)) in words.iter().enumerate() {
            for p in w.windows(2) {
                *pairs.entry((p[0], p[1])).or_insert(0) += n;
                holders.entry((p[0], p[1])).or_default().push(i);
            }
        }
        let mut heap: BinaryHeap<(u64, Reverse<(u32, u32)>)> = pairs.iter().map(|(&p, &n)| (n, Reverse(p))).collect();
        let mut merges = Vec::new();
        while vocab.len() < vocab_size {
            let Some((count, Reverse(best))) = heap.pop() else { break };
            if pairs.get(&best) != Some(&count) {
                continue;
            }
            if count < 2 {
                break;
            }
            let new = vocab.len() as u32;
            vocab.push(format!("{}{}", vocab[best.0 as usize], vocab[best.1 as usize]));
            merges.push(best);
            let mut touched: Vec<usize> = holders.remove(&best).unwrap_or_default();
            touched.sort_unstable();
            touched.dedup();
            let mut changed: HashSet<(u32, u32)> = HashSet::new();
            for i in touched {
                let (w, n) = &mut words[i];
                if !w.windows(2).any(|p| (p[0], p[1]) == best) {
                    continue; // listed for a pair an earlier merge already rewrote
                }
                for p in w.windows(2) {
                    let c = pairs.get_mut(&(p[0], p[1])).expect("counted pair");
                    *c -= *n;
                    changed.insert((p[0], p[1]));
                }
                merge_pair(w, best, new);
                for p in w.windows(2) {
                    *pairs.entry((p[0], p[1])).or_insert(0) += *n;
                    changed.insert((p[0], p[1]));
                    if p[0] == new || p[1] == new {
                        holders.entry((p[0], p[1])).or_default().push(i);
                    }
                }
            }
            for p in changed {
                match pairs[&p] {
                    0 => {
                        pairs.remove(&p);
                    }
                    n => heap.push((n, Reverse(p))),
                }
            }
        }
        Bpe::from_parts(vocab, merges)
    }

    /// Token ids of `text`; any byte sequence encodes (the 256 byte symbols are always there).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::new();
        let mut cache: HashMap<&str, Vec<u32>> = HashMap::new();
        for piece in pretokenize(text) {
            let ids = cache.entry(piece).or_insert_with(|| self.encode_piece(piece));
            out.extend_from_slice(ids);
        }
        out
    }

    fn encode_piece(&self, piece: &str) -> Vec<u32> {
        let table = byte_chars();
        let mut w: Vec<u32> = piece.bytes().map(|b| self.ids[&table[b as usize].to_string()]).collect();
        // Apply the lowest-ranked merge present until none applies, as BPE encoding is defined.
        loop {
            let best = w.windows(2).filter_map(|p| self.ranks.get(&(p[0], p[1])).map(|&r| (r, (p[0], p[1])))).min();
            let Some((r, pair)) = best else { break };
            merge_pair(
                &mut w,
                pair,
                self.ids[&format!("{}{}", self.vocab[pair.0 as usize], self.vocab[pair.1 as usize])],
            );
            let _ = r;
        }
        w
    }

    /// The text of `ids` (invalid UTF-8 from a cut multi-byte character becomes U+FFFD).
    pub fn decode(&self, ids: &[u32]) -> String {
        let map = char_bytes();
        let bytes: Vec<u8> = ids
            .iter()
            .flat_map(|&i| self.vocab.get(i as usize).map(String::as_str).unwrap_or("").chars())
            .filter_map(|c| map.get(&c).copied())
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn merge_pair(w: &mut Vec<u32>, pair: (u32, u32), new: u32) {
    let mut i = 0;
    let mut out = Vec::with_capacity(w.len());
    while i < w.len() {
        if i + 1 < w.len() && (w[i], w[i + 1]) == pair {
            out.push(new);
            i += 2;
        } else {
            out.push(w[i]);
            i += 1;
        }
    }
    *w = out;
}
