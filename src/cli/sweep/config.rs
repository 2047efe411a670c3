//! The sweep file (TOML) and the trials it stands for: every combination of the `[vary]` lists
//! (grid), or `trials` draws from them and from `{ min, max, log }` ranges (random).
//!
//! ```toml
//! command = "finetune"          # or "pretrain"
//! method = "grid"               # or "random" (then `trials = N`, `seed = S`)
//! parallel = 1                  # runs at a time; CPU threads are divided among them
//! metric = "accuracy"           # --metric-for-best of every run; picks the best run
//! [args]                        # flags every run gets (a list = a flag with several values)
//! model = ".models/all-MiniLM-L6-v2"
//! train = "train.csv"
//! eval = "dev.csv"
//! [vary]                        # flags that differ between runs
//! lr = [2e-5, 5e-5]
//! batch-size = [16, 32]
//! warmup-ratio = { min = 0.0, max = 0.1 }   # random only; `log = true` for a log scale
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepConfig {
    #[serde(default = "default_command")]
    pub command: String,
    pub output: Option<PathBuf>,
    #[serde(default)]
    pub method: Method,
    /// Random search: how many runs.
    pub trials: Option<usize>,
    /// Random search: the seed of the draws (not of the runs: vary `seed` for that).
    #[serde(default)]
    pub seed: u64,
    pub parallel: Option<usize>,
    pub metric: Option<String>,
    #[serde(default)]
    pub args: BTreeMap<String, toml::Value>,
    #[serde(default)]
    pub vary: BTreeMap<String, Space>,
}

fn default_command() -> String {
    "finetune".into()
}

#[derive(Debug, Default, Clone, Copy, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Method {
    #[default]
    Grid,
    Random,
}

/// Where one flag's values come from.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Space {
    Choices(Vec<toml::Value>),
    Range {
        min: f64,
        max: f64,
        #[serde(default)]
        log: bool,
    },
}

// One run's varied flags, by flag name (without `--`), and how a value is written.
pub use bertkit::viz::sweep::{Trial, value_word};

/// Flags the sweep sets itself for every run.
const OWNED: [&str; 4] = ["output", "overwrite", "resume-from", "metric-for-best"];

impl SweepConfig {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: SweepConfig = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1);
            let at = line.map_or(String::new(), |l| format!(":{l}"));
            anyhow::anyhow!("{}{at}: {}", path.display(), e.message())
        })?;
        config.check(path)?;
        Ok(config)
    }

    fn check(&self, path: &Path) -> Result<()> {
        let file = path.display();
        if !["finetune", "pretrain"].contains(&self.command.as_str()) {
            bail!("{file}: command = {:?}: a sweep runs finetune or pretrain", self.command);
        }
        if self.vary.is_empty() {
            bail!("{file}: [vary] names no flag: a sweep needs at least one flag to vary");
        }
        for key in self.args.keys().chain(self.vary.keys()) {
            if OWNED.contains(&key.as_str()) || key.starts_with('-') {
                bail!(
                    "{file}: `{key}`: the sweep sets --output, --overwrite, --resume-from and --metric-for-best itself; name flags without dashes"
                );
            }
        }
        if let Some(key) = self.args.keys().find(|k| self.vary.contains_key(*k)) {
            bail!("{file}: `{key}` is both in [args] and in [vary]");
        }
        for (key, space) in &self.vary {
            match space {
                Space::Choices(values) if values.is_empty() => bail!("{file}: [vary] {key} lists no value"),
                Space::Range { .. } if self.method == Method::Grid => {
                    bail!("{file}: [vary] {key} is a range: a grid needs lists (or method = \"random\")")
                }
                Space::Range { min, max, log }
                    if min > max || min.is_nan() || max.is_nan() || (*log && *min <= 0.0) =>
                {
                    bail!("{file}: [vary] {key}: needs min <= max (and min > 0 with log = true)")
                }
                _ => {}
            }
        }
        match (self.method, self.trials) {
            (Method::Random, None | Some(0)) => bail!("{file}: method = \"random\" needs trials = N (at least 1)"),
            (Method::Grid, Some(_)) => {
                bail!("{file}: trials is for method = \"random\"; a grid runs every combination")
            }
            _ => Ok(()),
        }
    }

    /// Every run of the sweep, in order.
    pub fn trials(&self) -> Vec<Trial> {
        match self.method {
            Method::Grid => grid(&self.vary),
            Method::Random => {
                let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(self.seed);
                (0..self.trials.unwrap_or(0)).map(|_| draw(&self.vary, &mut rng)).collect()
            }
        }
    }
}

