//! Execution: the content-addressed cache, the executor, and the API stages run against
//! ([`stage::Stage`], [`job::Job`]). It runs whatever kinds it is given; it names none.

pub mod cache;
pub mod executor;
pub mod history;
pub mod job;
pub mod manifest;
pub mod share;
pub mod stage;
pub mod status;
pub mod table;

use std::path::{Path, PathBuf};

/// Errors while executing or reading the cache.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// (The I/O error is part of the message, not a `source`, so error chains print it once.)
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("parquet: {0}")]
    Parquet(String),
    #[error("damaged cache entry: {0}")]
    Corrupt(String),
    #[error("{0}")]
    Stage(String),
    #[error("{0}")]
    Other(String),
}

impl EngineError {
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        EngineError::Io { path: path.to_path_buf(), err: source }
    }
}

impl From<crate::tables::TableError> for EngineError {
    fn from(e: crate::tables::TableError) -> Self {
        match e {
            crate::tables::TableError::Column(m) => EngineError::Stage(m),
            crate::tables::TableError::Arrow(e) => e.into(),
        }
    }
}

impl From<arrow_schema::ArrowError> for EngineError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        EngineError::Parquet(e.to_string())
    }
}
