//! The MPI communicator (cargo feature `mpi`): one process per rank under `mpirun`. Only the
//! all-to-all exchanges of `Comm` are used; sums are wgpt's own (`reduce`), in rank order.

use mpi::datatype::{Partition, PartitionMut};
use mpi::traits::{Communicator, CommunicatorCollectives};

use super::Comm;
use crate::error::{Error, Result};

pub struct Mpi {
    world: mpi::topology::SimpleCommunicator,
    // Dropping the universe finalizes MPI: it lives as long as the communicator.
    _universe: mpi::environment::Universe,
}

// wgpt calls MPI from one thread at a time (the training loop's); the handles are plain ids.
unsafe impl Send for Mpi {}

impl Mpi {
    /// Initializes MPI (once per process).
    pub fn init() -> Result<Mpi> {
        let universe = mpi::initialize().ok_or_else(|| Error::Other("MPI was already initialized".into()))?;
        Ok(Mpi { world: universe.world(), _universe: universe })
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
    fn all_to_all(&self, parts: Vec<Vec<f32>>) -> Result<Vec<Vec<f32>>> {
        let n = self.size();
        if parts.len() != n {
            return Err(Error::Other(format!("all_to_all: {} parts for {n} ranks", parts.len())));
        }
        let send_counts = parts.iter().map(|p| count(p.len())).collect::<Result<Vec<i32>>>()?;
        let mut recv_counts = vec![0i32; n];
        self.world.all_to_all_into(&send_counts[..], &mut recv_counts[..]);
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
            self.world.all_to_all_varcount_into(&send, &mut into);
        }
        Ok((0..n).map(|i| recv[recv_displs[i] as usize..(recv_displs[i] + recv_counts[i]) as usize].to_vec()).collect())
    }
}
