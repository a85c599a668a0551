//! `table`: bring your own table. Reads a Parquet file (or a folder of them, in name order) that
//! saeflow did not make — features computed elsewhere, a labelled image list — checks it against
//! the declared table type, and publishes it as an entry like any other (one part per file), so
//! every downstream stage can read it.

use crate::engine::EngineError;
use crate::engine::job::Job;
use crate::engine::stage::Stage;
use crate::engine::table::read_file;
use crate::plan::params::params;
use crate::plan::signature::{ParamType, Signature};
use crate::tables::TableType;

pub struct Table;

/// The types a `table` may declare.
pub const TYPES: &[TableType] = &[
    TableType::Dataset,
    TableType::Codes,
    TableType::Totals,
    TableType::Pooled,
    TableType::Features,
    TableType::Eoi,
    TableType::Vit,
    TableType::Dense,
    TableType::Split,
];

params! {
    /// `table`'s parameters.
    pub struct TableParams {
        /// a .parquet file or a folder of .parquet files (read in name order)
        pub path: std::path::PathBuf, ParamType::InputPath, required;
        /// the table type, which decides which stages can read it
        pub r#type: TableType, ParamType::Choice(TYPES.iter().map(|t| t.name()).collect()), required;
    }
}

impl Stage for Table {
    fn signature(&self) -> Signature {
        Signature::new(
            "table",
            1,
            "a Parquet file (or a folder of them) made elsewhere, checked against a table type and published as an entry",
        )
        .params::<TableParams>()
        .output("table", TableType::Param("type"), "the rows as they are in the file(s)")
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let TableParams { path, r#type: ty } = m.params()?;
            let files = if path.is_dir() {
                let mut f: Vec<_> = std::fs::read_dir(&path)
                    .map_err(|e| EngineError::io(&path, e))?
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.extension().is_some_and(|e| e == "parquet"))
                    .collect();
                f.sort();
                f
            } else {
                vec![path.clone()]
            };
            if files.is_empty() {
                return Err(EngineError::Stage(format!("{}: {} holds no .parquet file", m.id, path.display())));
            }
            // the plan refused devices, FIFOs and sockets; one swapped in since would never end
            for f in &files {
                let meta = std::fs::metadata(f).map_err(|e| EngineError::io(f, e))?;
                if let Some(what) = crate::plan::fingerprint::special_file(&meta) {
                    return Err(EngineError::Stage(format!(
                        "{}: {} is {what}, not a regular file (it changed since the plan checked it); put the table in a .parquet file",
                        m.id,
                        f.display()
                    )));
                }
            }
            let out = m.output("table")?;
            out.set_parts(files.len())?;
            for (i, f) in files.iter().enumerate() {
                if out.has_part(i) {
                    continue;
                }
                let (schema, _, _) = crate::engine::table::read_footer(f)?;
                ty.check(&schema, &f.display().to_string()).map_err(EngineError::Stage)?;
                let batches = read_file(f)?.collect::<Result<Vec<_>, _>>()?;
                out.write_part(i, schema, &batches)?;
                job.progress.advance(1);
            }
        }
        Ok(())
    }
}
