//! Where feed bytes come from.
//!
//! The engine never opens a network connection itself: fetching is a [`Fetcher`]
//! the embedding program supplies (the server can implement it with its HTTP
//! client). The default [`FileFetcher`] reads local paths and `file://` URLs and
//! refuses anything else, which is also what keeps tests off the network.

use std::path::Path;

/// A feed's source.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// Local file.
    Path(&'a Path),
    /// URL.
    Url(&'a str),
}

/// Supplies the bytes of a feed.
pub trait Fetcher: Send + Sync {
    /// The current content of `source`, or a human-readable error.
    fn fetch(&self, source: Source<'_>) -> Result<Vec<u8>, String>;
}

/// Reads local files and `file://` URLs; refuses network URLs.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileFetcher;

impl Fetcher for FileFetcher {
    fn fetch(&self, source: Source<'_>) -> Result<Vec<u8>, String> {
        match source {
            Source::Path(p) => std::fs::read(p).map_err(|e| e.to_string()),
            Source::Url(u) => match u.strip_prefix("file://") {
                Some(p) => std::fs::read(p).map_err(|e| e.to_string()),
                None => Err(format!("no network fetcher configured, cannot fetch {u}")),
            },
        }
    }
}
