//! In-process peers: N `Threads` comms that exchange through shared slots and a barrier, one per
//! thread. What the unit tests run the reduction on, with the same calls an MPI job makes.

use std::sync::{Arc, Barrier, Mutex};

use super::Comm;
use crate::error::{Error, Result};

struct Shared {
    /// slots[from * n + to]: the part rank `from` sent rank `to` in the current collective.
    slots: Mutex<Vec<Option<Vec<f32>>>>,
    barrier: Barrier,
}

pub struct Threads {
    rank: usize,
    size: usize,
    shared: Arc<Shared>,
}

impl Threads {
    /// The `n` peers of one job, rank 0 first; give each to its own thread.
    pub fn job(n: usize) -> Vec<Threads> {
        assert!(n > 0, "a job has at least one rank");
        let shared = Arc::new(Shared { slots: Mutex::new(vec![None; n * n]), barrier: Barrier::new(n) });
        (0..n).map(|rank| Threads { rank, size: n, shared: shared.clone() }).collect()
    }
}

impl Comm for Threads {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.size
    }
    fn all_to_all(&self, parts: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        let n = self.size;
        if parts.len() != n {
            return Err(Error::Other(format!("all_to_all: {} parts for {n} ranks", parts.len())));
        }
        let poisoned = |_| Error::Other("all_to_all: a peer thread panicked".into());
        {
            let mut slots = self.shared.slots.lock().map_err(poisoned)?;
            for (to, part) in parts.into_iter().enumerate() {
                slots[self.rank * n + to] = Some(part);
            }
        }
        // Everyone has written before anyone reads, and everyone has read before the next
        // collective writes.
        self.shared.barrier.wait();
        let got = {
            let mut slots = self.shared.slots.lock().map_err(poisoned)?;
            (0..n).map(|from| slots[from * n + self.rank].take().unwrap_or_default()).collect()
        };
        self.shared.barrier.wait();
        Ok(got)
    }
}
