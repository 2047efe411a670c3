//! Data-parallel training on PyTorch's distributed engine (c10d, bound in `csrc/dist.cpp`):
//! which rank this process is (`world`, from torchrun's or SLURM's variables), the process group
//! it joins (a TCPStore rendezvous and gloo), and DDP's Reducer that averages gradients while
//! backward runs. One group per process, as torch.distributed's default group: `join` sets it,
//! `group()` reads it; without one (a plain run) every function here is a no-op.

mod ffi;
pub mod launch;
mod world;

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tch::Tensor;

pub use self::world::World;

/// This process's membership of the group.
pub struct Group {
    pub world: World,
    handle: ffi::GroupHandle,
}

static GROUP: OnceLock<Group> = OnceLock::new();

/// Joins the group the environment describes (no-op for a single process); `timeout` bounds the
/// rendezvous and every collective, so a dead rank stops the others instead of hanging them.
pub fn join(timeout: Duration) -> Result<()> {
    let Some(world) = World::from_env()? else { return Ok(()) };
    if GROUP.get().is_some() {
        return Ok(());
    }
    let handle = ffi::GroupHandle::init(&world, timeout).with_context(|| {
        format!(
            "rank {} of {}: joining the group at {}:{} (MASTER_ADDR, MASTER_PORT)",
            world.rank, world.size, world.master_addr, world.master_port
        )
    })?;
    tracing::info!("rank {} of {} (local rank {}), gloo", world.rank, world.size, world.local_rank);
    let _ = GROUP.set(Group { world, handle });
    Ok(())
}

/// The group this process has joined, if any.
pub fn group() -> Option<&'static Group> {
    GROUP.get()
}

/// Ranks in the job (1 without a group).
pub fn world_size() -> usize {
    group().map_or(1, |g| g.world.size)
}

/// This process's rank (0 without a group).
pub fn rank() -> usize {
    group().map_or(0, |g| g.world.rank)
}

/// Whether this process writes: logs, checkpoints and the model are rank 0's alone.
pub fn is_main() -> bool {
    rank() == 0
}

/// This rank's part of a batch that spans the ranks, and the weight that makes the ranks'
/// averaged losses the batch's mean loss.
pub struct Share {
    pub examples: Vec<usize>,
    /// (examples here x ranks / examples in the batch): 1 for an even split. A rank left
    /// without examples (a batch smaller than the world) runs one with weight 0, so that its
    /// backward still meets the others' all-reduce; it adds nothing.
    pub weight: f64,
}

/// Rank r's contiguous r-th part of `batch` (sizes differ by one at most). Splitting every
/// step's batch, rather than sharding the data as DistributedSampler does, makes N ranks x
/// batch B take the very steps one process takes with batch N x B.
pub fn shard(batch: &[usize]) -> Share {
    let (n, world, rank) = (batch.len(), world_size(), rank());
    if world == 1 {
        return Share { examples: batch.to_vec(), weight: 1.0 };
    }
    let (start, end) = (rank * n / world, (rank + 1) * n / world);
    if start == end {
        return Share { examples: vec![batch[rank % n]], weight: 0.0 };
    }
    Share { examples: batch[start..end].to_vec(), weight: ((end - start) * world) as f64 / n as f64 }
}

impl Group {
    /// Rank 0's values of `tensors`, copied into every rank's.
    pub fn broadcast(&self, tensors: &[Tensor]) -> Result<()> {
        self.handle.broadcast(tensors, 0)
    }

    /// The sum over ranks, in place.
    pub fn all_reduce_sum(&self, t: &Tensor) -> Result<()> {
        self.handle.all_reduce(t, false)
    }

    /// The maximum over ranks, in place.
    pub fn all_reduce_max(&self, t: &Tensor) -> Result<()> {
        self.handle.all_reduce(t, true)
    }

    pub fn barrier(&self) -> Result<()> {
        self.handle.barrier()
    }

    /// Fails on every rank whose `value` differs from rank 0's, naming `what` and both values:
    /// ranks started with other flags or another bertkit would otherwise train out of step.
    pub fn agree(&self, what: &str, value: &str) -> Result<()> {
        let key = format!("bertkit/agree/{what}");
        if self.world.rank == 0 {
            self.handle.store_set(&key, value.as_bytes())?;
        }
        let reference = String::from_utf8_lossy(&self.handle.store_get(&key)?).into_owned();
        if reference != value {
            bail!("rank {} has other {what} than rank 0: {value} (rank 0: {reference})", self.world.rank);
        }
        Ok(())
    }
}

/// DDP's Reducer over the trainable parameters: after `prepare`, the next backward all-reduces
/// their gradients in buckets as they are produced, and leaves the average over ranks in each.
pub struct Reducer {
    handle: ffi::ReducerHandle,
}

/// DistributedDataParallel's default bucket size.
const BUCKET_BYTES: i64 = 25 * 1024 * 1024;

impl Reducer {
    /// None without a group.
    pub fn new(params: &[Tensor]) -> Result<Option<Self>> {
        let Some(g) = group() else { return Ok(None) };
        // Every rank must start from rank 0's weights (fresh heads included), as DDP ensures.
        g.broadcast(params).context("broadcasting rank 0's parameters")?;
        let handle = ffi::ReducerHandle::new(&g.handle, params, BUCKET_BYTES)?;
        Ok(Some(Reducer { handle }))
    }

    /// Call before the backward whose gradients are to be averaged (the last micro-batch of a
    /// step); earlier micro-batches accumulate locally, as under DDP's `no_sync`.
    pub fn prepare(&self, loss: &Tensor) -> Result<()> {
        self.handle.prepare(loss)
    }
}
