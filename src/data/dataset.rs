//! From `--data` to tokens on disk: text (a file, a directory of `.txt` files, or the built-in
//! stories) is read in chunks, tokenized once into memory-mapped shards, and the shards are what
//! training samples from; shards made earlier (`wgpt tokenizer encode`) are used as they are.

use std::collections::BTreeSet;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::batches::Tokens;
use super::shard::{self, Shard, ShardWriter};
use super::{stories, Tokenizer};
use crate::error::{Error, Result};

/// Bytes of the built-in story corpus.
pub const DEFAULT_CORPUS_BYTES: usize = 400_000;
/// Byte-level BPE trains on the first this many bytes of the text (merges are counted over a
/// sample: counting a corpus larger than RAM would not fit).
pub const BPE_SAMPLE_BYTES: usize = 16 << 20;
/// How text is cut while it streams to shards.
#[derive(Debug, Clone, Copy)]
pub struct Pieces {
    /// Text is read and tokenized in pieces of about this many bytes.
    pub chunk_bytes: usize,
    /// Tokens per shard file.
    pub shard_tokens: u64,
}

impl Default for Pieces {
    fn default() -> Self {
        Pieces { chunk_bytes: 8 << 20, shard_tokens: 1 << 28 }
    }
}

/// Why a corpus without text is refused.
pub const EMPTY: &str = "the corpus is empty; pass a file with text";

/// The text in `bytes`, or why they are not text (binary data: not UTF-8, or NUL bytes).
pub fn as_text(bytes: &[u8]) -> std::result::Result<&str, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text (binary?); pass a text file".to_string())?;
    if text.contains('\0') {
        return Err("contains NUL bytes: binary data, not text".into());
    }
    Ok(text)
}

/// What `--data` names.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    Stories,
    Text(Vec<PathBuf>),
    /// Token shards in order, and the tokenizer.json they were made with.
    Shards {
        files: Vec<PathBuf>,
        tokenizer: PathBuf,
    },
}

/// Text held in memory (tests, evaluation files, tokenizer training).
#[derive(Debug)]
pub struct Corpus {
    pub text: String,
    pub source: String,
}

