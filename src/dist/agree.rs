//! What the ranks of a job take from rank 0 before they compile their step: the matmul variant of
//! every product. Rank 0 chooses (by timing, where autotuning is on) and the others compile with
//! its choices, so timing noise on one rank cannot make its kernels, and so its bits, differ.

use std::collections::BTreeMap;

use super::Comm;
use crate::error::{Error, Result};
use crate::ops::matmul::Variant;

/// Rank 0's side: sends its choices (each rank calls `offer_kernels` or `accept_kernels` once,
/// at the same point).
pub fn offer_kernels(comm: &dyn Comm, kernels: &BTreeMap<String, Variant>) -> Result<()> {
    let text: BTreeMap<&str, &str> = kernels.iter().map(|(k, v)| (k.as_str(), v.name())).collect();
    let bytes = serde_json::to_vec(&text).map_err(|e| Error::Other(format!("kernel choices: {e}")))?;
    // Bytes travel as f32 values (exact up to 2^24): the communicator moves floats.
    comm.all_gather(bytes.into_iter().map(f32::from).collect())?;
    // A rank whose own choices differed compiles again before the next exchange.
    comm.expect_compile();
    Ok(())
}

/// Another rank's side: rank 0's choices.
pub fn accept_kernels(comm: &dyn Comm) -> Result<BTreeMap<String, Variant>> {
    let all = comm.all_gather(Vec::new())?;
    comm.expect_compile();
    let bytes: Vec<u8> = all[0].iter().map(|&x| x as u8).collect();
    let bad = |what: String| Error::Other(format!("kernel choices from rank 0: {what}"));
    let text: BTreeMap<String, String> = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    text.into_iter()
        .map(|(k, v)| match Variant::parse(&v) {
            Some(variant) => Ok((k, variant)),
            None => Err(bad(format!("unknown variant '{v}' for {k} (is every rank the same wgpt?)"))),
        })
        .collect()
}
