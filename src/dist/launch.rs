//! How this process was started: alone, or as one rank of an `mpirun` job (Open MPI's
//! OMPI_COMM_WORLD_* variables, or MPICH Hydra's PMI_RANK / PMI_SIZE), and its communicator.

use super::{Comm, Place};
use crate::error::{Error, Result};

/// The job this process belongs to, from the launcher's environment: None when started alone
/// (or as a job of one).
pub fn detect() -> Result<Option<(Place, usize)>> {
    let var = |names: &[&str]| -> Result<Option<usize>> {
        for n in names {
            if let Ok(v) = std::env::var(n) {
                return v.trim().parse().map(Some).map_err(|_| {
                    Error::Other(format!("{n}={v}: expected a number (the MPI launcher sets it; is it mpirun's?)"))
                });
            }
        }
        Ok(None)
    };
    let Some(ranks) = var(&["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"])? else { return Ok(None) };
    if ranks <= 1 {
        return Ok(None);
    }
    let rank = var(&["OMPI_COMM_WORLD_RANK", "PMI_RANK"])?.unwrap_or(0);
    let local = var(&["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID"])?.unwrap_or(0);
    Ok(Some((Place { rank, ranks }, local)))
}

/// The communicator of a job `detect` found.
pub fn connect(place: Place) -> Result<Box<dyn Comm>> {
    #[cfg(feature = "mpi")]
    {
        let comm = super::mpi::Mpi::init()?;
        if (comm.rank(), comm.size()) != (place.rank, place.ranks) {
            return Err(Error::Other(format!(
                "MPI says rank {} of {}, the launcher's environment rank {} of {}",
                comm.rank(),
                comm.size(),
                place.rank,
                place.ranks
            )));
        }
        Ok(Box::new(comm))
    }
    #[cfg(not(feature = "mpi"))]
    Err(Error::Other(format!(
        "started by mpirun as one of {} ranks, but this wgpt was built without MPI; build it with \
         `cargo build --release --features mpi` (needs libopenmpi-dev and libclang-dev)",
        place.ranks
    )))
}
