//! The failures a caller of the library may want to tell apart, at the boundaries where they
//! arise: reading data, opening or loading a model, and refusing a setting. Inside, errors are
//! `anyhow` with context; these mark the boundary, so that a caller can branch on the kind
//! without parsing the message:
//!
//! ```
//! use bertkit::Error;
//! use bertkit::recipes::FineTune;
//!
//! let run = FineTune::new("no/such/model", "data/demo/imdb/train.csv", "out");
//! let err = run.and_then(|r| r.run().map(drop)).unwrap_err();
//! assert!(matches!(Error::kind_of(&err), Some(Error::Model(_))), "{err:#}");
//! ```
//!
//! The message is unchanged by the marking: `{err:#}` reads as it did, one line naming the file,
//! line, flag or tensor. (A failure of none of these kinds, such as libtorch running out of
//! memory, has no kind.)

/// A failure of one kind, holding the error with its context.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A data file could not be read, or a row, sentence or document in it is bad (`file:line:
    /// what is wrong`).
    #[error("{0:#}")]
    Data(anyhow::Error),
    /// A model directory or hub id could not be opened or loaded (config.json, weights,
    /// tokenizer, a head that does not fit).
    #[error("{0:#}")]
    Model(anyhow::Error),
    /// A setting was refused: a value out of range, settings that do not go together, or one the
    /// model or the data rules out.
    #[error("{0:#}")]
    Setting(anyhow::Error),
}

impl Error {
    /// The kind of `error`, wherever in its context it was marked.
    pub fn kind_of(error: &anyhow::Error) -> Option<&Error> {
        error.downcast_ref::<Error>()
    }
}

/// Marks the error of a result as one kind, unless it already has one (the innermost mark is
/// the most precise: a model file that cannot be read while reading data is a model failure).
pub trait Marked<T> {
    fn data_error(self) -> anyhow::Result<T>;
    fn model_error(self) -> anyhow::Result<T>;
    fn setting_error(self) -> anyhow::Result<T>;
}

impl<T> Marked<T> for anyhow::Result<T> {
    fn data_error(self) -> anyhow::Result<T> {
        self.map_err(|e| mark(e, Error::Data))
    }
    fn model_error(self) -> anyhow::Result<T> {
        self.map_err(|e| mark(e, Error::Model))
    }
    fn setting_error(self) -> anyhow::Result<T> {
        self.map_err(|e| mark(e, Error::Setting))
    }
}

fn mark(error: anyhow::Error, kind: fn(anyhow::Error) -> Error) -> anyhow::Error {
    if Error::kind_of(&error).is_some() { error } else { anyhow::Error::new(kind(error)) }
}

/// `bail!` for a refused setting: returns `Error::Setting` with the formatted message.
macro_rules! refuse {
    ($($message:tt)+) => {
        return Err(anyhow::Error::new($crate::error::Error::Setting(anyhow::anyhow!($($message)+))))
    };
}
pub(crate) use refuse;

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn the_kind_survives_context_and_the_message_is_unchanged() {
        let inner: anyhow::Result<()> = Err(anyhow::anyhow!("train.csv:3: empty text"));
        let err = inner.data_error().context("reading the training data").unwrap_err();
        assert!(matches!(Error::kind_of(&err), Some(Error::Data(_))));
        assert_eq!(format!("{err:#}"), "reading the training data: train.csv:3: empty text");
        // The innermost mark stays.
        let err = Err::<(), _>(err).model_error().unwrap_err();
        assert!(matches!(Error::kind_of(&err), Some(Error::Data(_))));
        let refused = || -> anyhow::Result<()> { refuse!("--lr {}: must be greater than 0", 0) };
        let err = refused().unwrap_err();
        assert!(matches!(Error::kind_of(&err), Some(Error::Setting(_))));
        assert_eq!(format!("{err:#}"), "--lr 0: must be greater than 0");
        assert!(Error::kind_of(&anyhow::anyhow!("out of memory")).is_none());
    }
}