impl Input {
    /// Classifies `--data`: none = the built-in stories; a shard file or a directory of `.tok`
    /// shards = tokens (with the `tokenizer.json` beside them); a file or a directory of `.txt`
    /// files = text. Missing paths and empty directories are errors naming the path.
    pub fn detect(data: Option<&Path>) -> Result<Input> {
        let Some(path) = data else { return Ok(Input::Stories) };
        let bad = |m: String| Error::Other(format!("--data {}: {m}", path.display()));
        let tokenizer_beside = |dir: &Path| -> Result<PathBuf> {
            let t = dir.join("tokenizer.json");
            if t.is_file() {
                Ok(t)
            } else {
                Err(bad(format!(
                    "token shards need the tokenizer.json they were made with in {}; make shards with `wgpt tokenizer encode`",
                    dir.display()
                )))
            }
        };
        if path.is_dir() {
            let listed = |ext: &str| -> Result<Vec<PathBuf>> {
                let mut v: Vec<PathBuf> = std::fs::read_dir(path)
                    .map_err(|e| bad(crate::util::io_reason(&e)))?
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == ext))
                    .collect();
                v.sort();
                Ok(v)
            };
            let shards = listed("tok")?;
            if !shards.is_empty() {
                return Ok(Input::Shards { tokenizer: tokenizer_beside(path)?, files: shards });
            }
            let texts = listed("txt")?;
            if texts.is_empty() {
                return Err(bad("the directory holds no .txt files and no .tok shards".into()));
            }
            return Ok(Input::Text(texts));
        }
        if !path.exists() {
            return Err(bad("no such file or directory".into()));
        }
        if shard::is_shard(path) {
            let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
            return Ok(Input::Shards { tokenizer: tokenizer_beside(dir)?, files: vec![path.to_path_buf()] });
        }
        Ok(Input::Text(vec![path.to_path_buf()]))
    }

    /// "sha256:<hex>" of the corpus's content: the text (the built-in stories, or the files'
    /// bytes in order) or the shards' bytes in order. Names and places do not count, so a moved
    /// or renamed copy has the same fingerprint and an edited one another.
    pub fn fingerprint(&self) -> Result<String> {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        let files = match self {
            Input::Stories => {
                h.update(stories::corpus(42, DEFAULT_CORPUS_BYTES).as_bytes());
                return Ok(format!("sha256:{:x}", h.finalize()));
            }
            Input::Text(files) | Input::Shards { files, .. } => files,
        };
        for path in files {
            let mut f = std::fs::File::open(path).map_err(|e| crate::util::io_error(path, &e))?;
            std::io::copy(&mut f, &mut h).map_err(|e| crate::util::io_error(path, &e))?;
        }
        Ok(format!("sha256:{:x}", h.finalize()))
    }

    pub fn describe(&self) -> String {
        let names = |v: &[PathBuf]| match v {
            [one] => one.display().to_string(),
            _ => format!("{} files in {}", v.len(), v[0].parent().unwrap_or(Path::new(".")).display()),
        };
        match self {
            Input::Stories => "built-in stories".into(),
            Input::Text(v) => names(v),
            Input::Shards { files, .. } => format!("token shards: {}", names(files)),
        }
    }

    /// Calls `f` with the text in pieces of about `chunk_bytes`, each ending after a newline that
    /// is followed by a non-space character (or at the end of a file), so that tokenizing piece
    /// by piece gives the ids of the whole text. Stops early when `f` returns false. Fails on text
    /// that is not UTF-8 or holds NUL bytes (binary data), and on an empty corpus.
    pub fn for_each_chunk(&self, chunk_bytes: usize, mut f: impl FnMut(&str) -> Result<bool>) -> Result<()> {
        let files = match self {
            Input::Stories => {
                f(&stories::corpus(42, DEFAULT_CORPUS_BYTES))?;
                return Ok(());
            }
            Input::Text(files) => files,
            Input::Shards { files, .. } => {
                return Err(Error::Other(format!(
                    "--data {}: token shards hold no text; this needs a text file",
                    files[0].display()
                )))
            }
        };
        let mut any_text = false;
        for path in files {
            let bad = |m: String| Error::Other(format!("--data {}: {m}", path.display()));
            let mut file = std::fs::File::open(path).map_err(|e| bad(crate::util::io_reason(&e)))?;
            let mut buf: Vec<u8> = Vec::new();
            let mut eof = false;
            while !eof {
                let have = buf.len();
                buf.resize(have + chunk_bytes, 0);
                let n = read_full(&mut file, &mut buf[have..]).map_err(|e| bad(crate::util::io_reason(&e)))?;
                buf.truncate(have + n);
                eof = n < chunk_bytes;
                // Only the new bytes can hold a cut point: the older ones were searched already.
                let mut cut = if eof { buf.len() } else { cut_point(&buf, have.saturating_sub(2)) };
                if cut == 0 && buf.len() >= 8 * chunk_bytes {
                    // Text without ASCII spaces or newlines (or one endless word): cut at a
                    // character boundary so memory stays bounded; the ids there may differ from
                    // the whole text's.
                    cut = (1..buf.len()).rev().find(|&i| (buf[i] as i8) >= -0x40).unwrap_or(buf.len());
                }
                if cut == 0 {
                    continue; // no safe cut yet: read more before cutting
                }
                let piece = as_text(&buf[..cut]).map_err(bad)?;
                any_text |= !piece.trim().is_empty();
                if !f(piece)? {
                    return Ok(());
                }
                buf.drain(..cut);
            }
        }
        if !any_text {
            let what = match files.as_slice() {
                [one] => one.display().to_string(),
                _ => "every .txt file".into(),
            };
            return Err(Error::Other(format!("--data {what}: {EMPTY}")));
        }
        Ok(())
    }

    /// The whole text in memory.
    pub fn read_text(&self) -> Result<Corpus> {
        let mut text = String::new();
        self.for_each_chunk(Pieces::default().chunk_bytes, |piece| {
            text += piece;
            Ok(true)
        })?;
        Ok(Corpus { text, source: self.describe() })
    }

    /// A tokenizer for this text: char-level over every character in it, or byte-level BPE with
    /// `vocab_size` tokens trained on its first BPE_SAMPLE_BYTES.
    pub fn train_tokenizer(&self, kind: &str, vocab_size: usize) -> Result<Tokenizer> {
        if kind == "bpe" {
            let mut sample = String::new();
            self.for_each_chunk(Pieces::default().chunk_bytes, |piece| {
                sample += piece;
                Ok(sample.len() < BPE_SAMPLE_BYTES)
            })?;
            Tokenizer::bpe(&sample, vocab_size)
        } else {
            let mut chars = BTreeSet::new();
            self.for_each_chunk(Pieces::default().chunk_bytes, |piece| {
                chars.extend(piece.chars());
                Ok(true)
            })?;
            Ok(Tokenizer::Char(chars.into_iter().collect()))
        }
    }

    /// Tokenizes the text into `dir/0000.tok`, `dir/0001.tok`, ... and returns their paths. `dir`
    /// is created; shards appear only when complete.
    pub fn tokenize(&self, tok: &Tokenizer, dir: &Path) -> Result<Vec<PathBuf>> {
        self.tokenize_in(Pieces::default(), tok, dir)
    }

    /// `tokenize` with pieces and shards of the given sizes.
    pub fn tokenize_in(&self, pieces: Pieces, tok: &Tokenizer, dir: &Path) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| crate::util::io_error(dir, &e))?;
        let mut files = Vec::new();
        let mut writer: Option<ShardWriter> = None;
        self.for_each_chunk(pieces.chunk_bytes, |piece| {
            let mut ids = &tok.encode(piece)?[..];
            while !ids.is_empty() {
                let w = match &mut writer {
                    Some(w) => w,
                    None => {
                        let path = dir.join(format!("{:04}.tok", files.len()));
                        files.push(path.clone());
                        writer.insert(ShardWriter::create(&path, tok.vocab_size())?)
                    }
                };
                let room = (pieces.shard_tokens - w.len()).min(ids.len() as u64) as usize;
                w.push(&ids[..room])?;
                ids = &ids[room..];
                if w.len() == pieces.shard_tokens {
                    writer.take().unwrap().finish()?;
                }
            }
            Ok(true)
        })?;
        if let Some(w) = writer {
            w.finish()?;
        }
        Ok(files)
    }
}

