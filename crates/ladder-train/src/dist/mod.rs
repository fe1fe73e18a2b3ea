//! Data parallelism across processes, as `torch.distributed` offers it to a DDP trainer: who
//! this process is in the job ([`World`]: rank, size, local rank) and the few collectives the
//! trainer needs (sum a buffer, compare a checksum, gather rows, wait for rank 0).
//!
//! Two implementations behind one type. A process started without a launcher is a world of one
//! whose collectives do nothing, so `ladder` run by hand behaves exactly as it always has, and
//! the default build links no MPI. Built with the `mpi` feature and started by `mpirun` or
//! `srun --mpi=pmix`, the processes form one MPI world (rsmpi over the system's OpenMPI, see
//! `mpi.rs`). Every collective must be called by every rank, in the same order.

pub mod grads;
#[cfg(feature = "mpi")]
mod mpi;

use std::sync::OnceLock;

use crate::error::{Result, TrainError};

/// This process's place in the job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct World {
    rank: usize,
    size: usize,
    local_rank: usize,
}

/// Whether this build can run as several processes (cargo feature `mpi`).
pub const MPI: bool = cfg!(feature = "mpi");

static WORLD: OnceLock<World> = OnceLock::new();

/// The world set up by [`init`]; a world of one when `init` was never called (library use,
/// unit tests).
pub fn world() -> &'static World {
    WORLD.get_or_init(World::single)
}

/// Keeps MPI initialised while the process runs: the binary holds it to the end of `main`,
/// and MPI is finalised when it drops.
pub struct Session {
    #[cfg(feature = "mpi")]
    _universe: Option<::mpi::environment::Universe>,
}

impl Session {
    /// Ends the whole job after an error that the other ranks did not see (they may be waiting
    /// in a collective for this one): `MPI_Abort` with `code` in a world of several processes,
    /// else just the exit code. The binary calls it for every error other than the ones every
    /// rank reaches together (an interrupted run).
    pub fn fail(self, code: u8) -> std::process::ExitCode {
        #[cfg(feature = "mpi")]
        if world().size > 1 {
            mpi::abort(i32::from(code));
        }
        std::process::ExitCode::from(code)
    }
}

/// The process count a launcher announced (`mpirun`'s `OMPI_COMM_WORLD_SIZE`, MPICH/PMI's
/// `PMI_SIZE`, `srun`'s `SLURM_STEP_NUM_TASKS` when PMIx is in use); `None` when started by hand.
fn launched_size() -> Option<usize> {
    let var = |name: &str| std::env::var(name).ok().and_then(|v| v.parse::<usize>().ok());
    var("OMPI_COMM_WORLD_SIZE")
        .or_else(|| var("PMI_SIZE"))
        .or_else(|| std::env::var_os("PMIX_RANK").and_then(|_| var("SLURM_STEP_NUM_TASKS").or(Some(1))))
}

/// Joins the job the launcher started, or makes a world of one. Call once, first thing in
/// `main`; keep the returned [`Session`] alive until the end.
pub fn init() -> Result<Session> {
    let launched = launched_size();
    #[cfg(feature = "mpi")]
    {
        let (universe, world) = match launched {
            Some(n) => {
                let (universe, world) = mpi::init()?;
                if world.size != n {
                    // E.g. `srun` without `--mpi=pmix`: N singletons, each training alone.
                    return Err(TrainError::Invalid(format!(
                        "the launcher started {n} processes but MPI sees {}; under Slurm use `srun --mpi=pmix`",
                        world.size
                    )));
                }
                (Some(universe), world)
            }
            None => (None, World::single()),
        };
        tracing::debug!(rank = world.rank, size = world.size, local_rank = world.local_rank, "world");
        let _ = WORLD.set(world);
        Ok(Session { _universe: universe })
    }
    #[cfg(not(feature = "mpi"))]
    match launched {
        // N copies of a single-process trainer would each train alone and race on --out.
        Some(n) if n > 1 => Err(TrainError::Invalid(format!(
            "started as {n} processes (mpirun or srun), but this ladder was built without MPI; rebuild with `cargo build --release --features mpi`"
        ))),
        _ => {
            let _ = WORLD.set(World::single());
            Ok(Session {})
        }
    }
}

