//! The MPI implementation of [`super::World`]'s collectives: rsmpi over the system's MPI
//! (Debian's OpenMPI). Rank and size come from `MPI_COMM_WORLD`, the local rank from the
//! node's shared-memory communicator (`MPI_Comm_split_type(MPI_COMM_TYPE_SHARED)`). Buffers are
//! host memory; Debian's OpenMPI is built without CUDA support.

use mpi::collective::SystemOperation;
use mpi::datatype::PartitionMut;
use mpi::environment::Universe;
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::traits::*;

use super::World;
use crate::error::{Result, TrainError};

/// Elements per all-reduce call: MPI counts are `int`, and bounded buckets keep the extra send
/// copy (rsmpi has no in-place all-reduce) small.
const BUCKET: usize = 1 << 24;

fn comm() -> SimpleCommunicator {
    SimpleCommunicator::world()
}

pub(super) fn init() -> Result<(Universe, World)> {
    let universe = mpi::initialize().ok_or_else(|| TrainError::Invalid("MPI was already initialised in this process".into()))?;
    let world = universe.world();
    let local = world.split_shared(world.rank());
    let w = World { rank: world.rank() as usize, size: world.size() as usize, local_rank: local.rank() as usize };
    Ok((universe, w))
}

pub(super) fn abort(code: i32) -> ! {
    comm().abort(code)
}

pub(super) fn sum_f32(buf: &mut [f32]) {
    let c = comm();
    for chunk in buf.chunks_mut(BUCKET) {
        let send = chunk.to_vec();
        c.all_reduce_into(&send[..], chunk, SystemOperation::sum());
    }
}

pub(super) fn sum_f64(buf: &mut [f64]) {
    let c = comm();
    for chunk in buf.chunks_mut(BUCKET) {
        let send = chunk.to_vec();
        c.all_reduce_into(&send[..], chunk, SystemOperation::sum());
    }
}

pub(super) fn all_gather_u64(value: u64) -> Vec<u64> {
    let c = comm();
    let mut all = vec![0u64; c.size() as usize];
    c.all_gather_into(&value, &mut all[..]);
    all
}

pub(super) fn all_gather_bytes(bytes: &[u8]) -> Vec<Vec<u8>> {
    let c = comm();
    let len = i32::try_from(bytes.len()).expect("a rank's share fits an MPI count (2 GiB)");
    let mut counts = vec![0i32; c.size() as usize];
    c.all_gather_into(&len, &mut counts[..]);
    let displs: Vec<i32> = counts.iter().scan(0i32, |at, &n| Some(std::mem::replace(at, *at + n))).collect();
    let total: usize = counts.iter().map(|&n| n as usize).sum();
    let mut all = vec![0u8; total];
    {
        let mut partition = PartitionMut::new(&mut all[..], &counts[..], &displs[..]);
        c.all_gather_varcount_into(bytes, &mut partition);
    }
    counts
        .iter()
        .zip(&displs)
        .map(|(&n, &at)| all[at as usize..(at + n) as usize].to_vec())
        .collect()
}

pub(super) fn barrier() {
    comm().barrier();
}
