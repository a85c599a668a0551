//! A kind's parameters, declared once: [`params!`] writes the struct a stage reads
//! in `run` and the [`ParamSpec`]s its [`Signature`](super::Signature) lists (name, type, default,
//! doc, whether it enters the key), so a name, type or default is never written twice;
//! [`choice!`] turns a string mode into a Rust enum. The plan resolves and checks the
//! values against the specs; [`Params::from_values`] then converts the resolved values (defaults
//! filled) into the struct.
//!
//! ```
//! use saeflow::plan::params::{Params, choice, params};
//! use saeflow::plan::signature::ParamType;
//!
//! choice! {
//!     /// How `split` assigns roles.
//!     pub enum Method { Folds = "folds", Fraction = "fraction", Predefined = "predefined" }
//! }
//! params! {
//!     /// `split`'s parameters.
//!     pub struct SplitParams {
//!         /// how to split
//!         pub method: Method, Method::param_type(), default("folds");
//!         /// number of stratified folds (method: folds)
//!         pub folds: usize, ParamType::range(2, 255), default(10);
//!         /// threads (results do not depend on it)
//!         pub threads: usize, ParamType::range(1, 256), default(2), not_in_key;
//!     }
//! }
//! let specs = SplitParams::specs();
//! assert_eq!((specs[1].name, specs[1].doc, specs[2].in_key), ("folds", "number of stratified folds (method: folds)", false));
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::signature::ParamSpec;
use crate::spec::Value;

/// A kind's parameters as a typed struct (written by [`params!`]).
pub trait Params: Sized {
    /// The parameters' specs, in declaration order.
    fn specs() -> Vec<ParamSpec>;
    /// The struct from an instance's resolved parameters and the paths its path and artifact
    /// parameters resolved to. The error names the parameter, what it expected and what it got.
    fn from_values(values: &BTreeMap<String, Value>, paths: &BTreeMap<String, PathBuf>) -> Result<Self, String>;
}

/// What one parameter's Rust type is made from: its resolved value (`None`: not set) and, for a
/// path or artifact parameter, the path it resolved to.
pub trait FromParam: Sized {
    /// The value of parameter `name`; the error says what was expected and what was found.
    fn from_param(name: &str, value: Option<&Value>, path: Option<&PathBuf>) -> Result<Self, String>;
}

/// The error for a value of the wrong kind.
pub fn wrong(name: &str, expected: &str, value: Option<&Value>) -> String {
    match value {
        None => format!("parameter '{name}' is not set; expected {expected}"),
        Some(v) => format!("parameter '{name}': expected {expected}, got {} '{v}'", v.type_name()),
    }
}

macro_rules! from_int {
    ($($t:ty),*) => {$(
        impl FromParam for $t {
            fn from_param(name: &str, value: Option<&Value>, _: Option<&PathBuf>) -> Result<Self, String> {
                let expected = concat!("an integer that fits ", stringify!($t));
                match value {
                    Some(Value::Int(i)) => <$t>::try_from(*i).map_err(|_| wrong(name, expected, value)),
                    _ => Err(wrong(name, expected, value)),
                }
            }
        }
    )*};
}

from_int!(i64, u64, u32, u16, u8, usize);

impl FromParam for f64 {
    fn from_param(name: &str, value: Option<&Value>, _: Option<&PathBuf>) -> Result<Self, String> {
        value.and_then(Value::as_f64).ok_or_else(|| wrong(name, "a number", value))
    }
}

impl FromParam for bool {
    fn from_param(name: &str, value: Option<&Value>, _: Option<&PathBuf>) -> Result<Self, String> {
        value.and_then(Value::as_bool).ok_or_else(|| wrong(name, "a bool", value))
    }
}

impl FromParam for String {
    fn from_param(name: &str, value: Option<&Value>, _: Option<&PathBuf>) -> Result<Self, String> {
        value.and_then(Value::as_str).map(str::to_string).ok_or_else(|| wrong(name, "a string", value))
    }
}

/// A path or artifact parameter: the file or folder it resolved to.
impl FromParam for PathBuf {
    fn from_param(name: &str, value: Option<&Value>, path: Option<&PathBuf>) -> Result<Self, String> {
        path.cloned().ok_or_else(|| match value {
            Some(v) => format!("parameter '{name}': '{v}' was not resolved to a path; plan the pipeline again"),
            None => format!("parameter '{name}' is not set; expected a path"),
        })
    }
}

/// Unset or null: `None`.
impl<T: FromParam> FromParam for Option<T> {
    fn from_param(name: &str, value: Option<&Value>, path: Option<&PathBuf>) -> Result<Self, String> {
        match value {
            None | Some(Value::Null) => Ok(None),
            v => T::from_param(name, v, path).map(Some),
        }
    }
}

