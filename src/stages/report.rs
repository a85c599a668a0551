//! `report`: the study's figures and tables from every gathered probe variant (with its
//! coordinates), the extraction's SAE health, the class-feature tables and the `clean` stage's
//! statistics. It writes a folder inside the project (`out`: `index.html`, each figure as `.svg`,
//! `.png` and `.csv`, each table as `.csv`;
//! see `report/page.rs`) and publishes `summary`, one row per probe variant, as its cache entry.
//!
//! The folder is a side output, stamped with the `summary` entry's key: a run rewrites it whenever
//! the stamp is not the cached entry's (an edit reverted, the folder removed), and leaves it alone
//! otherwise. `saeflow report` redraws the figures from the cache into the notebook.

use crate::engine::EngineError;
use crate::engine::job::{Job, TableInput};
use crate::engine::stage::Stage;
use crate::plan::params::params;
use crate::plan::signature::{Many, ParamType, Signature, input};
use crate::report::study::{Gathered, Study};
use crate::report::{SLOT_CLASSES, SLOT_CLEAN, SLOT_COEFFICIENTS, SLOT_HEALTH, SLOT_METRICS, page, write_folder};
use crate::spec::Value;
use crate::tables::TableType;

pub struct Report;

params! {
    /// `report`'s parameters.
    pub struct ReportParams {
        /// the folder inside the project the report is written to
        pub out: std::path::PathBuf, ParamType::OutputDir, default("reports/${pipeline}");
        /// the report's heading
        pub title: String, ParamType::Str, default("${pipeline}");
        /// show only these labels' class tables in index.html (the CSVs keep every label); unset: all
        pub labels: Option<Vec<String>>, ParamType::List(Box::new(ParamType::Str)), default(Value::Null);
    }
}

fn gather(tables: &[TableInput]) -> Result<Vec<Gathered>, EngineError> {
    tables
        .iter()
        .map(|t| Ok(Gathered { instance: t.instance.clone(), coords: t.coords.clone(), batches: t.read().collect::<Result<_, _>>()? }))
        .collect()
}

impl Stage for Report {
    fn signature(&self) -> Signature {
        let all = |name, accepts: &[TableType], doc| input(name, accepts, doc).many(Many::All);
        Signature::new(
            "report",
            // 2: the features-per-layer and baseline figures, mean ± sd over repeats, PNGs
            // 3: coordinate columns as strings (one type per axis), zero-shot as a level, fitted x axes
            3,
            "the study's HTML report (SAE health, features per layer, macro F1 by pooling, by training fraction and against the baselines, per-class features, every probe variant; mean ± sd over a `seed` axis) written to `out` as index.html + SVG + PNG + CSV",
        )
        .input(all(
            SLOT_METRICS,
            &[TableType::ProbeMetrics],
            "probe metrics of every variant to compare (e.g. [probe.metrics, fused_probe.metrics])",
        ))
        .input(all(SLOT_HEALTH, &[TableType::Health], "SAE health of the extraction (codes.health): the report opens with it").optional())
        .input(all(SLOT_CLASSES, &[TableType::ClassFeatures], "per-class top features (a class_features stage)").optional())
        .input(
            all(SLOT_CLEAN, &[TableType::CleanStats], "what cleaning left per layer (clean.stats): the features-per-layer figure").optional(),
        )
        .input(
            all(
                SLOT_COEFFICIENTS,
                &[TableType::ProbeCoefficients],
                "probes' fitted weights (e.g. [probe.coefficients, fused_probe.coefficients]): each best probe's heaviest features per class",
            )
            .optional(),
        )
        .params::<ReportParams>()
        .output(
            "summary",
            TableType::ReportSummary,
            "one row per probe variant: stage, instance, coordinates, train_fraction, macro_f1, accuracy, n_train, n_test, other metrics",
        )
        .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let ReportParams { out: dir, title, labels } = m.params()?;
            let stamp = m.output("summary")?.key().to_string();
            let stage_err = |e: crate::report::ReportError| EngineError::Stage(format!("{}: {e}", m.id));
            let study = Study::from_tables(
                &gather(m.inputs(SLOT_METRICS))?,
                &gather(m.inputs(SLOT_HEALTH))?,
                &gather(m.inputs(SLOT_CLASSES))?,
                &gather(m.inputs(SLOT_CLEAN))?,
                &gather(m.inputs(SLOT_COEFFICIENTS))?,
            )
            .map_err(stage_err)?;
            let rendered = page::render(&study, &page::Options { title, labels }).map_err(stage_err)?;
            write_folder(&dir, &rendered.files, &stamp).map_err(stage_err)?;
            let batch = rendered.summary.to_batch()?;
            m.output("summary")?.write_part(0, batch.schema(), &[batch])?;
            job.progress.advance(1);
        }
        Ok(())
    }
}
