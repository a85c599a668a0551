//! A small in-memory table — named columns of [`Cell`]s — that the report shows as HTML, writes as
//! CSV and publishes as its `summary` output. Column types are inferred from the cells: an axis
//! that is an integer in every variant stays an integer column; one that is `6` in one variant and
//! `6+10` in another (layer fusion) becomes text.

use std::sync::Arc;

use arrow_array::{Array, ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt64Array};
use arrow_schema::{ArrowError, DataType, Field, Schema};

use crate::spec::Value;

/// One value of a report table.
#[derive(Clone, Debug, PartialEq)]
pub enum Cell {
    Null,
    Bool(bool),
    Int(i64),
    UInt(u64),
    Float(f64),
    Str(String),
}

impl Cell {
    /// A coordinate's value (lists and maps as their canonical JSON).
    pub fn from_value(v: &Value) -> Cell {
        match v {
            Value::Null => Cell::Null,
            Value::Bool(b) => Cell::Bool(*b),
            Value::Int(i) => Cell::Int(*i),
            Value::Float(x) => Cell::Float(*x),
            Value::Str(s) => Cell::Str(s.clone()),
            other => Cell::Str(other.canonical()),
        }
    }

    /// Row `i` of an Arrow column; types without a cell of their own become their display text.
    pub fn from_array(a: &dyn Array, i: usize) -> Cell {
        use arrow_array::cast::AsArray;
        use arrow_array::types::*;
        if a.is_null(i) {
            return Cell::Null;
        }
        match a.data_type() {
            DataType::Boolean => Cell::Bool(a.as_boolean().value(i)),
            DataType::Int8 => Cell::Int(a.as_primitive::<Int8Type>().value(i) as i64),
            DataType::Int16 => Cell::Int(a.as_primitive::<Int16Type>().value(i) as i64),
            DataType::Int32 => Cell::Int(a.as_primitive::<Int32Type>().value(i) as i64),
            DataType::Int64 => Cell::Int(a.as_primitive::<Int64Type>().value(i)),
            DataType::UInt8 => Cell::UInt(a.as_primitive::<UInt8Type>().value(i) as u64),
            DataType::UInt16 => Cell::UInt(a.as_primitive::<UInt16Type>().value(i) as u64),
            DataType::UInt32 => Cell::UInt(a.as_primitive::<UInt32Type>().value(i) as u64),
            DataType::UInt64 => Cell::UInt(a.as_primitive::<UInt64Type>().value(i)),
            DataType::Float32 => Cell::Float(a.as_primitive::<Float32Type>().value(i) as f64),
            DataType::Float64 => Cell::Float(a.as_primitive::<Float64Type>().value(i)),
            DataType::Utf8 => Cell::Str(a.as_string::<i32>().value(i).to_string()),
            DataType::LargeUtf8 => Cell::Str(a.as_string::<i64>().value(i).to_string()),
            _ => Cell::Str(display_value(a, i, usize::MAX)),
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Cell::Int(i) => Some(*i as f64),
            Cell::UInt(u) => Some(*u as f64),
            Cell::Float(x) => Some(*x),
            _ => None,
        }
    }

    /// Full precision, for CSV: floats in Rust's shortest round-trip form (`0.8351758351758353`),
    /// so a figure's CSV parses back to the exact values it was drawn from.
    pub fn csv(&self) -> String {
        match self {
            Cell::Null => String::new(),
            Cell::Bool(b) => b.to_string(),
            Cell::Int(i) => i.to_string(),
            Cell::UInt(u) => u.to_string(),
            Cell::Float(x) => x.to_string(),
            Cell::Str(s) => s.clone(),
        }
    }

    /// For people: floats with four decimals, nulls as a dash.
    pub fn display(&self) -> String {
        match self {
            Cell::Null => "–".into(),
            Cell::Float(x) if x.is_finite() => format!("{x:.4}"),
            other => other.csv(),
        }
    }

    pub fn is_numeric(&self) -> bool {
        matches!(self, Cell::Int(_) | Cell::UInt(_) | Cell::Float(_))
    }
}

/// Row `i` of any Arrow column as text (Arrow's display form), cut to `max_chars` characters.
pub fn display_value(a: &dyn Array, i: usize, max_chars: usize) -> String {
    let opts = arrow_cast::display::FormatOptions::default().with_null("null");
    let text = match arrow_cast::display::ArrayFormatter::try_new(a, &opts) {
        Ok(f) => f.value(i).to_string(),
        Err(_) => format!("({})", a.data_type()),
    };
    if text.chars().count() > max_chars {
        let cut: String = text.chars().take(max_chars.saturating_sub(1)).collect();
        format!("{cut}…")
    } else {
        text
    }
}

/// Named columns and rows of cells (every row as long as `columns`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Table {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<Cell>>,
}