impl<T: FromParam> FromParam for Vec<T> {
    fn from_param(name: &str, value: Option<&Value>, _: Option<&PathBuf>) -> Result<Self, String> {
        match value {
            Some(Value::List(items)) => items.iter().map(|v| T::from_param(name, Some(v), None)).collect(),
            _ => Err(wrong(name, "a list", value)),
        }
    }
}

/// A free-form parameter, as written (`Null` when unset).
impl FromParam for Value {
    fn from_param(_: &str, value: Option<&Value>, _: Option<&PathBuf>) -> Result<Self, String> {
        Ok(value.cloned().unwrap_or(Value::Null))
    }
}

/// A table type named by its name (`table`'s `type`): a built-in type.
impl FromParam for crate::tables::TableType {
    fn from_param(name: &str, value: Option<&Value>, _: Option<&PathBuf>) -> Result<Self, String> {
        value.and_then(Value::as_str).and_then(crate::tables::TableType::from_name).ok_or_else(|| wrong(name, "a table type", value))
    }
}

/// A model or SAE reference, or a path: the text as written and, when it resolved to one, the
/// folder or file (a hub SAE's weights are located only at run time).
#[derive(Clone, Debug, PartialEq)]
pub struct Reference {
    pub text: String,
    pub path: Option<PathBuf>,
}

impl FromParam for Reference {
    fn from_param(name: &str, value: Option<&Value>, path: Option<&PathBuf>) -> Result<Self, String> {
        Ok(Reference { text: String::from_param(name, value, None)?, path: path.cloned() })
    }
}

/// A default as written in [`params!`]: integers stay `Int`, numbers with a point
/// `Float`, text `Str`; a [`Value`] is taken as it is (`Value::Null`: optional, unset).
pub trait IntoDefault {
    fn into_default(self) -> Value;
}

impl IntoDefault for Value {
    fn into_default(self) -> Value {
        self
    }
}

impl IntoDefault for i32 {
    fn into_default(self) -> Value {
        Value::Int(i64::from(self))
    }
}

impl IntoDefault for i64 {
    fn into_default(self) -> Value {
        Value::Int(self)
    }
}

impl IntoDefault for f64 {
    fn into_default(self) -> Value {
        Value::Float(self)
    }
}

impl IntoDefault for bool {
    fn into_default(self) -> Value {
        Value::Bool(self)
    }
}

impl IntoDefault for &str {
    fn into_default(self) -> Value {
        Value::Str(self.to_string())
    }
}

