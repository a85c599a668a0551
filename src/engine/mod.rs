//! Execution: the content-addressed cache, the executor, and the API stages run against.

pub mod cache;
pub mod executor;
pub mod history;
pub mod job;
pub mod manifest;
pub mod share;
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

impl From<arrow_schema::ArrowError> for EngineError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        EngineError::Parquet(e.to_string())
    }
}

impl From<candle_core::Error> for EngineError {
    fn from(e: candle_core::Error) -> Self {
        EngineError::Stage(format!("model computation: {}", crate::models::sae::without_backtrace(e)))
    }
}
