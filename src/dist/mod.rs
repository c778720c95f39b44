//! Data-parallel training: the ranks of a job and how they exchange gradients. A `Comm` connects
//! one process (or thread) to its peers; `reduce` sums gradients over ranks in rank order, so the
//! result does not depend on how the sum is split across them. Communicators: one process
//! (`Solo`), in-process peers (`Threads`, for tests and several adapters in one process) and MPI
//! (`mpi::Mpi`, cargo feature `mpi`, one process per rank under `mpirun`).

pub mod agree;
#[cfg(not(target_arch = "wasm32"))]
pub mod launch;
#[cfg(all(feature = "mpi", not(target_arch = "wasm32")))]
pub mod mpi;
pub mod reduce;
pub mod threads;

use crate::error::Result;

pub use reduce::sum_in_rank_order;
pub use threads::Threads;

/// One rank's connection to the job. Collective calls must be made by every rank, in the same
/// order, with parts of agreed lengths.
pub trait Comm: Send {
    fn rank(&self) -> usize;
    fn size(&self) -> usize;
    /// Sends `parts[j]` to rank j (`parts.len()` is the job's size) and returns what every rank
    /// sent this one, in rank order.
    fn all_to_all(&self, parts: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>>;
    /// How long a rank waits in an exchange for the others before it gives up (MPI's watchdog;
    /// in-process peers never wait on a dead one).
    fn set_timeout(&self, _secs: f64) {}
    /// The next exchange may wait as long as the first (ten times the timeout): a rank may be
    /// compiling its step before it comes.
    fn expect_compile(&self) {}
    /// Every rank's `mine`, in rank order.
    fn all_gather(&self, mine: Vec<f32>) -> Result<Vec<Vec<f32>>> {
        self.all_to_all(vec![mine; self.size()])
    }
}

/// Ends this process's part in an MPI job after it finished well (every rank calls it at the
/// end). A rank that stops on an error skips it, so the launcher ends the whole job at once.
pub fn finalize() {
    #[cfg(all(feature = "mpi", not(target_arch = "wasm32")))]
    mpi::finalize();
}

/// Where a process stands in its job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    pub rank: usize,
    pub ranks: usize,
}

impl Place {
    pub const ALONE: Place = Place { rank: 0, ranks: 1 };

    /// Rank 0 logs, evaluates, samples and writes the run directory; the others only train.
    pub fn leads(&self) -> bool {
        self.rank == 0
    }
}

impl Default for Place {
    fn default() -> Self {
        Place::ALONE
    }
}

/// A job of one: every collective is the identity.
pub struct Solo;

impl Comm for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_to_all(&self, parts: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        Ok(parts)
    }
}
