//! The MPI communicator (cargo feature `mpi`): one process per rank under `mpirun`. Only the
//! all-to-all exchanges of `Comm` are used; sums are wgpt's own (`reduce`), in rank order.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use mpi::datatype::{Partition, PartitionMut};
use mpi::traits::{Communicator, CommunicatorCollectives};

use super::Comm;
use crate::error::{Error, Result};

pub struct Mpi {
    world: mpi::topology::SimpleCommunicator,
    /// Milliseconds since `epoch` at which the exchange in progress started (0: none).
    waiting_since: Arc<AtomicU64>,
    /// An exchange has completed (the watchdog's shorter limit applies).
    first_done: Arc<AtomicBool>,
    epoch: Instant,
    /// The watchdog's limit in milliseconds (`set_timeout`).
    timeout_ms: Arc<AtomicU64>,
}

// wgpt calls MPI from one thread at a time (the training loop's); the handles are plain ids.
unsafe impl Send for Mpi {}

/// MPI's environment: dropping it finalizes MPI, which waits for every rank. It is dropped only by
/// `finalize`, after a rank has finished well; a rank that stops on an error exits without it, so
/// mpirun sees a rank gone before finalizing and ends the job instead of leaving the others waiting.
struct Environment(#[allow(dead_code)] mpi::environment::Universe);
unsafe impl Send for Environment {}
static ENVIRONMENT: Mutex<Option<Environment>> = Mutex::new(None);

/// Finalizes MPI after a rank has finished its work (all ranks do, together).
pub fn finalize() {
    if let Ok(mut env) = ENVIRONMENT.lock() {
        env.take();
    }
}

impl Mpi {
    /// Initializes MPI (once per process) and a watchdog: an exchange that waits longer than
    /// `WGPT_COMM_TIMEOUT` seconds (default 60) for the other ranks (one stopped, hung, or lost
    /// its device) ends this process with one line; mpirun then ends the job. Checkpoints are
    /// written whole or not at all, so the last one stays intact. The first exchange may wait ten
    /// times as long: it also waits for the slowest rank to compile its step; so does the one after
    /// the kernel choices (`Comm::expect_compile`), where a rank may compile again. Rank 0's
    /// evaluations and checkpoints happen while the others wait: the timeout must exceed them.
    pub fn init() -> Result<Mpi> {
        let timeout =
            match std::env::var("WGPT_COMM_TIMEOUT") {
                Ok(v) => v.trim().parse::<f64>().ok().filter(|s| *s > 0.0).ok_or_else(|| {
                    Error::Other(format!("WGPT_COMM_TIMEOUT={v}: expected a number of seconds above 0"))
                })?,
                Err(_) => 60.0,
            };
        let universe = mpi::initialize().ok_or_else(|| Error::Other("MPI was already initialized".into()))?;
        let world = universe.world();
        let (waiting_since, epoch) = (Arc::new(AtomicU64::new(0)), Instant::now());
        let first_done = Arc::new(AtomicBool::new(false));
        let (watched, done, rank, size) = (waiting_since.clone(), first_done.clone(), world.rank(), world.size());
        let timeout_ms = Arc::new(AtomicU64::new((timeout * 1000.0) as u64));
        let limit_ms = timeout_ms.clone();
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(250));
            let since = watched.load(Ordering::Relaxed);
            let now = epoch.elapsed().as_millis() as u64;
            let timeout = limit_ms.load(Ordering::Relaxed) as f64 / 1000.0;
            let limit = if done.load(Ordering::Relaxed) { timeout } else { 10.0 * timeout };
            if since > 0 && now.saturating_sub(since) as f64 > limit * 1000.0 {
                eprintln!(
                    "wgpt: error: rank {rank} of {size}: the other ranks have not joined the gradient exchange for \
                     {limit} s (one stopped, hung or lost its device; --set comm_timeout or WGPT_COMM_TIMEOUT sets the wait); stopping, \
                     the last checkpoint is intact"
                );
                std::process::exit(3);
            }
        });
        if let Ok(mut env) = ENVIRONMENT.lock() {
            *env = Some(Environment(universe));
        }
        Ok(Mpi { world, waiting_since, first_done, epoch, timeout_ms })
    }

    fn exchange<T>(&self, f: impl FnOnce() -> T) -> T {
        self.waiting_since.store(self.epoch.elapsed().as_millis() as u64 + 1, Ordering::Relaxed);
        let out = f();
        self.waiting_since.store(0, Ordering::Relaxed);
        self.first_done.store(true, Ordering::Relaxed);
        out
    }
}

fn count(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| Error::Other(format!("MPI: a part of {n} values is more than one message holds")))
}

impl Comm for Mpi {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn set_timeout(&self, secs: f64) {
        self.timeout_ms.store((secs * 1000.0) as u64, Ordering::Relaxed);
    }
    fn expect_compile(&self) {
        self.first_done.store(false, Ordering::Relaxed);
    }
    fn all_to_all(&self, parts: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        let n = self.size();
        if parts.len() != n {
            return Err(Error::Other(format!("all_to_all: {} parts for {n} ranks", parts.len())));
        }
        let send_counts = parts.iter().map(|p| count(p.len())).collect::<Result<Vec<i32>>>()?;
        let mut recv_counts = vec![0i32; n];
        self.exchange(|| self.world.all_to_all_into(&send_counts[..], &mut recv_counts[..]));
        let displs = |counts: &[i32]| -> Vec<i32> {
            counts.iter().scan(0i32, |at, &c| Some(std::mem::replace(at, *at + c))).collect()
        };
        let (send_displs, recv_displs) = (displs(&send_counts), displs(&recv_counts));
        let flat: Vec<f32> = parts.concat();
        let total = recv_counts.iter().map(|&c| c as usize).sum();
        count(total)?;
        let mut recv = vec![0f32; total];
        {
            let send = Partition::new(&flat[..], &send_counts[..], &send_displs[..]);
            let mut into = PartitionMut::new(&mut recv[..], &recv_counts[..], &recv_displs[..]);
            self.exchange(|| self.world.all_to_all_varcount_into(&send, &mut into));
        }
        Ok((0..n).map(|i| recv[recv_displs[i] as usize..(recv_displs[i] + recv_counts[i]) as usize].to_vec()).collect())
    }
}