/// The cartesian product of the lists, the first flag (in name order) varying slowest.
fn grid(vary: &BTreeMap<String, Space>) -> Vec<Trial> {
    let mut trials = vec![Trial::new()];
    for (key, space) in vary {
        let Space::Choices(values) = space else { unreachable!("checked: a grid has only lists") };
        trials = trials
            .into_iter()
            .flat_map(|t| {
                values.iter().map(move |v| {
                    let mut t = t.clone();
                    t.insert(key.clone(), v.clone());
                    t
                })
            })
            .collect();
    }
    trials
}

fn draw(vary: &BTreeMap<String, Space>, rng: &mut impl Rng) -> Trial {
    vary.iter()
        .map(|(key, space)| {
            let value = match space {
                Space::Choices(values) => values[rng.random_range(0..values.len())].clone(),
                Space::Range { min, max, log: false } => toml::Value::Float(rng.random_range(*min..=*max)),
                Space::Range { min, max, log: true } => toml::Value::Float(rng.random_range(min.ln()..=max.ln()).exp()),
            };
            (key.clone(), value)
        })
        .collect()
}

/// A flag and its value(s) as command-line words: `true` is the bare flag, `false` leaves it
/// out, a list gives the flag several values.
pub fn flag_words(key: &str, value: &toml::Value) -> Vec<String> {
    let flag = format!("--{key}");
    match value {
        toml::Value::Boolean(true) => vec![flag],
        toml::Value::Boolean(false) => vec![],
        toml::Value::Array(values) => std::iter::once(flag).chain(values.iter().map(value_word)).collect(),
        other => vec![flag, value_word(other)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SweepConfig> {
        let config: SweepConfig = toml::from_str(text)?;
        config.check(Path::new("sweep.toml"))?;
        Ok(config)
    }

    #[test]
    fn a_grid_is_every_combination_first_flag_slowest() {
        let c = parse("[args]\nmodel = \"m\"\n[vary]\nlr = [1e-5, 2e-5]\nbatch-size = [8, 16, 32]\n").unwrap();
        let trials = c.trials();
        assert_eq!(trials.len(), 6);
        let words: Vec<String> = trials
            .iter()
            .map(|t| t.iter().map(|(k, v)| format!("{k}={}", value_word(v))).collect::<Vec<_>>().join(" "))
            .collect();
        assert_eq!(words[0], "batch-size=8 lr=0.00001");
        assert_eq!(words[1], "batch-size=8 lr=0.00002");
        assert_eq!(words[5], "batch-size=32 lr=0.00002");
    }

    #[test]
    fn random_draws_are_in_range_and_repeatable() {
        let text = "method = \"random\"\ntrials = 20\nseed = 3\n[vary]\nlr = { min = 1e-5, max = 1e-3, log = true }\nseed = [1, 2]\n";
        let (a, b) = (parse(text).unwrap().trials(), parse(text).unwrap().trials());
        assert_eq!(a, b);
        assert_eq!(a.len(), 20);
        for t in &a {
            let lr = t["lr"].as_float().unwrap();
            assert!((1e-5..=1e-3).contains(&lr), "{lr}");
            assert!([1, 2].contains(&t["seed"].as_integer().unwrap()));
        }
        // On a log scale about half the draws fall below the geometric middle (1e-4).
        let below = a.iter().filter(|t| t["lr"].as_float().unwrap() < 1e-4).count();
        assert!((4..=16).contains(&below), "{below}");
    }

    #[test]
    fn mistakes_are_named() {
        let cases = [
            ("[vary]\n", "names no flag"),
            ("[vary]\noutput = [\"a\"]\n", "sets --output"),
            ("[args]\nlr = 1\n[vary]\nlr = [1]\n", "both in [args] and in [vary]"),
            ("[vary]\nlr = { min = 1e-5, max = 1e-3 }\n", "a grid needs lists"),
            ("method = \"random\"\n[vary]\nlr = [1]\n", "needs trials"),
            ("method = \"random\"\ntrials = 2\n[vary]\nlr = { min = 0.0, max = 1.0, log = true }\n", "min > 0"),
            ("command = \"embed\"\n[vary]\nlr = [1]\n", "finetune or pretrain"),
        ];
        for (text, says) in cases {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(says), "{text:?}: {err}");
        }
        let unknown: Result<SweepConfig, _> = toml::from_str("metod = \"grid\"\n");
        assert!(unknown.unwrap_err().to_string().contains("metod"));
    }

    #[test]
    fn flags_become_words() {
        assert_eq!(flag_words("lr", &toml::Value::Float(5e-5)), ["--lr", "0.00005"]);
        assert_eq!(flag_words("whole-word-masking", &toml::Value::Boolean(true)), ["--whole-word-masking"]);
        assert!(flag_words("dedupe", &toml::Value::Boolean(false)).is_empty());
        let list = toml::Value::Array(vec!["a.txt".into(), "b.txt".into()]);
        assert_eq!(flag_words("corpus", &list), ["--corpus", "a.txt", "b.txt"]);
    }
}
