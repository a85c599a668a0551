//! saeflow: a declarative dataflow runner for SAE-transfer studies.
//!
//! Data flows one way: [`spec`] (YAML → typed spec) → [`plan`] (matrix expansion, DAG, cache
//! keys) → [`engine`] (executor, content-addressed Parquet cache) → tables. [`stages`] holds one
//! file per stage kind, registered in one place; [`data`] holds the dataset readers they use; [`models`] the candle models (LLaVA-Gemma, SAEs); [`health`] the SAE-fit statistics; [`doctor`] the pre-run checks; [`report`] the HTML report and notebook. See ARCHITECTURE.md for the codemap.

pub mod cli;
pub mod data;
pub mod doctor;
pub mod engine;
pub mod glob;
pub mod health;
pub mod machine;
pub mod models;
pub mod plan;
pub mod probe;
pub mod process;
pub mod progress;
pub mod report;
pub mod spec;
pub mod stages;
pub mod tables;
