//! Data-parallel training on PyTorch's distributed engine (c10d, bound in `csrc/dist.cpp`):
//! which rank this process is (`world`, from torchrun's or SLURM's variables), the process group
//! it joins (a TCPStore rendezvous and gloo), and DDP's Reducer that averages gradients while
//! backward runs. One group per process, as torch.distributed's default group: `join` sets it,
//! `group()` reads it; without one (a plain run) every function here is a no-op.

mod ffi;
mod nccl;
mod world;

use std::sync::OnceLock;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tch::Tensor;

pub use self::world::World;

/// This process's membership of the group.
pub(crate) struct Group {
    pub world: World,
    handle: ffi::GroupHandle,
}

static GROUP: OnceLock<Group> = OnceLock::new();

/// How long the rendezvous and each collective wait where no `--dist-timeout` is given.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(300);

/// Collectives between the ranks: gloo (CPU tensors, and CUDA ones through the host), or NCCL
/// for CUDA tensors beside gloo for CPU ones (torch.distributed's "cpu:gloo,cuda:nccl").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Gloo,
    Nccl,
}

/// Joins the group the environment describes (no-op for a single process); `timeout` bounds the
/// rendezvous and every collective, so a dead rank stops the others instead of hanging them.
pub(crate) fn join(timeout: Duration, backend: Backend) -> Result<()> {
    let Some(world) = World::from_env()? else { return Ok(()) };
    if GROUP.get().is_some() {
        return Ok(());
    }
    let nccl = match backend {
        Backend::Nccl => Some(nccl::backend_fn().context("--dist-backend nccl")?),
        Backend::Gloo => None,
    };
    let handle = ffi::GroupHandle::init(&world, timeout, nccl).with_context(|| {
        format!(
            "rank {} of {}: joining the group at {}:{} (MASTER_ADDR, MASTER_PORT)",
            world.rank, world.size, world.master_addr, world.master_port
        )
    })?;
    let (rank, size, local) = (world.rank, world.size, world.local_rank);
    let backend = if nccl.is_some() { "gloo for CPU tensors, NCCL for CUDA ones" } else { "gloo" };
    tracing::info!("rank {rank} of {size} (local rank {local}), {backend}");
    let _ = GROUP.set(Group { world, handle });
    Ok(())
}

/// The group this process has joined, if any.
pub(crate) fn group() -> Option<&'static Group> {
    GROUP.get()
}

/// Ranks in the job (1 without a group).
pub(crate) fn world_size() -> usize {
    group().map_or(1, |g| g.world.size)
}

/// This process's rank (0 without a group).
pub(crate) fn rank() -> usize {
    group().map_or(0, |g| g.world.rank)
}

