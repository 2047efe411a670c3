//! `bertkit launch`: torchrun's job for one machine (or one node of several) without Python:
//! starts `--nproc-per-node` copies of a bertkit command with the variables torchrun sets,
//! passes SIGINT/SIGTERM on to all of them, and when one rank fails stops the others and exits
//! with its status, naming it.

use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

#[derive(clap::Args)]
pub struct Args {
    /// Ranks (processes) to start on this machine.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub nproc_per_node: u32,
    /// Machines in the job, each running its own `bertkit launch`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..))]
    pub nnodes: u32,
    /// This machine's place among them (0 hosts the rendezvous).
    #[arg(long, default_value_t = 0)]
    pub node_rank: u32,
    /// Address of node 0, where rank 0 serves the rendezvous store.
    #[arg(long, default_value = "127.0.0.1")]
    pub master_addr: String,
    /// Port of the rendezvous store; default a free one (one node only: the others must know it).
    #[arg(long)]
    pub master_port: Option<u16>,
    /// Threads per rank (default: this machine's cores shared out among its ranks).
    #[arg(long)]
    pub threads_per_rank: Option<usize>,
    /// The bertkit command each rank runs, after `--`: `finetune --model ... --output ...`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub command: Vec<String>,
}

/// How long ranks get to stop after SIGTERM before they are killed.
const GRACE: Duration = Duration::from_secs(30);

pub fn run(args: Args) -> Result<i32> {
    if args.node_rank >= args.nnodes {
        bail!("--node-rank {} but --nnodes {}: node ranks are 0 to {}", args.node_rank, args.nnodes, args.nnodes - 1);
    }
    let port = match args.master_port {
        Some(p) => p,
        None if args.nnodes == 1 => free_port()?,
        None => bail!("--nnodes {}: pass the same --master-port to every node", args.nnodes),
    };
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())?;
    }
    let local = args.nproc_per_node as usize;
    let threads = args.threads_per_rank.unwrap_or((bertkit::device::physical_cores() / local).max(1));
    let mut ranks = Vec::new();
    for local_rank in 0..local {
        let rank = args.node_rank as usize * local + local_rank;
        let child = Command::new(std::env::current_exe()?)
            .args(&args.command)
            .env("RANK", rank.to_string())
            .env("LOCAL_RANK", local_rank.to_string())
            .env("WORLD_SIZE", (args.nnodes as usize * local).to_string())
            .env("LOCAL_WORLD_SIZE", local.to_string())
            .env("GROUP_RANK", args.node_rank.to_string())
            .env("MASTER_ADDR", &args.master_addr)
            .env("MASTER_PORT", port.to_string())
            .env("OMP_NUM_THREADS", threads.to_string())
            .spawn()
            .with_context(|| format!("starting rank {rank}"))?;
        ranks.push((rank, child));
    }
    supervise(ranks, &stop)
}

/// Waits for every rank. The first to fail (or a signal to the launcher) has the others sent
/// SIGTERM, then killed after `GRACE`. Returns 0, or the failed rank's exit code.
fn supervise(mut ranks: Vec<(usize, Child)>, stop: &AtomicBool) -> Result<i32> {
    use std::os::unix::process::ExitStatusExt;
    let mut failed: Option<(usize, ExitStatus)> = None;
    let mut stopping_since: Option<Instant> = None;
    let mut done = vec![false; ranks.len()];
    while done.contains(&false) {
        let mut failing = vec![];
        for (i, (rank, child)) in ranks.iter_mut().enumerate() {
            if done[i] {
                continue;
            }
            if let Some(status) = child.try_wait()? {
                done[i] = true;
                if !status.success() {
                    failing.push((*rank, status));
                }
            }
        }
        // A rank killed by a signal is the cause when others fail in the same poll: they exit
        // with an error moments after losing their connection to it.
        let cause = failing.iter().find(|(_, s)| s.signal().is_some()).or(failing.first());
        if let (Some(&(rank, status)), None, None) = (cause, failed, stopping_since) {
            tracing::error!("rank {rank} {}; stopping the other ranks", describe(status));
            failed = Some((rank, status));
        }
        let asked = stop.load(Ordering::SeqCst) || failed.is_some();
        match stopping_since {
            None if asked && done.contains(&false) => {
                signal_all(&ranks, &done, libc::SIGTERM);
                stopping_since = Some(Instant::now());
            }
            Some(t) if t.elapsed() > GRACE => signal_all(&ranks, &done, libc::SIGKILL),
            _ => {}
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(match failed {
        Some((rank, status)) => {
            tracing::error!("rank {rank} {}", describe(status));
            // A rank killed by a signal exits the launcher as a shell reports it: 128 + signal.
            status.code().or(status.signal().map(|s| 128 + s)).unwrap_or(1).max(1)
        }
        None if stop.load(Ordering::SeqCst) => 130,
        None => 0,
    })
}

fn signal_all(ranks: &[(usize, Child)], done: &[bool], signal: i32) {
    for ((_, child), &d) in ranks.iter().zip(done) {
        if !d {
            // SAFETY: kill(2) on our own child, not yet reaped (try_wait has not seen it exit).
            unsafe { libc::kill(child.id() as libc::pid_t, signal) };
        }
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "ended".into(),
    }
}

/// A port nothing listens on now (the OS picks it); rank 0 binds it moments later.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("finding a free port for the rendezvous")?;
    Ok(listener.local_addr()?.port())
}