/// Reads until `buf` is full or the file ends; returns the bytes read.
fn read_full(file: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match file.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// The last position at or after `from` where the text can be cut so that GPT-2's pre-tokenizer
/// gives the same pieces on both sides as on the whole text (0 if none): after a '\n', or before a
/// ' ', that sits alone between two printable ASCII characters. Such a newline is always a piece
/// of its own and such a space always starts one (` ?\p{L}+` and its siblings take it), and the
/// piece before the cut ends in a printable character, so the end-of-text look-ahead of
/// `\s+(?!\S)` never sees it. A newline inside a longer whitespace run is not safe: at the end
/// of a chunk the run would keep its last character.
pub fn cut_point(buf: &[u8], from: usize) -> usize {
    let graphic = |b: u8| (0x21..=0x7e).contains(&b);
    (from.max(2)..buf.len().saturating_sub(1))
        .rev()
        .find(|&i| {
            (buf[i - 1] == b'\n' && graphic(buf[i - 2]) && graphic(buf[i]))
                || (buf[i] == b' ' && graphic(buf[i - 1]) && graphic(buf[i + 1]))
        })
        .unwrap_or(0)
}

/// The text `--data` names (or the built-in stories) in memory.
pub fn load_corpus(data: Option<&Path>) -> Result<Corpus> {
    Input::detect(data)?.read_text()
}

/// The tokens training samples from: in memory, or memory-mapped shards read as one sequence.
#[derive(Debug)]
pub enum TokenSet {
    Memory(Vec<u32>),
    /// Shards and the index one past each shard's last token.
    Shards(Vec<Shard>, Vec<usize>),
}

impl TokenSet {
    /// Opens shards made for a vocabulary of `vocab_size` tokens; a shard made with another
    /// vocabulary is an error naming it.
    pub fn open(files: &[PathBuf], vocab_size: usize) -> Result<TokenSet> {
        let (mut shards, mut ends) = (Vec::new(), Vec::new());
        let mut total = 0;
        for f in files {
            let s = Shard::open(f)?;
            if s.vocab_size != vocab_size {
                return Err(Error::Other(format!(
                    "{}: shard of a {}-token vocabulary, but the tokenizer has {vocab_size}; use the tokenizer.json the shards were made with",
                    f.display(),
                    s.vocab_size
                )));
            }
            total += s.len();
            shards.push(s);
            ends.push(total);
        }
        Ok(TokenSet::Shards(shards, ends))
    }
}

impl Tokens for TokenSet {
    fn len(&self) -> usize {
        match self {
            TokenSet::Memory(v) => v.len(),
            TokenSet::Shards(_, ends) => ends.last().copied().unwrap_or(0),
        }
    }

    fn get(&self, i: usize) -> u32 {
        match self {
            TokenSet::Memory(v) => v[i],
            TokenSet::Shards(shards, ends) => {
                let s = ends.partition_point(|&e| e <= i);
                let start = if s == 0 { 0 } else { ends[s - 1] };
                shards[s].get(i - start)
            }
        }
    }
}