impl Table {
    pub fn new<S: Into<String>>(columns: impl IntoIterator<Item = S>) -> Table {
        Table { columns: columns.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }

    /// Append a row; a short row is padded with nulls, a long one cut (callers build rows from
    /// the same column list, so neither happens in practice).
    pub fn push(&mut self, mut row: Vec<Cell>) {
        row.resize(self.columns.len(), Cell::Null);
        self.rows.push(row);
    }

    pub fn column(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| c == name)
    }

    /// RFC 4180 CSV with a header line and `\n` line ends; fields holding a comma, quote or line
    /// break are quoted.
    pub fn to_csv(&self) -> String {
        fn field(s: &str) -> String {
            if s.contains([',', '"', '\n', '\r']) { format!("\"{}\"", s.replace('"', "\"\"")) } else { s.to_string() }
        }
        let mut out = self.columns.iter().map(|c| field(c)).collect::<Vec<_>>().join(",");
        out.push('\n');
        for row in &self.rows {
            out += &row.iter().map(|c| field(&c.csv())).collect::<Vec<_>>().join(",");
            out.push('\n');
        }
        out
    }

    /// The table as one Arrow batch. Each column's type is the one its non-null cells share
    /// (integers mixed with floats widen to Float64; anything else mixed becomes Utf8); a column
    /// is nullable only when it holds a null.
    pub fn to_batch(&self) -> Result<RecordBatch, ArrowError> {
        let mut fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        for (j, name) in self.columns.iter().enumerate() {
            let cells: Vec<&Cell> = self.rows.iter().map(|r| &r[j]).collect();
            let nullable = cells.iter().any(|c| **c == Cell::Null);
            let present = || cells.iter().filter(|c| ***c != Cell::Null);
            let all = |f: fn(&Cell) -> bool| present().all(|c| f(c));
            let any_present = present().next().is_some();
            let array: ArrayRef = if any_present && all(|c| matches!(c, Cell::Bool(_))) {
                Arc::new(BooleanArray::from_iter(cells.iter().map(|c| match c {
                    Cell::Bool(b) => Some(*b),
                    _ => None,
                })))
            } else if any_present && all(|c| matches!(c, Cell::Int(_))) {
                Arc::new(Int64Array::from_iter(cells.iter().map(|c| match c {
                    Cell::Int(i) => Some(*i),
                    _ => None,
                })))
            } else if any_present && all(|c| matches!(c, Cell::UInt(_))) {
                Arc::new(UInt64Array::from_iter(cells.iter().map(|c| match c {
                    Cell::UInt(u) => Some(*u),
                    _ => None,
                })))
            } else if any_present && all(Cell::is_numeric) {
                Arc::new(Float64Array::from_iter(cells.iter().map(|c| c.as_f64())))
            } else {
                Arc::new(StringArray::from_iter(cells.iter().map(|c| if **c == Cell::Null { None } else { Some(c.csv()) })))
            };
            fields.push(Field::new(name, array.data_type().clone(), nullable));
            arrays.push(array);
        }
        RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_only_what_needs_it_and_keeps_full_precision() {
        let mut t = Table::new(["name", "f1"]);
        t.push(vec![Cell::Str("red, circle".into()), Cell::Float(0.1 + 0.2)]);
        t.push(vec![Cell::Str("say \"hi\"".into()), Cell::Null]);
        assert_eq!(t.to_csv(), "name,f1\n\"red, circle\",0.30000000000000004\n\"say \"\"hi\"\"\",\n");
        assert_eq!("0.30000000000000004".parse::<f64>().unwrap(), 0.1 + 0.2);
    }

    #[test]
    fn column_types_follow_the_cells() {
        let mut t = Table::new(["layer", "f1", "ok", "mixed", "empty"]);
        t.push(vec![Cell::Int(1), Cell::Float(0.5), Cell::Bool(true), Cell::Int(6), Cell::Null]);
        t.push(vec![Cell::Int(3), Cell::UInt(1), Cell::Null, Cell::Str("6+10".into()), Cell::Null]);
        let b = t.to_batch().unwrap();
        let types: Vec<(DataType, bool)> = b.schema().fields().iter().map(|f| (f.data_type().clone(), f.is_nullable())).collect();
        assert_eq!(
            types,
            [
                (DataType::Int64, false),
                (DataType::Float64, false),
                (DataType::Boolean, true),
                (DataType::Utf8, false),
                (DataType::Utf8, true)
            ]
        );
        let mixed = b.column(3).as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!((mixed.value(0), mixed.value(1)), ("6", "6+10"));
    }

    #[test]
    fn long_display_values_are_cut() {
        let a = StringArray::from(vec!["abcdefghij"]);
        assert_eq!(display_value(&a, 0, 5), "abcd…");
        assert_eq!(display_value(&a, 0, 10), "abcdefghij");
    }
}
