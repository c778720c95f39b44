//! The data stage from `--data` to samples: what a path is taken for, text tokenized piece by
//! piece into several shards reading back as the whole text's ids, and the errors bad input gets.

mod common;
use std::path::PathBuf;

use common::{scratch, shared};

use wgpt::data::batches::{sample, Rng, Tokens};
use wgpt::data::dataset::{Input, Pieces, TokenSet};
use wgpt::data::{shard, Tokenizer};

fn shakespeare() -> PathBuf {
    shared("data/tinyshakespeare.txt")
}

fn err(r: wgpt::Result<impl std::fmt::Debug>) -> String {
    r.unwrap_err().to_string()
}

#[test]
fn chunked_tokenization_into_several_shards_equals_the_whole_text() {
    let dir = scratch("chunks");
    let text = std::fs::read_to_string(shakespeare()).unwrap()[..200_000].to_string();
    std::fs::write(dir.join("a.txt"), &text[..120_000]).unwrap();
    std::fs::write(dir.join("b.txt"), &text[120_000..]).unwrap();
    let input = Input::detect(Some(&dir)).unwrap();
    assert_eq!(input, Input::Text(vec![dir.join("a.txt"), dir.join("b.txt")]));
    for tok in [Tokenizer::char_level(&text), Tokenizer::bpe(&text[..50_000], 400).unwrap()] {
        let whole = [tok.encode(&text[..120_000]).unwrap(), tok.encode(&text[120_000..]).unwrap()].concat();
        // Small pieces (many cuts inside each file) and small shards (ids span shard boundaries).
        let pieces = Pieces { chunk_bytes: 5_000, shard_tokens: 30_000 };
        let out = dir.join(format!("tok{}", tok.vocab_size()));
        let files = input.tokenize_in(pieces, &tok, &out).unwrap();
        assert_eq!(files.len(), whole.len().div_ceil(30_000));
        let set = TokenSet::open(&files, tok.vocab_size()).unwrap();
        assert_eq!(set.len(), whole.len());
        let back: Vec<u32> = (0..set.len()).map(|i| set.get(i)).collect();
        assert!(back == whole, "piecewise ids differ from the whole text's ({} tokens)", tok.vocab_size());
        let leftovers: Vec<_> = std::fs::read_dir(&out).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
        assert!(leftovers.iter().all(|p| p.extension().is_some_and(|e| e == "tok")), "{leftovers:?}");

        // Samples from shards equal samples from the same ids in memory; targets are shifted ids.
        let mem = TokenSet::Memory(whole.clone());
        let range = 0..whole.len();
        let (a, b) = (sample(&set, &range, 4, 32, &mut Rng(7)), sample(&mem, &range, 4, 32, &mut Rng(7)));
        assert_eq!(a, b);
        assert_eq!(a.0[1..32], a.1[..31]);
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Whitespace runs around newlines (CRLF, blank lines, a space before a newline, Unicode spaces)
/// are where a careless cut changes GPT-2's pieces: a run at the end of a chunk keeps its last
/// character. Cut into pieces of every small size, the ids must still equal the whole text's.
#[test]
fn chunk_cuts_never_change_bpe_pieces() {
    let dir = scratch("cuts");
    let unit = "a \nb\r\n\r\nc\n\n\nd x\n\u{3000}\u{3000}y z\n\u{a0} w  q\t\nr's 12 !? ok\r\nend. ";
    let text = unit.repeat(40);
    let tok = Tokenizer::bpe(&text, 330).unwrap();
    let whole = tok.encode(&text).unwrap();
    std::fs::write(dir.join("t.txt"), &text).unwrap();
    let input = Input::detect(Some(&dir.join("t.txt"))).unwrap();
    for chunk_bytes in [7, 16, 31, 64, 100] {
        let out = dir.join(format!("c{chunk_bytes}"));
        let files = input.tokenize_in(Pieces { chunk_bytes, shard_tokens: 1 << 20 }, &tok, &out).unwrap();
        let set = TokenSet::open(&files, tok.vocab_size()).unwrap();
        let back: Vec<u32> = (0..set.len()).map(|i| set.get(i)).collect();
        assert!(back == whole, "pieces of {chunk_bytes} bytes change the ids");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shards_need_their_tokenizer_and_its_vocabulary() {
    let dir = scratch("shards");
    let tok = Tokenizer::char_level("abc \n");
    shard::write(&dir.join("0000.tok"), &tok.encode("abc abc\n").unwrap(), tok.vocab_size()).unwrap();
    let e = err(Input::detect(Some(&dir)));
    assert!(e.contains("tokenizer.json") && e.contains("wgpt tokenizer encode"), "{e}");
    tok.save(&dir.join("tokenizer.json")).unwrap();
    let input = Input::detect(Some(&dir)).unwrap();
    assert_eq!(input, Input::Shards { files: vec![dir.join("0000.tok")], tokenizer: dir.join("tokenizer.json") });
    // A single shard file is recognised by its magic number, whatever its name.
    std::fs::copy(dir.join("0000.tok"), dir.join("ids.bin")).unwrap();
    assert!(matches!(Input::detect(Some(&dir.join("ids.bin"))).unwrap(), Input::Shards { .. }));
    let e = err(TokenSet::open(&[dir.join("0000.tok")], 70));
    assert!(e.contains("0000.tok") && e.contains("5-token") && e.contains("70"), "{e}");
    let e = err(input.read_text());
    assert!(e.contains("hold no text"), "{e}");
    // A header claiming more tokens than 2-byte ids can name is corrupt.
    let mut bytes = std::fs::read(dir.join("0000.tok")).unwrap();
    bytes[24..32].copy_from_slice(&100_000u64.to_le_bytes());
    std::fs::write(dir.join("wide.tok"), &bytes).unwrap();
    let e = err(shard::Shard::open(&dir.join("wide.tok")));
    assert!(e.contains("100000") && e.contains("corrupt"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_text_inputs_name_the_file_and_the_problem() {
    let dir = scratch("bad");
    let e = err(Input::detect(Some(&dir.join("missing.txt"))));
    assert!(e.contains("missing.txt") && e.contains("no such file"), "{e}");
    let e = err(Input::detect(Some(&dir)));
    assert!(e.contains("no .txt files"), "{e}");
    std::fs::write(dir.join("empty.txt"), " \n\n").unwrap();
    let e = err(Input::detect(Some(&dir.join("empty.txt"))).unwrap().read_text());
    assert!(e.contains("empty.txt") && e.contains("empty"), "{e}");
    std::fs::write(dir.join("binary.txt"), [0x7f, b'E', b'L', b'F', 0xff, 0xfe, 0]).unwrap();
    let e = err(Input::detect(Some(&dir.join("binary.txt"))).unwrap().read_text());
    assert!(e.contains("binary.txt") && e.contains("not UTF-8"), "{e}");
    std::fs::write(dir.join("nul.txt"), "text\0more").unwrap();
    let e = err(Input::detect(Some(&dir.join("nul.txt"))).unwrap().read_text());
    assert!(e.contains("NUL"), "{e}");
    // A failed tokenization leaves no shard and no temporary file behind.
    let tok = Tokenizer::char_level("abc");
    std::fs::write(dir.join("other.txt"), "abcxyz").unwrap();
    let out = dir.join("out");
    let e = err(Input::detect(Some(&dir.join("other.txt"))).unwrap().tokenize(&tok, &out));
    assert!(e.contains("'x'"), "{e}");
    assert_eq!(std::fs::read_dir(&out).unwrap().count(), 0);
    std::fs::remove_dir_all(&dir).unwrap();
}
