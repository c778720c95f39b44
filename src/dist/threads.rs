//! In-process peers: N `Threads` comms that exchange through shared slots and a barrier, one per
//! thread. What the unit tests run the reduction on, with the same calls an MPI job makes. A peer
//! dropped early (its thread returned or panicked) fails its peers' collectives instead of
//! leaving them waiting.

use std::sync::{Arc, Condvar, Mutex};

use super::Comm;
use crate::error::{Error, Result};

struct Shared {
    /// slots[from * n + to]: the part rank `from` sent rank `to` in the current collective.
    slots: Mutex<Vec<Option<Vec<f32>>>>,
    barrier: Gate,
}

/// A reusable barrier that knows when a peer has left: (arrived, generation, left).
struct Gate {
    state: Mutex<(usize, u64, bool)>,
    changed: Condvar,
    n: usize,
}

impl Gate {
    fn wait(&self) -> Result<()> {
        let left = || Error::Other("in-process job: a peer left the job (its thread ended or panicked)".into());
        let mut s = self.state.lock().map_err(|_| left())?;
        if s.2 {
            return Err(left());
        }
        let generation = s.1;
        s.0 += 1;
        if s.0 == self.n {
            (s.0, s.1) = (0, generation + 1);
            self.changed.notify_all();
            return Ok(());
        }
        while s.1 == generation && !s.2 {
            s = self.changed.wait(s).map_err(|_| left())?;
        }
        if s.1 == generation {
            return Err(left());
        }
        Ok(())
    }

    fn leave(&self) {
        if let Ok(mut s) = self.state.lock() {
            s.2 = true;
        }
        self.changed.notify_all();
    }
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
        let barrier = Gate { state: Mutex::new((0, 0, false)), changed: Condvar::new(), n };
        let shared = Arc::new(Shared { slots: Mutex::new(vec![None; n * n]), barrier });
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
        self.shared.barrier.wait()?;
        let got = {
            let mut slots = self.shared.slots.lock().map_err(poisoned)?;
            (0..n).map(|from| slots[from * n + self.rank].take().unwrap_or_default()).collect()
        };
        self.shared.barrier.wait()?;
        Ok(got)
    }
}

impl Drop for Threads {
    fn drop(&mut self) {
        self.shared.barrier.leave();
    }
}
