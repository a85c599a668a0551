//! The table types stages exchange, defined in one place: their columns and Arrow types. Inputs
//! declare which types they accept (checked by `plan`); stages check a table's schema with
//! [`check`] before reading it, so a mismatch is an error that names the column. A leaf: it knows
//! Arrow and nothing of the plan, the engine or the stages.

use arrow_schema::{DataType, Schema};

/// A table that is not what its type promises, or a batch that cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    #[error("{0}")]
    Column(String),
    #[error("arrow: {0}")]
    Arrow(#[from] arrow_schema::ArrowError),
}

/// A column of a table type. `None` type: a fixed-size list of f32 of any width.
pub struct Column {
    pub name: &'static str,
    pub ty: Option<DataType>,
}

const fn col(name: &'static str, ty: DataType) -> Column {
    Column { name, ty: Some(ty) }
}

/// Columns every table of the type must have (more are allowed).
pub fn columns(table: &str) -> &'static [Column] {
    use DataType::*;
    match table {
        "dataset" => {
            const C: &[Column] =
                &[col("image_id", UInt32), col("label", UInt16), col("label_name", Utf8), col("split", Utf8), col("source", Utf8)];
            C
        }
        "codes" => {
            const C: &[Column] = &[col("image_id", UInt32), col("token", UInt16), col("feature", UInt32), col("value", Float32)];
            C
        }
        "totals" => {
            const C: &[Column] =
                &[col("image_id", UInt32), col("feature", UInt32), col("sum", Float32), col("max", Float32), col("count", UInt32)];
            C
        }
        "features" => {
            const C: &[Column] = &[col("feature", UInt32)];
            C
        }
        "pooled" => {
            const C: &[Column] = &[col("image_id", UInt32), col("feature", UInt32), col("value", Float32)];
            C
        }
        "eoi" | "vit" | "dense" => {
            const C: &[Column] = &[col("image_id", UInt32), Column { name: "resid", ty: None }];
            C
        }
        "health" => {
            const C: &[Column] = &[col("part", UInt32), col("scope", Utf8), col("tokens", UInt64), col("l0_sum", Float64)];
            C
        }
        "errors" => {
            const C: &[Column] = &[col("image_id", UInt32), col("source", Utf8), col("reason", Utf8)];
            C
        }
        "probe_metrics" => {
            const C: &[Column] =
                &[col("instance", Utf8), col("macro_f1", Float64), col("accuracy", Float64), col("n_train", UInt64), col("n_test", UInt64)];
            C
        }
        "class_features" => {
            const C: &[Column] = &[
                col("label", UInt16),
                col("label_name", Utf8),
                col("rank", UInt16),
                col("feature", UInt32),
                col("n_images", UInt32),
                col("label_images", UInt32),
                col("explanation", Utf8),
            ];
            C
        }
        "split" => {
            const C: &[Column] =
                &[col("image_id", UInt32), col("label", UInt16), col("label_name", Utf8), col("fold", UInt8), col("role", Utf8)];
            C
        }
        _ => &[],
    }
}

/// Check that `schema` has every column of `table` with its type; the error names the column.
pub fn check(table: &str, schema: &Schema, what: &str) -> Result<(), String> {
    for c in columns(table) {
        let Ok(field) = schema.field_with_name(c.name) else {
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

/// A typed column of a batch, or an error naming the column, the table and the type wanted.
pub fn column<'a, T: 'static>(b: &'a arrow_array::RecordBatch, name: &str, what: &str) -> Result<&'a T, TableError> {
    b.column_by_name(name).and_then(|c| c.as_any().downcast_ref::<T>()).ok_or_else(|| {
        TableError::Column(format!(
            "{what}: column '{name}' is missing or not {}",
            std::any::type_name::<T>().rsplit("::").next().unwrap_or("?")
        ))
    })
}

/// Schema of a `pooled` table.
pub fn pooled_schema() -> arrow_schema::SchemaRef {
    std::sync::Arc::new(Schema::new(vec![
        arrow_schema::Field::new("image_id", DataType::UInt32, false),
        arrow_schema::Field::new("feature", DataType::UInt32, false),
        arrow_schema::Field::new("value", DataType::Float32, false),
    ]))
}

/// A `pooled` batch from (image, feature, value) rows, which the caller sorted.
pub fn pooled_batch(rows: &[(u32, u32, f32)]) -> Result<arrow_array::RecordBatch, TableError> {
    use arrow_array::{Float32Array, UInt32Array};
    Ok(arrow_array::RecordBatch::try_new(
        pooled_schema(),
        vec![
            std::sync::Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.0))),
            std::sync::Arc::new(UInt32Array::from_iter_values(rows.iter().map(|r| r.1))),
            std::sync::Arc::new(Float32Array::from_iter_values(rows.iter().map(|r| r.2))),
        ],
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_schema::Field;

    #[test]
    fn names_the_missing_or_mistyped_column() {
        let s = Schema::new(vec![Field::new("image_id", DataType::UInt32, false), Field::new("feature", DataType::UInt64, false)]);
        let e = check("pooled", &s, "t").unwrap_err();
        assert!(e.contains("column 'feature'") && e.contains("UInt32"), "{e}");
        let s = Schema::new(vec![Field::new("image_id", DataType::UInt32, false)]);
        assert!(check("pooled", &s, "t").unwrap_err().contains("needs a column 'feature'"));
    }
}
