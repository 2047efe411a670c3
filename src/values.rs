//! Range checks for numeric flags, as clap value parsers (it imports only `error`): a bad value stops the command before
//! anything runs, with one line naming the flag, the value and the allowed range
//! (`invalid value '0' for '--batch-size <BATCH_SIZE>': must be at least 1`).

use crate::error::Marked;

/// An integer of at least 1 (sizes, counts, steps).
pub fn positive(s: &str) -> Result<usize, String> {
    let n: usize = s.parse().map_err(|_| "must be a whole number of at least 1".to_string())?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// A non-empty string (separators).
pub fn non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    Ok(s.to_string())
}

/// A directory to write into: absent (it will be created) or a directory, not a file.
pub fn directory(s: &str) -> Result<std::path::PathBuf, String> {
    let path = std::path::PathBuf::from(s);
    if path.exists() && !path.is_dir() {
        return Err("is a file, not a directory".into());
    }
    Ok(path)
}

fn finite(s: &str) -> Result<f64, String> {
    let x: f64 = s.parse().map_err(|_| "must be a number".to_string())?;
    if !x.is_finite() {
        return Err("must be a finite number".into());
    }
    Ok(x)
}

/// A finite number above 0 (learning rate, epochs).
pub fn positive_float(s: &str) -> Result<f64, String> {
    let x = finite(s)?;
    if x <= 0.0 {
        return Err("must be greater than 0".into());
    }
    Ok(x)
}

/// A finite number of at least 0 (weight decay, clipping norm; 0 turns them off).
pub fn non_negative(s: &str) -> Result<f64, String> {
    let x = finite(s)?;
    if x < 0.0 {
        return Err("must be 0 or more".into());
    }
    Ok(x)
}

/// A number in [0, 1] (dropout, warmup ratio).
pub fn fraction(s: &str) -> Result<f64, String> {
    let x = finite(s)?;
    if !(0.0..=1.0).contains(&x) {
        return Err("must be between 0 and 1".into());
    }
    Ok(x)
}

/// A number in [0, 1) (Adam's betas: at 1 its bias correction divides by zero).
pub fn decay_rate(s: &str) -> Result<f64, String> {
    let x = finite(s)?;
    if !(0.0..1.0).contains(&x) {
        return Err("must be at least 0 and below 1".into());
    }
    Ok(x)
}

/// A number strictly between 0 and 1 (masking probability, held-out share).
pub fn open_fraction(s: &str) -> Result<f64, String> {
    let x = finite(s)?;
    if x <= 0.0 || x >= 1.0 {
        return Err("must be between 0 and 1, both excluded".into());
    }
    Ok(x)
}

/// A sequence length: at least 3 tokens (`[CLS] x [SEP]`). Its upper bound is the model's
/// position count, checked against the model (`check_max_len`).
pub fn sequence_length(s: &str) -> Result<usize, String> {
    let n = positive(s)?;
    if n < 3 {
        return Err("must be at least 3 (the special tokens and one token of text)".into());
    }
    Ok(n)
}

/// `T` as its flags' defaults make it, with `given` (flags and values, as on a command line) on
/// top: the defaults are written once, in the `#[arg]` attributes, for the command line and for
/// code alike. A bad value is the command line's one-line message.
pub fn from_flags<T: clap::Args + clap::FromArgMatches>(given: &[&str]) -> anyhow::Result<T> {
    let command = T::augment_args(clap::Command::new("bertkit").no_binary_name(true));
    let refused = |e: clap::Error| anyhow::anyhow!("{}", clap_message(&e));
    let matches = command.try_get_matches_from(given).map_err(refused).setting_error()?;
    T::from_arg_matches(&matches).map_err(refused).setting_error()
}

/// clap's message up to its usage lines, on one line: `the following required arguments were
/// not provided: --train <TRAIN>`, `invalid value '0' for '--batch-size <N>': ...`.
pub fn clap_message(e: &clap::Error) -> String {
    let text = e.to_string();
    let lines = text.lines().map(str::trim).take_while(|l| !l.is_empty() && !l.starts_with("Usage:"));
    lines.collect::<Vec<_>>().join(" ").trim_start_matches("error: ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_values_are_refused() {
        assert!(positive("0").is_err() && positive("-3").is_err() && positive("x").is_err());
        assert_eq!(positive("16"), Ok(16));
        for bad in ["nan", "inf", "-inf", "0", "-1e-5"] {
            assert!(positive_float(bad).is_err(), "{bad}");
        }
        assert!(non_negative("0").is_ok() && non_negative("-0.1").is_err() && non_negative("NaN").is_err());
        assert!(fraction("1").is_ok() && fraction("1.5").is_err());
        assert!(open_fraction("0").is_err() && open_fraction("1").is_err() && open_fraction("0.15").is_ok());
        assert!(sequence_length("2").is_err() && sequence_length("3").is_ok());
    }

    #[derive(clap::Args, Debug)]
    struct Flags {
        #[arg(long)]
        name: String,
        #[arg(long, default_value_t = 16, value_parser = positive)]
        batch_size: usize,
    }

    #[test]
    fn flags_take_their_defaults_in_code() {
        let flags: Flags = from_flags(&["--name", "x"]).unwrap();
        assert_eq!((flags.name.as_str(), flags.batch_size), ("x", 16));
        let err = from_flags::<Flags>(&["--name", "x", "--batch-size", "0"]).unwrap_err().to_string();
        assert!(err.contains("--batch-size") && err.contains("at least 1"), "{err}");
        assert!(from_flags::<Flags>(&[]).unwrap_err().to_string().contains("--name"));
    }
}
