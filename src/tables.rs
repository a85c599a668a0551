//! The table types stages exchange, defined in one place: [`TableType`], its Arrow schema (what
//! writers write) and the columns a reader may rely on (what [`TableType::check`] checks). Inputs
//! declare which types they accept (checked by `plan`); stages check a table's schema before
//! reading it, so a mismatch is an error that names the column. A leaf: it knows Arrow and nothing
//! of the plan, the engine or the stages.

use std::fmt;
use std::sync::Arc;

use arrow_schema::{DataType, Field, Schema, SchemaRef};

/// A table that is not what its type promises, or a batch that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{0}")]
    Column(String),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// The type of a table: which stages can read it, and which columns it has.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TableType {
    /// `image_id u32, label u16, label_name utf8, split utf8, source utf8`: a labelled image list.
    Dataset,
    /// `image_id u32, token u16, feature u32, value f32`: per-token SAE codes.
    Codes,
    /// `image_id u32, feature u32, sum f32, max f32, count u32`: exact per-image aggregates.
    Totals,
    /// `feature u32`: a feature list (what `clean` kept).
    Features,
    /// `image_id u32, feature u32, value f32`: sparse per-image features.
    Pooled,
    /// `image_id u32, resid fixed_size_list<f32>[w]`: End-of-Image residuals.
    Eoi,
    /// `image_id u32, resid fixed_size_list<f32>[w]`: ViT features.
    Vit,
    /// `image_id u32, features fixed_size_list<f32>[w]`: other dense per-image features.
    Dense,
    /// Per part and scope: the SAE-fit statistics of the extraction.
    Health,
    /// `image_id u32, source utf8, reason utf8`: images skipped.
    Errors,
    /// One row per probe (or zero-shot) variant: coordinates, macro F1, accuracy, counts, ….
    ProbeMetrics,
    /// Per-class precision, recall, F1 and support, with coordinates.
    ProbeClasses,
    /// Non-zero confusion cells, with coordinates.
    ProbeConfusion,
    /// `image_id u32, label u16, pred u16, prob f32`: every test image's prediction.
    ProbePredictions,
    /// One row per C-grid value and inner fold, with coordinates.
    ProbeCv,
    /// A fitted probe's non-zero weights: coordinates, `label u16, label_name utf8, feature u32?
    /// (null: the intercept), weight f64, scale f64`.
    ProbeCoefficients,
    /// `image_id u32, label u16, pred u16?, answer utf8, score f32?`: zero-shot answers.
    ZeroshotPredictions,
    /// Each label's top features with counts and explanations.
    ClassFeatures,
    /// `image_id u32, label u16, label_name utf8, fold u8, role utf8`: train/test roles.
    Split,
    /// `instance utf8, offset u64`: where each fused layer's features start.
    FuseOffsets,
    /// One row: what `clean` kept and dropped.
    CleanStats,
    /// One row per probe variant: the report's summary.
    ReportSummary,
    /// A type declared outside saeflow (the test kit's `mock` tables): a name, no known columns.
    Custom(&'static str),
    /// The type named by this parameter of the instance, decided at plan time (the `table` kind's
    /// `type`); shown as `$param`.
    Param(&'static str),
}

/// A column a table type promises. `None` type: a fixed-size list of f32 of any width.
pub struct Column {
    pub name: String,
    pub ty: Option<DataType>,
}

fn field(name: &str, ty: DataType) -> Field {
    Field::new(name, ty, false)
}

fn schema_of(fields: Vec<Field>) -> SchemaRef {
    Arc::new(Schema::new(fields))
}

/// A fixed-size list of `width` non-null f32 (the `resid` column of the dense types).
pub fn f32_list(width: usize) -> DataType {
    DataType::FixedSizeList(Arc::new(Field::new_list_field(DataType::Float32, false)), width as i32)
}

impl TableType {
    /// Every built-in type, in declaration order.
    pub const BUILTIN: [TableType; 22] = [
        TableType::Dataset,
        TableType::Codes,
        TableType::Totals,
        TableType::Features,
        TableType::Pooled,
        TableType::Eoi,
        TableType::Vit,
        TableType::Dense,
        TableType::Health,
        TableType::Errors,
        TableType::ProbeMetrics,
        TableType::ProbeClasses,
        TableType::ProbeConfusion,
        TableType::ProbePredictions,
        TableType::ProbeCv,
        TableType::ProbeCoefficients,
        TableType::ZeroshotPredictions,
        TableType::ClassFeatures,
        TableType::Split,
        TableType::FuseOffsets,
        TableType::CleanStats,
        TableType::ReportSummary,
    ];

    /// The type's name as pipelines, manifests and Parquet metadata spell it (`pooled`,
    /// `probe_metrics`, …); for [`TableType::Param`], the name of the parameter.
    pub fn name(self) -> &'static str {
        match self {
            TableType::Dataset => "dataset",
            TableType::Codes => "codes",
            TableType::Totals => "totals",
            TableType::Features => "features",
            TableType::Pooled => "pooled",
            TableType::Eoi => "eoi",
            TableType::Vit => "vit",
            TableType::Dense => "dense",
            TableType::Health => "health",
            TableType::Errors => "errors",
            TableType::ProbeMetrics => "probe_metrics",
            TableType::ProbeClasses => "probe_classes",
            TableType::ProbeConfusion => "probe_confusion",
            TableType::ProbePredictions => "probe_predictions",
            TableType::ProbeCv => "probe_cv",
            TableType::ProbeCoefficients => "probe_coefficients",
            TableType::ZeroshotPredictions => "zeroshot_predictions",
            TableType::ClassFeatures => "class_features",
            TableType::Split => "split",
            TableType::FuseOffsets => "fuse_offsets",
            TableType::CleanStats => "clean_stats",
            TableType::ReportSummary => "report_summary",
            TableType::Custom(name) | TableType::Param(name) => name,
        }
    }

    /// The built-in type of this name.
    pub fn from_name(name: &str) -> Option<TableType> {
        TableType::BUILTIN.into_iter().find(|t| t.name() == name)
    }

    /// The schema writers write, for a type whose columns are fixed.
    ///
    /// # Panics
    /// For the dense types (their width comes from the model: [`TableType::schema_with_width`])
    /// and for the tables whose columns follow the instance's coordinates (probe results, the
    /// report's summary) or that saeflow does not know: asking is a programming error.
    pub fn schema(self) -> SchemaRef {
        self.fixed_schema().unwrap_or_else(|| panic!("the {self} table has no fixed schema"))
    }

    /// [`TableType::schema`], or `None` for the types without a fixed one.
    pub fn fixed_schema(self) -> Option<SchemaRef> {
        use DataType::*;
        Some(schema_of(match self {
            TableType::Dataset => vec![
                field("image_id", UInt32),
                field("label", UInt16),
                field("label_name", Utf8),
                field("split", Utf8),
                field("source", Utf8),
            ],
            TableType::Codes => vec![field("image_id", UInt32), field("token", UInt16), field("feature", UInt32), field("value", Float32)],
            TableType::Totals => vec![
                field("image_id", UInt32),
                field("feature", UInt32),
                field("sum", Float32),
                field("max", Float32),
                field("count", UInt32),
            ],
            TableType::Features => vec![field("feature", UInt32)],
            TableType::Pooled => vec![field("image_id", UInt32), field("feature", UInt32), field("value", Float32)],
            TableType::Health => vec![
                field("part", UInt32),
                field("scope", Utf8),
                field("tokens", UInt64),
                field("l0_sum", Float64),
                field("l0_hist", List(Arc::new(Field::new_list_field(UInt32, true)))),
                field("mse_sum", Float64),
                field("sse", Float64),
                field("sum_sq", Float64),
                field("norm_sum", Float64),
                field("sum_x", List(Arc::new(Field::new_list_field(Float64, true)))),
                Field::new("assumed_norm", Float64, true),
            ],
            TableType::Errors => vec![field("image_id", UInt32), field("source", Utf8), field("reason", Utf8)],
            TableType::ProbePredictions => {
                vec![field("image_id", UInt32), field("label", UInt16), field("pred", UInt16), field("prob", Float32)]
            }
            TableType::ZeroshotPredictions => vec![
                field("image_id", UInt32),
                field("label", UInt16),
                Field::new("pred", UInt16, true),
                field("answer", Utf8),
                Field::new("score", Float32, true),
            ],
            TableType::ClassFeatures => vec![
                field("label", UInt16),
                field("label_name", Utf8),
                field("rank", UInt16),
                field("feature", UInt32),
                field("n_images", UInt32),
                field("label_images", UInt32),
                Field::new("explanation", Utf8, true),
            ],
            TableType::Split => vec![
                field("image_id", UInt32),
                field("label", UInt16),
                field("label_name", Utf8),
                field("fold", UInt8),
                field("role", Utf8),
            ],
            TableType::FuseOffsets => vec![field("instance", Utf8), field("offset", UInt64)],
            TableType::CleanStats => vec![
                field("images", UInt64),
                field("unique_before", UInt64),
                field("unique_after", UInt64),
                field("dropped", UInt64),
                field("images_with_features", UInt64),
                field("fraction_images_with_features", Float64),
                field("max_images", Float64),
            ],
            TableType::Eoi
            | TableType::Vit
            | TableType::Dense
            | TableType::ProbeMetrics
            | TableType::ProbeClasses
            | TableType::ProbeConfusion
            | TableType::ProbeCv
            | TableType::ProbeCoefficients
            | TableType::ReportSummary
            | TableType::Custom(_)
            | TableType::Param(_) => return None,
        }))
    }

    /// The vector column of a dense type: `resid` for the residual streams a model's blocks write
    /// (`eoi`, `vit`), `features` for other per-image features (`dense`: the ResNet's pooled
    /// features are no residual).
    pub fn vector_column(self) -> &'static str {
        if self == TableType::Dense { "features" } else { "resid" }
    }

    /// The schema of a dense type (`eoi`, `vit`, `dense`) of vectors of `width`: `image_id u32`
    /// and a `fixed_size_list<f32>[width]` named by [`TableType::vector_column`].
    pub fn schema_with_width(self, width: usize) -> SchemaRef {
        debug_assert!(matches!(self, TableType::Eoi | TableType::Vit | TableType::Dense), "{self} has no width");
        schema_of(vec![field("image_id", DataType::UInt32), field(self.vector_column(), f32_list(width))])
    }

    /// The columns every table of the type has (more are allowed): the whole schema for the
    /// fixed types, `image_id` and a list `resid` of any width for the dense ones, the columns
    /// readers rely on for probe metrics.
    pub fn columns(self) -> Vec<Column> {
        use DataType::*;
        let col = |name: &str, ty: DataType| Column { name: name.to_string(), ty: Some(ty) };
        match self {
            TableType::Eoi | TableType::Vit | TableType::Dense => {
                vec![col("image_id", UInt32), Column { name: self.vector_column().into(), ty: None }]
            }
            TableType::ProbeMetrics => vec![
                col("instance", Utf8),
                col("macro_f1", Float64),
                col("accuracy", Float64),
                col("n_train", UInt64),
                col("n_test", UInt64),
            ],
            TableType::ProbeCoefficients => {
                vec![col("instance", Utf8), col("label", UInt16), col("feature", UInt32), col("weight", Float64), col("scale", Float64)]
            }
            // what the report reads of the extraction's statistics (older entries lack the rest)
            TableType::Health => vec![col("part", UInt32), col("scope", Utf8), col("tokens", UInt64), col("l0_sum", Float64)],
            t => t.fixed_schema().map(|s| s.fields().iter().map(|f| col(f.name(), f.data_type().clone())).collect()).unwrap_or_default(),
        }
    }

    /// Check that `schema` has every column of the type with its type; the error names the column.
    pub fn check(self, schema: &Schema, what: &str) -> Result<(), String> {
        let table = self.name();
        for c in self.columns() {
            let Ok(field) = schema.field_with_name(&c.name) else {
                let have: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(format!("{what}: a {table} table needs a column '{}', found only {}", c.name, have.join(", ")));
            };
            match &c.ty {
                Some(ty) if field.data_type() != ty => {
                    return Err(format!("{what}: column '{}' of a {table} table must be {ty}, got {}", c.name, field.data_type()));
                }
                None if !matches!(field.data_type(), DataType::FixedSizeList(inner, _) if inner.data_type() == &DataType::Float32) => {
                    return Err(format!(
                        "{what}: column '{}' of a {table} table must be fixed_size_list<f32>, got {}",
                        c.name,
                        field.data_type()
                    ));
                }
                _ => {}
            }
        }
        Ok(())
    }
}

