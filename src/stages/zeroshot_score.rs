//! `zeroshot_score`: the zero-shot baseline of one split, scored from answers `zeroshot_answers`
//! made once for every image: the split's test rows, their answers, and the probe's metrics
//! columns — the same tables `zeroshot` writes, without running the model again.

use std::collections::BTreeMap;

use arrow_array::{BooleanArray, RecordBatch, UInt32Array};

use crate::engine::EngineError;
use crate::engine::job::{Job, Member};
use crate::engine::stage::Stage;
use crate::plan::signature::{Signature, input};
use crate::tables::TableType;

pub struct ZeroShotScore;

impl Stage for ZeroShotScore {
    fn signature(&self) -> Signature {
        Signature::new("zeroshot_score", 1, "the zero-shot baseline on a split's test images, scored from `zeroshot_answers`")
            .input(input("from", &[TableType::ZeroshotPredictions], "every image's answer (a zeroshot_answers table)"))
            .input(input("split", &[TableType::Split], "which images are test rows, and their labels"))
            .output("metrics", TableType::ProbeMetrics, "coordinates, macro_f1, accuracy, macro_precision, macro_recall, n_test, n_classes")
            .output(
                "predictions",
                TableType::ZeroshotPredictions,
                "image_id, label, pred (null: no label matched), answer, score: the test rows",
            )
            .build()
    }

    fn run(&self, job: &mut Job) -> Result<(), EngineError> {
        for m in &mut job.members {
            run_one(m)?;
        }
        Ok(())
    }
}

fn run_one(m: &mut Member) -> Result<(), EngineError> {
    let id = m.id.clone();
    let err = |e: String| EngineError::Stage(format!("{id}: {e}"));
    let split = super::probe::read_split(m.input("split")?)?;
    let test: BTreeMap<u32, u16> = split.iter().filter(|r| !r.train).map(|r| (r.image_id, r.label)).collect();
    let classes: Vec<u16> = split.iter().map(|r| r.label).collect::<std::collections::BTreeSet<_>>().into_iter().collect();
    let answers = m.input("from")?;
    let mut rows: Vec<RecordBatch> = Vec::new();
    let mut answered = 0usize;
    for b in answers.read() {
        let b = b?;
        let ids = crate::tables::column::<UInt32Array>(&b, "image_id", &answers.instance)?;
        let labels = crate::tables::column::<arrow_array::UInt16Array>(&b, "label", &answers.instance)?;
        let mut keep = Vec::with_capacity(b.num_rows());
        for r in 0..b.num_rows() {
            let hit = match test.get(&ids.value(r)) {
                Some(&want) if want == labels.value(r) => true,
                Some(&want) => {
                    return Err(err(format!(
                        "image {} is labelled {want} in the split and {} in the answers: they come from different datasets",
                        ids.value(r),
                        labels.value(r)
                    )));
                }
                None => false,
            };
            keep.push(hit);
        }
        let b = arrow_select::filter::filter_record_batch(&b, &BooleanArray::from(keep))?;
        answered += b.num_rows();
        rows.push(b);
    }
    if answered == 0 {
        return Err(err("no test row of the split has an answer: are the answers and the split of the same dataset?".into()));
    }
    // test rows without an answer were images the answering skipped (see its `errors`)
    let metrics = super::zeroshot::score(&id, &m.coords, &classes, &rows)?;
    m.output("predictions")?.write_part(0, TableType::ZeroshotPredictions.schema(), &rows)?;
    m.output("metrics")?.write_part(0, metrics.schema(), &[metrics])?;
    Ok(())
}
