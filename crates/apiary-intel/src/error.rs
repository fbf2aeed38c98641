//! Error types.
//!
//! Every parser returns [`ParseError`] rather than panicking, because feed input is
//! untrusted: a provider can publish garbage, a mirror can return an error page, a
//! download can be truncated. The feed manager turns these errors into a status
//! message and keeps serving the last good copy.

use std::path::PathBuf;

/// Why a feed's content was refused.
#[derive(Debug, thiserror::Error)]
pub enum ParseError {
    /// The file (or download) had no bytes, or no entries after parsing.
    #[error("feed is empty: {0}")]
    Empty(String),
    /// The content is an HTML or XML document (a saved error page such as a
    /// 404/502 or a storage `ServerBusy` body) rather than the expected format.
    #[error("feed is an HTML/XML error page, not data: {0}")]
    ErrorPage(String),
    /// A line or record could not be understood.
    #[error("line {line}: {message}")]
    Line {
        /// 1-based line (or record) number.
        line: usize,
        /// What was wrong.
        message: String,
    },
    /// The content is JSON but not of the expected shape.
    #[error("invalid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The content is CSV but could not be read.
    #[error("invalid CSV: {0}")]
    Csv(#[from] csv::Error),
    /// A MaxMind DB could not be opened or decoded (corrupt file, wrong schema).
    #[error("invalid MaxMind DB: {0}")]
    Mmdb(String),
    /// The content does not fit the format in some other way.
    #[error("{0}")]
    Format(String),
}

impl ParseError {
    /// Shorthand for a per-line error.
    pub(crate) fn line(line: usize, message: impl Into<String>) -> Self {
        ParseError::Line { line, message: message.into() }
    }
}

/// Errors of the feed manager.
#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// No feed with this name is configured.
    #[error("unknown feed {0:?}")]
    UnknownFeed(String),
    /// The feed's configuration is unusable (no path or URL, bad name, ...).
    #[error("feed {name:?} is misconfigured: {message}")]
    Config {
        /// Feed name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// Fetching the source failed.
    #[error("fetching {source_ref} failed: {message}")]
    Fetch {
        /// Path or URL.
        source_ref: String,
        /// What went wrong.
        message: String,
    },
    /// The new copy was refused by validation or parsing; the previous copy stays.
    #[error("feed {name:?} rejected: {reason}")]
    Rejected {
        /// Feed name.
        name: String,
        /// Why.
        reason: ParseError,
    },
    /// The new copy has far fewer entries than the last good one: probably a
    /// truncated download or an upstream accident, so it is not swapped in.
    #[error("feed {name:?} rejected: entry count collapsed from {previous} to {new} (minimum ratio {min_ratio})")]
    Collapse {
        /// Feed name.
        name: String,
        /// Entries of the last good copy.
        previous: usize,
        /// Entries of the new copy.
        new: usize,
        /// Configured minimum ratio new/previous.
        min_ratio: f64,
    },
    /// Reading or writing the state directory failed.
    #[error("state directory {path}: {message}")]
    State {
        /// File concerned.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
}