impl World {
    fn single() -> Self {
        World { rank: 0, size: 1, local_rank: 0 }
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// Rank among the processes of this node (which GPU a rank drives).
    pub fn local_rank(&self) -> usize {
        self.local_rank
    }

    /// Rank 0: the one process that writes metrics, checkpoints, outputs and the progress bar.
    pub fn is_root(&self) -> bool {
        self.rank == 0
    }

    /// Whether work unit `index` (a micro-batch of a step, a batch of rows) is this rank's:
    /// units are dealt round-robin, so unit 0 is always rank 0's and the ranks' shares differ
    /// by at most one.
    pub fn owns(&self, index: usize) -> bool {
        index % self.size == self.rank
    }

    /// Sums `buf` element-wise over every rank; each rank ends with the sum.
    pub fn sum_f32(&self, buf: &mut [f32]) {
        #[cfg(feature = "mpi")]
        if self.size > 1 {
            mpi::sum_f32(buf);
        }
        let _ = buf;
    }

    /// Sums `buf` element-wise over every rank (the per-step agreement: losses, flags).
    pub fn sum_f64(&self, buf: &mut [f64]) {
        #[cfg(feature = "mpi")]
        if self.size > 1 {
            mpi::sum_f64(buf);
        }
        let _ = buf;
    }

    /// Every rank's `value`, in rank order.
    pub fn all_gather_u64(&self, value: u64) -> Vec<u64> {
        #[cfg(feature = "mpi")]
        if self.size > 1 {
            return mpi::all_gather_u64(value);
        }
        vec![value]
    }

    /// Every rank's `bytes` (of any length), in rank order.
    pub fn all_gather_bytes(&self, bytes: &[u8]) -> Vec<Vec<u8>> {
        #[cfg(feature = "mpi")]
        if self.size > 1 {
            return mpi::all_gather_bytes(bytes);
        }
        vec![bytes.to_vec()]
    }

    /// Waits until every rank gets here (no rank leaves before rank 0 has written a checkpoint).
    pub fn barrier(&self) {
        #[cfg(feature = "mpi")]
        if self.size > 1 {
            mpi::barrier();
        }
    }

    /// Checks that every rank holds the same `checksum` of `what`; the error names the first
    /// rank that differs from rank 0, and ends with `hint`.
    pub fn check_same(&self, checksum: u64, what: &str, hint: &str) -> Result<()> {
        let all = self.all_gather_u64(checksum);
        match all.iter().position(|&c| c != all[0]) {
            Some(rank) => Err(TrainError::Invalid(format!(
                "rank {rank} of {} holds other {what} than rank 0 (checksum {:016x} vs {:016x}); {hint}",
                self.size, all[rank], all[0]
            ))),
            None => Ok(()),
        }
    }

    /// Runs `work` on this rank's share of `count` units (dealt by [`World::owns`]) and returns
    /// every unit's result, as bytes, on every rank, in unit order: rows split across ranks and
    /// put back together exactly as one process would have produced them. Bytes, so what
    /// travels is exact (an output line, f32 bits), not re-encoded floats.
    pub fn map_shared(&self, count: usize, mut work: impl FnMut(usize) -> Vec<u8>) -> Vec<Vec<u8>> {
        if self.size == 1 {
            return (0..count).map(work).collect();
        }
        // This rank's results, each behind its length.
        let mut mine = Vec::new();
        for unit in (0..count).filter(|&i| self.owns(i)) {
            let bytes = work(unit);
            mine.extend((bytes.len() as u64).to_le_bytes());
            mine.extend(bytes);
        }
        let shares = self.all_gather_bytes(&mine);
        let mut at = vec![0usize; self.size];
        (0..count)
            .map(|unit| {
                let (share, pos) = (&shares[unit % self.size], &mut at[unit % self.size]);
                let len = u64::from_le_bytes(share[*pos..*pos + 8].try_into().expect("8 bytes")) as usize;
                let bytes = share[*pos + 8..*pos + 8 + len].to_vec();
                *pos += 8 + len;
                bytes
            })
            .collect()
    }
}

/// Test hook (fault injection for the multi-process tests): `LADDER_FAULT_NAN=RANK:STEP` makes
/// rank RANK's loss NaN at optimizer step STEP (1-based), as a diverging batch would.
pub(crate) fn injected_nan(step: usize) -> bool {
    static AT: OnceLock<Option<(usize, usize)>> = OnceLock::new();
    let at = AT.get_or_init(|| {
        let v = std::env::var("LADDER_FAULT_NAN").ok()?;
        let (rank, step) = v.split_once(':')?;
        Some((rank.parse().ok()?, step.parse().ok()?))
    });
    *at == Some((world().rank, step))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_of_one_owns_everything_and_its_collectives_do_nothing() {
        let w = World::single();
        assert!(w.is_root() && (0..5).all(|i| w.owns(i)));
        let mut buf = [1.5f32, -2.0];
        w.sum_f32(&mut buf);
        assert_eq!(buf, [1.5, -2.0]);
        assert_eq!(w.map_shared(3, |i| vec![i as u8; i]), vec![vec![], vec![1], vec![2, 2]]);
        assert!(w.check_same(42, "weights", "").is_ok());
    }

    #[test]
    fn units_are_dealt_round_robin() {
        let ranks: Vec<World> = (0..3).map(|rank| World { rank, size: 3, local_rank: rank }).collect();
        let owners: Vec<usize> = (0..7).map(|i| ranks.iter().position(|w| w.owns(i)).unwrap()).collect();
        assert_eq!(owners, [0, 1, 2, 0, 1, 2, 0]);
    }
}
