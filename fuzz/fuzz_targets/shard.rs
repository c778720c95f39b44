//! The shard reader on any file: `Layout::parse` (what `Shard::open` checks) accepts it or says why
//! not, and every id of a shard it accepts can be read.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wgpt_fuzz::data::shard::{id_at, Layout};

fuzz_target!(|data: &[u8]| {
    let Ok(layout) = Layout::parse(data) else { return };
    let mut sum = 0u64;
    for i in 0..layout.len {
        sum += u64::from(id_at(data, layout.width, i));
    }
    std::hint::black_box(sum);
});