impl fmt::Display for TableType {
    /// The name; a parameter-named type shows as `$param`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TableType::Param(p) => write!(f, "${p}"),
            t => f.write_str(t.name()),
        }
    }
}

/// A typed column of a batch, or an error naming the column, the table and the type wanted.
pub fn column<'a, T: 'static>(b: &'a arrow_array::RecordBatch, name: &str, what: &str) -> Result<&'a T, TableError> {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).ok_or_else(|| {
        TableError::Column(format!(
            "{what}: column '{name}' is missing or not {}",
            std::any::type_name::<T>().rsplit("::").next().unwrap_or("?")
        ))
    })
}

/// A `pooled` batch from (image, feature, value) rows, which the caller sorted.
pub fn pooled_batch(rows: &[(u32, u32, f32)]) -> Result<arrow_array::RecordBatch, TableError> {
    use arrow_array::{Float32Array, UInt32Array};
    Ok(arrow_array::RecordBatch::try_new(
        TableType::Pooled.schema(),
        vec![
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_missing_or_mistyped_column() {
        let s = Schema::new(vec![Field::new("image_id", DataType::UInt32, false), Field::new("feature", DataType::UInt64, false)]);
        let e = TableType::Pooled.check(&s, "t").unwrap_err();
        assert!(e.contains("column 'feature'") && e.contains("UInt32"), "{e}");
        let s = Schema::new(vec![Field::new("image_id", DataType::UInt32, false)]);
        assert!(TableType::Pooled.check(&s, "t").unwrap_err().contains("needs a column 'feature'"));
    }

    #[test]
    fn names_round_trip_and_writers_pass_their_own_check() {
        for t in TableType::BUILTIN {
            assert_eq!(TableType::from_name(t.name()), Some(t));
            assert_eq!(t.to_string(), t.name());
            if let Some(s) = t.fixed_schema() {
                t.check(&s, "t").unwrap();
            }
        }
        assert_eq!(TableType::from_name("mock"), None);
        assert_eq!(TableType::Param("type").to_string(), "$type");
        for t in [TableType::Eoi, TableType::Vit, TableType::Dense] {
            t.check(&t.schema_with_width(3), "t").unwrap();
        }
    }
}
