//! `report`: the study's figures and tables from every gathered probe variant (with its
//! coordinates), the extraction's SAE health, the class-feature tables and the `clean` stage's
//! statistics. It writes a folder inside the project (`out`: `index.html`, each figure as `.svg`,
//! `.png` and `.csv`, each table as `.csv`;
//! see `report/page.rs`) and publishes `summary`, one row per probe variant, as its cache entry.
//!
//! The folder is a side output: a cached report does not rewrite it. `saeflow run --force report`
//! does, and `saeflow report` redraws the figures from the cache into the notebook.

use crate::engine::EngineError;
use crate::engine::job::{Job, TableInput};
use crate::engine::stage::Stage;
use crate::plan::signature::{InputSlot, Many, ParamType, Signature, output, param};
use crate::report::study::{Gathered, Study};
use crate::report::{SLOT_CLASSES, SLOT_CLEAN, SLOT_HEALTH, SLOT_METRICS, page, write_folder};
use crate::spec::Value;

pub struct Report;

fn gather(tables: &[TableInput]) -> Result<Vec<Gathered>, EngineError> {
    tables
        .iter()
        .map(|t| Ok(Gathered { instance: t.instance.clone(), coords: t.coords.clone(), batches: t.read().collect::<Result<_, _>>()? }))
        .collect()
}

impl Stage for Report {
    fn signature(&self) -> Signature {
        let all =
            |name, accepts: &[&'static str], required, doc| InputSlot { name, accepts: accepts.to_vec(), many: Many::All, required, doc };
        Signature {
            kind: "report",
            // 2: the features-per-layer and baseline figures, mean ± sd over repeats, PNGs
            version: 2,
            doc: "the study's HTML report (SAE health, features per layer, macro F1 by pooling, by training fraction and against the baselines, per-class features, every probe variant; mean ± sd over a `seed` axis) written to `out` as index.html + SVG + PNG + CSV",
            inputs: vec![
                all(
                    SLOT_METRICS,
                    &["probe_metrics"],
                    true,
                    "probe metrics of every variant to compare (e.g. [probe.metrics, fused_probe.metrics])",
                ),
                all(SLOT_HEALTH, &["health"], false, "SAE health of the extraction (codes.health): the report opens with it"),
                all(SLOT_CLASSES, &["class_features"], false, "per-class top features (a class_features stage)"),
                all(SLOT_CLEAN, &["clean_stats"], false, "what cleaning left per layer (clean.stats): the features-per-layer figure"),
            ],
            params: vec![
                param(
                    "out",
                    ParamType::OutputDir,
                    Some(Value::Str("reports/${pipeline}".into())),
                    "the folder inside the project the report is written to",
                ),
                param("title", ParamType::Str, Some(Value::Str("${pipeline}".into())), "the report's heading"),
                param(
                    "labels",
                    ParamType::List(Box::new(ParamType::Str)),
                    Some(Value::Null),
                    "show only these labels' class tables in index.html (the CSVs keep every label); unset: all",
                ),
            ],
            open_params: false,
            outputs: vec![output(
                "summary",
                "report_summary",
                "one row per probe variant: stage, instance, coordinates, train_fraction, macro_f1, accuracy, n_train, n_test, other metrics",
            )],
            fuse_axes: vec![],
            validate: None,
            estimate: None,
            check_files: None,
        }
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            let stage_err = |e: crate::report::ReportError| EngineError::Stage(format!("{}: {e}", m.id));
            let study = Study::from_tables(
                &gather(m.inputs(SLOT_METRICS))?,
                &gather(m.inputs(SLOT_HEALTH))?,
                &gather(m.inputs(SLOT_CLASSES))?,
                &gather(m.inputs(SLOT_CLEAN))?,
            )
            .map_err(stage_err)?;
            let title = m.param("title")?.as_str().unwrap_or_default().to_string();
            let labels: Option<Vec<String>> = match m.param("labels")? {
                Value::List(items) => Some(items.iter().filter_map(|v| v.as_str().map(str::to_string)).collect()),
                _ => None,
            };
            let rendered = page::render(&study, &page::Options { title, labels }).map_err(stage_err)?;
            let dir = m.paths.get("out").cloned().ok_or_else(|| EngineError::Stage(format!("{}: parameter 'out' has no folder", m.id)))?;
            write_folder(&dir, &rendered.files).map_err(stage_err)?;
            let batch = rendered.summary.to_batch()?;
            m.output("summary")?.write_part(0, batch.schema(), &[batch])?;
            job.progress.advance(1);
        }
        Ok(())
    }
}
