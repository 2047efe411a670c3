//! Which rank this process is, read as torchrun sets it (`RANK`, `WORLD_SIZE`, `LOCAL_RANK`,
//! `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`; Kubernetes' PyTorchJob sets the same), or
//! from SLURM's task variables when torchrun's are absent (`SLURM_PROCID`, `SLURM_NTASKS`,
//! `SLURM_LOCALID`; the sbatch script exports MASTER_ADDR/MASTER_PORT, docs/distributed.md).

use anyhow::{Context, Result, bail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct World {
    pub rank: usize,
    pub size: usize,
    pub local_rank: usize,
    pub master_addr: String,
    pub master_port: u16,
}

impl World {
    /// None for a single process (no WORLD_SIZE, or 1).
    pub fn from_env() -> Result<Option<World>> {
        Self::from_vars(|k| std::env::var(k).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Option<World>> {
        let (rank, size, local) = if var("WORLD_SIZE").is_some() {
            ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        } else {
            ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
        };
        let number = |key: &str| -> Result<Option<usize>> {
            var(key).map(|v| v.trim().parse::<usize>().with_context(|| format!("{key}={v}: not a number"))).transpose()
        };
        let Some(world_size) = number(size)? else { return Ok(None) };
        if world_size <= 1 {
            return Ok(None);
        }
        let rank = number(rank)?.with_context(|| format!("{size}={world_size} but {rank} is not set"))?;
        if rank >= world_size {
            bail!(
                "{rank_key}={rank} but {size}={world_size}: ranks are 0 to {}",
                world_size - 1,
                rank_key = rank_key(size)
            );
        }
        let master_addr =
            var("MASTER_ADDR").with_context(|| format!("{size}={world_size} but MASTER_ADDR is not set"))?;
        let port = var("MASTER_PORT").with_context(|| format!("{size}={world_size} but MASTER_PORT is not set"))?;
        let master_port = port.trim().parse().with_context(|| format!("MASTER_PORT={port}: not a port number"))?;
        let local_rank = number(local)?.unwrap_or(0);
        Ok(Some(World { rank, size: world_size, local_rank, master_addr, master_port }))
    }
}

fn rank_key(size_key: &str) -> &'static str {
    if size_key == "WORLD_SIZE" { "RANK" } else { "SLURM_PROCID" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn world(vars: &[(&str, &str)]) -> Result<Option<World>> {
        World::from_vars(|k| vars.iter().find(|(n, _)| *n == k).map(|(_, v)| v.to_string()))
    }

    #[test]
    fn torchrun_and_slurm_variables() {
        let base = [("MASTER_ADDR", "10.0.0.1"), ("MASTER_PORT", "29500")];
        assert_eq!(world(&[]).unwrap(), None);
        assert_eq!(world(&[("WORLD_SIZE", "1"), ("RANK", "0")]).unwrap(), None);
        let w = world(&[base[0], base[1], ("WORLD_SIZE", "4"), ("RANK", "3"), ("LOCAL_RANK", "1")]).unwrap().unwrap();
        assert_eq!((w.rank, w.size, w.local_rank, w.master_port), (3, 4, 1, 29500));
        let s = world(&[base[0], base[1], ("SLURM_NTASKS", "2"), ("SLURM_PROCID", "1"), ("SLURM_LOCALID", "0")]);
        assert_eq!(s.unwrap().unwrap().rank, 1);
    }

    #[test]
    fn bad_settings_are_one_line_each() {
        let err = |vars: &[(&str, &str)]| format!("{:#}", world(vars).unwrap_err());
        assert!(
            err(&[("WORLD_SIZE", "2"), ("RANK", "2"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "1")])
                .contains("RANK=2 but WORLD_SIZE=2")
        );
        assert!(err(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_PORT", "1")]).contains("MASTER_ADDR is not set"));
        assert!(err(&[("WORLD_SIZE", "two")]).contains("WORLD_SIZE=two: not a number"));
        assert!(
            err(&[("WORLD_SIZE", "2"), ("RANK", "0"), ("MASTER_ADDR", "a"), ("MASTER_PORT", "x")])
                .contains("MASTER_PORT=x")
        );
    }
}