/// `seed` made this rank's own (unchanged on rank 0 and without a group): what each rank draws
/// its dropout masks from, so that the ranks' masks differ.
pub(crate) fn rank_seed(seed: u64) -> u64 {
    seed ^ (rank() as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Whether this process writes: logs, checkpoints and the model are rank 0's alone.
pub fn is_main() -> bool {
    rank() == 0
}

/// This rank's part of a batch that spans the ranks.
pub(crate) struct Share {
    pub examples: Vec<usize>,
    /// A batch smaller than the world leaves some ranks without examples: such a rank runs one
    /// as a stand-in, at weight 0, so that its backward still meets the others' all-reduce.
    pub stand_in: bool,
}

/// Rank r's contiguous r-th part of `batch` (sizes differ by one at most). Splitting every
/// step's batch, rather than sharding the data as DistributedSampler does, makes N ranks x
/// batch B take the very steps one process takes with batch N x B.
pub(crate) fn shard(batch: &[usize]) -> Share {
    let (n, world, rank) = (batch.len(), world_size(), rank());
    let (start, end) = (rank * n / world, (rank + 1) * n / world);
    if start == end {
        return Share { examples: vec![batch[rank % n]], stand_in: true };
    }
    Share { examples: batch[start..end].to_vec(), stand_in: false }
}

/// Every rank's rows of a batch that `shard` split, in batch order, from this rank's `own`
/// (`[its share, ...]`, or a stand-in's one row). The other ranks' rows arrive as values; this
/// rank's keep their graph, so a loss over the whole batch backpropagates into this rank's rows
/// alone (each rank's backward then carries its part of the whole batch's gradient). A
/// stand-in's row is left out of the batch but kept in the graph at weight 0, so that its
/// backward still meets the others' all-reduce. Without a group, `own` is the batch.
pub(crate) fn gather_shares(own: &Tensor, batch: usize) -> Result<Tensor> {
    let Some(g) = group() else { return Ok(own.shallow_clone()) };
    let (world, rank) = (g.world.size, g.world.rank);
    let (start, end) = ((rank * batch / world) as i64, ((rank + 1) * batch / world) as i64);
    let mut size = own.size();
    size[0] = batch as i64;
    // Each rank writes its rows into zeros: the sum over ranks is every row, exactly.
    let all = Tensor::zeros(&size, (own.kind(), own.device()));
    if end > start {
        all.narrow(0, start, end - start).copy_(&own.detach());
    }
    g.all_reduce_sum(&all).context("gathering the ranks' rows of the batch")?;
    if start == end {
        return Ok(all + (own * 0.0).sum(own.kind()));
    }
    let after = all.narrow(0, end, batch as i64 - end);
    Ok(Tensor::cat(&[all.narrow(0, 0, start), own.shallow_clone(), after], 0))
}

/// The factor that turns this rank's mean loss into its part of the mean over all ranks' shares
/// together, once the Reducer has averaged over ranks: world x (this rank's denominator / the
/// sum of all ranks'). A denominator is what a mean loss divides by: examples, labelled or
/// masked tokens, the class weights of the targets; None for a stand-in, which counts nothing.
/// 1 without a group (the denominator is then not read); 0 where no rank has one.
pub(crate) fn loss_weight(denominator: Option<&Tensor>) -> Result<f64> {
    let Some(g) = group() else { return Ok(1.0) };
    let denominator = denominator.map_or(0.0, |d| d.to_kind(tch::Kind::Double).double_value(&[]));
    let total = Tensor::from_slice(&[denominator]);
    g.all_reduce_sum(&total).context("summing the ranks' loss denominators")?;
    let total = total.double_value(&[0]);
    Ok(if total > 0.0 { g.world.size as f64 * denominator / total } else { 0.0 })
}

/// How an evaluation's batches are spread over processes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spread {
    /// This process computes every batch (predict, serve, thresholds tuned on rank 0 alone).
    Alone,
    /// Every rank of the group runs the same evaluation (the trainer's, `evaluate` under a
    /// launcher) and computes every world-th batch; the results are then summed over ranks
    /// (`complete`), each rank holding zeros where another computed, so every rank ends with
    /// what one process computes, bit for bit: no example is dropped or counted twice. The same
    /// as `Alone` without a group.
    Ranks,
}

impl Spread {
    /// The batches this process computes, each with its position in `batches`.
    pub fn take(self, batches: Vec<Vec<usize>>) -> Vec<(usize, Vec<usize>)> {
        let (world, rank) = match self {
            Spread::Ranks => (world_size(), rank()),
            Spread::Alone => (1, 0),
        };
        batches.into_iter().enumerate().filter(|(b, _)| b % world == rank).collect()
    }

    /// Sums `partial` over the ranks in place (a no-op alone).
    pub fn complete(self, partial: &Tensor) -> Result<()> {
        match (self, group()) {
            (Spread::Ranks, Some(g)) => g.all_reduce_sum(partial).context("gathering the ranks' evaluation"),
            _ => Ok(()),
        }
    }

    /// Column totals of per-batch sums (`[batches, k]`, f64, CPU, zero in the rows of batches
    /// this process did not compute), completed over the ranks and added up in batch order, so
    /// that they do not depend on which rank computed what.
    pub fn totals(self, per_batch: &Tensor) -> Result<Vec<f64>> {
        self.complete(per_batch)?;
        let mut totals = vec![0.0; per_batch.size()[1] as usize];
        for row in Vec::<Vec<f64>>::try_from(per_batch)? {
            totals.iter_mut().zip(row).for_each(|(t, x)| *t += x);
        }
        Ok(totals)
    }
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
pub(crate) struct Reducer {
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
