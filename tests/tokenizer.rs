//! Tokenizers: char-level and byte-level BPE round trips (any bytes for BPE), the first merges on a
//! small text, GPT-2's pre-tokenizer splits, and tokenizer.json save/load.

use wgpt::data::bpe::{pretokenize, Bpe};
use wgpt::data::Tokenizer;

#[test]
fn char_level_round_trip_and_unknown_character() {
    let text = "hello world\nthe end.";
    let tok = Tokenizer::char_level(text);
    let ids = tok.encode(text).unwrap();
    assert_eq!(ids.len(), text.chars().count());
    assert_eq!(tok.decode(&ids), text);
    let err = tok.encode("hello!").unwrap_err().to_string();
    assert!(err.contains("'!'"), "{err}");
}

#[test]
fn bpe_first_merges_on_a_small_text() {
    // Pieces: "aaab" once, " aaab" twice. (a, a) occurs 6 times; then (aa, a) and (a, b) tie at 3
    // and the lower ids win, so (a, b); then (aa, ab).
    let bpe = Bpe::train("aaab aaab aaab", 259);
    let merges: Vec<(String, String)> =
        bpe.merges.iter().map(|&(a, b)| (bpe.vocab[a as usize].clone(), bpe.vocab[b as usize].clone())).collect();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(merges, vec![s("a", "a"), s("a", "b"), s("aa", "ab")]);
    // Byte symbols keep their byte value as id (the space is 32), merges follow from 256.
    assert_eq!(bpe.encode("aaab aaab"), vec![258, 32, 258]);
}

#[test]
fn bpe_round_trips_arbitrary_bytes() {
    let corpus = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/assets/tiny.txt")).unwrap();
    let tok = Tokenizer::bpe(&corpus, 400).unwrap();
    assert!(tok.vocab_size() > 256 && tok.vocab_size() <= 400);
    let mut state = 12345u64;
    for len in [0usize, 1, 7, 100, 1000] {
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                (state >> 56) as u8
            })
            .collect();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let ids = tok.encode(&text).unwrap();
        assert_eq!(tok.decode(&ids), text, "round trip of {len} random bytes");
    }
    for text in ["the red fox sat", "  spaces  and\ttabs\n\nnewlines ", "émoji 🦊 and ünïcödé", "it's they'll we'd"]
    {
        assert_eq!(tok.decode(&tok.encode(text).unwrap()), text);
    }
    // Merges learned on the corpus shorten its own text.
    assert!(tok.encode(&corpus).unwrap().len() < corpus.len() * 3 / 4);
}

#[test]
fn pretokenizer_splits_like_gpt2() {
    assert_eq!(pretokenize("Hello world"), vec!["Hello", " world"]);
    assert_eq!(pretokenize("it's 42 apples!!"), vec!["it", "'s", " 42", " apples", "!!"]);
    // A run of spaces leaves its last space to the next word; a trailing run stays whole.
    assert_eq!(pretokenize("a   b  "), vec!["a", "  ", " b", "  "]);
    assert_eq!(pretokenize("x\n\ny"), vec!["x", "\n", "\n", "y"]);
}

#[test]
fn tokenizer_json_round_trip() {
    let dir = std::env::temp_dir().join(format!("wgpt-tok-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let text = "the cat sat on the mat, the cat sat.";
    for tok in [Tokenizer::char_level(text), Tokenizer::bpe(text, 270).unwrap()] {
        let path = dir.join("tokenizer.json");
        tok.save(&path).unwrap();
        let back = Tokenizer::load(&path).unwrap();
        assert_eq!(back, tok);
        assert_eq!(back.encode(text).unwrap(), tok.encode(text).unwrap());
        let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(doc["model"]["type"], "BPE");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn shard_round_trip_u16_and_u32_and_bad_files() {
    use wgpt::data::shard;
    let dir = std::env::temp_dir().join(format!("wgpt-shard-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for vocab in [65usize, 70_000] {
        let ids: Vec<u32> = (0..1000).map(|i| (i * 7919 % vocab) as u32).collect();
        let path = dir.join(format!("v{vocab}.bin"));
        shard::write(&path, &ids, vocab).unwrap();
        let s = shard::Shard::open(&path).unwrap();
        assert_eq!((s.len(), s.vocab_size), (1000, vocab));
        assert_eq!(s.slice(0, 1000), ids);
        let bytes = std::fs::metadata(&path).unwrap().len();
        assert_eq!(bytes, 32 + 1000 * if vocab <= 65536 { 2 } else { 4 });
    }
    let err = shard::write(&dir.join("bad.bin"), &[3, 70], 65).unwrap_err().to_string();
    assert!(err.contains("70") && err.contains("65"), "{err}");
    assert!(!dir.join("bad.bin").exists(), "nothing is written for bad ids");
    std::fs::write(dir.join("junk.bin"), b"hello").unwrap();
    assert!(shard::Shard::open(&dir.join("junk.bin")).err().unwrap().to_string().contains("bad magic"));
    let good = std::fs::read(dir.join("v65.bin")).unwrap();
    std::fs::write(dir.join("cut.bin"), &good[..good.len() - 3]).unwrap();
    assert!(shard::Shard::open(&dir.join("cut.bin")).err().unwrap().to_string().contains("truncated"));
    std::fs::remove_dir_all(&dir).unwrap();
}
