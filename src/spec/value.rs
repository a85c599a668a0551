//! Typed values of parameters and matrix coordinates, with one canonical JSON form.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fmt;

/// A parameter or coordinate value as written in YAML, typed by the YAML 1.2 core schema.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Value>),
    Map(BTreeMap<String, Value>),
}

impl Value {
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Map(_) => "map",
        }
    }

    /// JSON with sorted map keys: the form that enters cache keys and Parquet metadata.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value as J;
        match self {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => J::from(*i),
            Value::Float(x) => serde_json::Number::from_f64(*x).map(J::Number).unwrap_or_else(|| J::String(format!("{x}"))),
            Value::Str(s) => J::String(s.clone()),
            Value::List(items) => J::Array(items.iter().map(Value::to_json).collect()),
            Value::Map(map) => J::Object(map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect()),
        }
    }

    /// The inverse of [`Value::to_json`] (JSON has no int/float distinction beyond the number's form).
    pub fn from_json(j: &serde_json::Value) -> Value {
        use serde_json::Value as J;
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => match n.as_i64() {
                Some(i) => Value::Int(i),
                None => Value::Float(n.as_f64().unwrap_or(f64::NAN)),
            },
            J::String(s) => Value::Str(s.clone()),
            J::Array(a) => Value::List(a.iter().map(Value::from_json).collect()),
            J::Object(o) => Value::Map(o.iter().map(|(k, v)| (k.clone(), Value::from_json(v))).collect()),
        }
    }

    /// Canonical compact JSON text (sorted keys, shortest float form).
    pub fn canonical(&self) -> String {
        self.to_json().to_string()
    }

    /// The value as text without quotes: a string as it is, anything else as displayed (`3`,
    /// `0.5`, `true`). What a coordinate column and a hive folder hold.
    pub fn plain_text(&self) -> String {
        match self {
            Value::Str(s) => s.clone(),
            other => other.to_string(),
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Float(x) => Some(*x),
            _ => None,
        }
    }

    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// Total order used for stable sorting of coordinates: by type, then by value.
    pub fn total_cmp(&self, other: &Value) -> Ordering {
        fn rank(v: &Value) -> u8 {
            match v {
                Value::Null => 0,
                Value::Bool(_) => 1,
                Value::Int(_) | Value::Float(_) => 2,
                Value::Str(_) => 3,
                Value::List(_) => 4,
                Value::Map(_) => 5,
            }
        }
        match (self, other) {
            (Value::Bool(a), Value::Bool(b)) => a.cmp(b),
            (Value::Int(a), Value::Int(b)) => a.cmp(b),
            (a @ (Value::Int(_) | Value::Float(_)), b @ (Value::Int(_) | Value::Float(_))) => {
                let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
                x.total_cmp(&y).then_with(|| rank_num(a).cmp(&rank_num(b)))
            }
            (Value::Str(a), Value::Str(b)) => a.cmp(b),
            _ => rank(self).cmp(&rank(other)).then_with(|| self.canonical().cmp(&other.canonical())),
        }
    }
}

fn rank_num(v: &Value) -> u8 {
    matches!(v, Value::Float(_)) as u8
}

/// Display form used in instance ids and messages: `10`, `true`, `top5`, `"a,b"` (quoted when needed).
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Null => write!(f, "null"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{}", self.to_json_float(*x)),
            Value::Str(s) => {
                let plain = !s.is_empty()
                    && s.chars().all(|c| c.is_alphanumeric() || "-_./+:@".contains(c))
                    && crate::spec::yaml::resolve_plain(s) == Value::Str(s.clone());
                if plain { write!(f, "{s}") } else { write!(f, "{}", serde_json::Value::String(s.clone())) }
            }
            Value::List(items) => {
                write!(f, "(")?;
                for (i, v) in items.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{v}")?;
                }
                write!(f, ")")
            }
            Value::Map(_) => write!(f, "{}", self.canonical()),
        }
    }
}

impl Value {
    fn to_json_float(&self, x: f64) -> String {
        serde_json::Number::from_f64(x).map(|n| n.to_string()).unwrap_or_else(|| format!("{x}"))
    }
}

/// Coordinates of a variant: every axis of the stage and its ancestors, with typed values.
pub type Coords = BTreeMap<String, Value>;

/// Coordinates in their one canonical JSON form (sorted keys): what keys and comparisons use.
pub fn canonical_coords(c: &Coords) -> String {
    Value::Map(c.clone()).canonical()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_json_sorts_keys_and_keeps_types() {
        let mut m = BTreeMap::new();
        m.insert("b".into(), Value::Int(1));
        m.insert("a".into(), Value::Float(0.5));
        assert_eq!(Value::Map(m).canonical(), r#"{"a":0.5,"b":1}"#);
        assert_ne!(Value::Int(1).canonical(), Value::Str("1".into()).canonical());
    }

    #[test]
    fn display_quotes_strings_that_would_read_back_as_other_types() {
        assert_eq!(Value::Str("top5".into()).to_string(), "top5");
        assert_eq!(Value::Str("10".into()).to_string(), "\"10\"");
        assert_eq!(Value::Str("a,b".into()).to_string(), "\"a,b\"");
        assert_eq!(Value::Float(0.1).to_string(), "0.1");
        assert_eq!(Value::Bool(true).to_string(), "true");
    }
}