#[doc(hidden)]
#[macro_export]
macro_rules! __params {
    (@default required) => { None };
    (@default default($v:expr)) => { Some($crate::plan::params::IntoDefault::into_default($v)) };
    // a raw identifier (`r#type`) names the parameter `type`
    (@name $field:ident) => { stringify!($field).trim_start_matches("r#") };
    (@in_key) => { true };
    (@in_key not_in_key) => { false };
    (
        $(#[doc = $sdoc:literal])*
        $svis:vis struct $name:ident {
            $(
                $(#[doc = $doc:literal])*
                pub $field:ident : $fty:ty, $pty:expr, $dkind:ident $(($dval:expr))? $(, $flag:ident)?;
            )*
        }
    ) => {
        $(#[doc = $sdoc])*
        #[derive(Clone, Debug)]
        $svis struct $name {
            $(
                $(#[doc = $doc])*
                pub $field: $fty,
            )*
        }

        impl $crate::plan::params::Params for $name {
            fn specs() -> Vec<$crate::plan::signature::ParamSpec> {
                vec![$(
                    $crate::plan::signature::ParamSpec {
                        name: $crate::__params!(@name $field),
                        ty: $pty,
                        default: $crate::__params!(@default $dkind $(($dval))?),
                        in_key: $crate::__params!(@in_key $($flag)?),
                        doc: concat!($($doc),*).trim(),
                    }
                ),*]
            }

            #[allow(unused_variables)]
            fn from_values(
                values: &std::collections::BTreeMap<String, $crate::spec::Value>,
                paths: &std::collections::BTreeMap<String, std::path::PathBuf>,
            ) -> Result<Self, String> {
                Ok($name {
                    $(
                        $field: <$fty as $crate::plan::params::FromParam>::from_param(
                            $crate::__params!(@name $field),
                            values.get($crate::__params!(@name $field)),
                            paths.get($crate::__params!(@name $field)),
                        )?,
                    )*
                })
            }
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __choice {
    (
        $(#[doc = $doc:literal])*
        $vis:vis enum $name:ident { $($(#[doc = $vdoc:literal])* $variant:ident = $word:literal),+ $(,)? }
    ) => {
        $(#[doc = $doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        $vis enum $name {
            $($(#[doc = $vdoc])* $variant),+
        }

        impl $name {
            /// The words, in declaration order.
            pub const WORDS: &'static [&'static str] = &[$($word),+];

            /// The word as pipelines write it.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }

            /// A choice of [`Self::WORDS`].
            pub fn param_type() -> $crate::plan::signature::ParamType {
                $crate::plan::signature::ParamType::Choice(Self::WORDS.to_vec())
            }
        }

        impl $crate::plan::params::FromParam for $name {
            fn from_param(
                name: &str,
                value: Option<&$crate::spec::Value>,
                _: Option<&std::path::PathBuf>,
            ) -> Result<Self, String> {
                match value.and_then($crate::spec::Value::as_str) {
                    $(Some($word) => Ok($name::$variant),)+
                    _ => Err($crate::plan::params::wrong(name, &format!("one of {}", Self::WORDS.join(", ")), value)),
                }
            }
        }
    };
}

/// Declare a kind's parameters once: a struct (its fields documented) that implements [`Params`].
/// Per field: its doc comment (the parameter's doc), `pub name: RustType`, the [`ParamType`](super::ParamType),
/// then `required` or `default(value)` (see [`IntoDefault`]), and optionally `not_in_key` (the
/// parameter cannot change the output: worker counts, delays). A raw identifier (`pub r#type`) declares
/// a parameter named like a keyword (`type`).
pub use __params as params;

/// A string mode as a Rust enum: `enum Method { Folds = "folds", Fraction = "fraction" }` gives
/// the enum with `as_str`, `WORDS` (in declaration order), `param_type()` (a
/// [`ParamType::Choice`](super::ParamType::Choice) of the words) and [`FromParam`].
pub use __choice as choice;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::signature::ParamType;

    choice! {
        /// A test mode.
        enum Mode { Fast = "fast", Slow = "slow" }
    }

    params! {
        /// Test parameters.
        struct TestParams {
            /// the mode
            pub mode: Mode, Mode::param_type(), default("slow");
            /// a count,
            /// on two lines
            pub count: u8, ParamType::range(0, 255), default(10);
            /// a fraction
            pub fraction: f64, ParamType::Float, default(0.2);
            /// an optional path
            pub path: Option<PathBuf>, ParamType::InputPath, default(Value::Null);
            /// threads
            pub threads: usize, ParamType::min(1), default(2), not_in_key;
            /// required
            pub names: Vec<String>, ParamType::List(Box::new(ParamType::Str)), required;
        }
    }

    #[test]
    fn specs_keep_names_types_defaults_and_docs() {
        let specs = TestParams::specs();
        let names: Vec<&str> = specs.iter().map(|s| s.name).collect();
        assert_eq!(names, ["mode", "count", "fraction", "path", "threads", "names"]);
        assert_eq!(specs[0].ty, ParamType::Choice(vec!["fast", "slow"]));
        assert_eq!(specs[0].default, Some(Value::Str("slow".into())));
        assert_eq!(specs[1].default, Some(Value::Int(10)));
        assert_eq!(specs[1].doc, "a count, on two lines");
        assert_eq!(specs[2].default, Some(Value::Float(0.2)));
        assert_eq!(specs[3].default, Some(Value::Null));
        assert!(specs[3].in_key && !specs[4].in_key);
        assert_eq!(specs[5].default, None);
    }

    #[test]
    fn values_convert_with_range_checks() {
        let mut values: BTreeMap<String, Value> = [
            ("mode", Value::Str("fast".into())),
            ("count", Value::Int(3)),
            ("fraction", Value::Int(1)),
            ("path", Value::Str("x".into())),
            ("threads", Value::Int(4)),
            ("names", Value::List(vec![Value::Str("a".into())])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let paths = [("path".to_string(), PathBuf::from("/x"))].into_iter().collect();
        let p = TestParams::from_values(&values, &paths).unwrap();
        assert_eq!((p.mode, p.count, p.fraction, p.threads), (Mode::Fast, 3, 1.0, 4));
        assert_eq!((p.path, p.names), (Some(PathBuf::from("/x")), vec!["a".to_string()]));
        assert_eq!(Mode::Slow.as_str(), "slow");
        values.insert("count".into(), Value::Int(300));
        let e = TestParams::from_values(&values, &paths).unwrap_err();
        assert!(e.contains("'count'") && e.contains("u8") && e.contains("300"), "{e}");
        values.insert("count".into(), Value::Int(3));
        values.insert("mode".into(), Value::Str("medium".into()));
        let e = TestParams::from_values(&values, &paths).unwrap_err();
        assert!(e.contains("one of fast, slow") && e.contains("medium"), "{e}");
        values.insert("mode".into(), Value::Str("fast".into()));
        values.insert("path".into(), Value::Null);
        assert_eq!(TestParams::from_values(&values, &BTreeMap::new()).unwrap().path, None);
        values.remove("names");
        assert!(TestParams::from_values(&values, &paths).unwrap_err().contains("'names' is not set"));
    }
}
