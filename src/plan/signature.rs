//! What a stage kind declares about itself: inputs, parameters, outputs. `plan/` reads only this;
//! it never runs a stage.

use std::collections::BTreeMap;

use super::params::Params;
use crate::spec::Value;
use crate::tables::TableType;

/// The static description of a stage kind.
#[derive(Clone, Debug)]
pub struct Signature {
    pub kind: &'static str,
    /// Bump when the kind's output changes for the same inputs and parameters: it enters every key.
    pub version: u32,
    pub doc: &'static str,
    pub inputs: Vec<InputSlot>,
    pub params: Vec<ParamSpec>,
    /// Accept parameters beyond `params` (free-form kinds such as the mock stand-ins).
    pub open_params: bool,
    pub outputs: Vec<OutputSpec>,
    /// Axes along which instances run as one fused computation (one forward pass serves every
    /// layer): instances that differ only in these axes, and read the same inputs, are handed to
    /// one `run` call.
    pub fuse_axes: Vec<&'static str>,
    /// Plan-time checks across parameters (e.g. `train_folds < folds`), run on every instance's
    /// resolved parameters, so mistakes surface in `saeflow plan` with a position, not hours in.
    pub validate: Option<Validate>,
    /// Work an instance will do, for `plan`'s cost summary: (units, unit name), e.g. the number of
    /// logistic-regression fits a probe with a C grid makes.
    pub estimate: Option<Estimate>,
    /// Plan-time checks that read the small files artifact parameters resolved to (a model's
    /// `config.json`, an SAE's `cfg.json`): `Ok(warnings)` or `Err(problem)`. Never weights.
    pub check_files: Option<CheckFiles>,
}

/// See [`Signature::check_files`].
pub type CheckFiles = fn(&BTreeMap<String, Value>, &BTreeMap<String, std::path::PathBuf>) -> Result<Vec<ParamProblem>, ParamProblem>;

/// See [`Signature::estimate`].
pub type Estimate = fn(&BTreeMap<String, Value>) -> (u64, &'static str);

/// A plan-time parameter check: `Err(problem)` names the parameter it is about.
pub type Validate = fn(&BTreeMap<String, Value>) -> Result<(), ParamProblem>;

/// What a plan-time check found: which parameter, what is wrong, how to fix it.
#[derive(Clone, Debug)]
pub struct ParamProblem {
    pub param: &'static str,
    pub message: String,
    pub help: String,
}

/// One input of a stage kind.
#[derive(Clone, Debug)]
pub struct InputSlot {
    pub name: &'static str,
    /// Table types this input accepts (empty: any).
    pub accepts: Vec<TableType>,
    pub many: Many,
    pub required: bool,
    pub doc: &'static str,
}

/// How an input receives variants of the stage it reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Many {
    /// One variant per instance: shared axes join, the others cross.
    One,
    /// Every (selected) variant at once, with its coordinates (a report, a comparison).
    All,
    /// The variants that differ in these axes, grouped; the remaining axes join as for `One`
    /// (layer fusion: `over: [layer]` collects layers 6 and 10 of the same pooling).
    Over(Vec<String>),
}

/// One parameter of a stage kind.
#[derive(Clone, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ParamType,
    /// `None`: required.
    pub default: Option<Value>,
    /// False for parameters that cannot change the output (worker counts, progress, delays):
    /// they stay out of the cache key.
    pub in_key: bool,
    pub doc: &'static str,
}

#[derive(Clone, Debug, PartialEq)]
pub enum ParamType {
    Bool,
    Int {
        min: Option<i64>,
        max: Option<i64>,
    },
    Float,
    Str,
    Choice(Vec<&'static str>),
    /// A file or folder the stage reads: fingerprinted by content, and its path stays out of the key.
    InputPath,
    /// An [`InputPath`](ParamType::InputPath), or one of these words, which is no path: the word itself
    /// enters the key (`explanations: api`). A folder named like a word is written `./api`.
    InputPathOr(Vec<&'static str>),
    /// A folder the stage writes besides the cache (a report): must stay inside the project.
    OutputDir,
    /// A model or SAE reference (`hf://…`, a release id, a local folder), resolved at plan time:
    /// the key gets the hub commit or the folder's content fingerprint, not the text.
    Artifact(crate::models::source::Artifact),
    List(Box<ParamType>),
    Any,
}

impl ParamType {
    /// An integer in `lo..=hi`.
    pub fn range(lo: i64, hi: i64) -> ParamType {
        ParamType::Int { min: Some(lo), max: Some(hi) }
    }

    /// An integer ≥ `lo`.
    pub fn min(lo: i64) -> ParamType {
        ParamType::Int { min: Some(lo), max: None }
    }

    /// Whether `v` is one of an [`InputPathOr`](ParamType::InputPathOr)'s words rather than a path.
    pub fn is_word(&self, v: &Value) -> bool {
        matches!((self, v), (ParamType::InputPathOr(words), Value::Str(s)) if words.contains(&s.as_str()))
    }

    pub fn describe(&self) -> String {
        match self {
            ParamType::Bool => "a bool".into(),
            ParamType::Int { min: Some(lo), max: Some(hi) } => format!("an integer in {lo}..={hi}"),
            ParamType::Int { min: Some(lo), max: None } => format!("an integer ≥ {lo}"),
            ParamType::Int { .. } => "an integer".into(),
            ParamType::Float => "a number".into(),
            ParamType::Str => "a string".into(),
            ParamType::Choice(c) => format!("one of {}", c.join(", ")),
            ParamType::InputPath => "a path to read".into(),
            ParamType::InputPathOr(words) => format!("a path to read, or {}", words.join(", ")),
            ParamType::OutputDir => "a folder inside the project".into(),
            ParamType::Artifact(a) => a.describe().into(),
            ParamType::List(t) => format!("a list of {}", t.describe().trim_start_matches("a ").trim_start_matches("an ")),
            ParamType::Any => "any value".into(),
        }
    }

    /// Check a value; floats accept integers (widened).
    pub fn check(&self, v: &Value) -> Result<Value, String> {
        let wrong = || format!("expected {}, got {} '{v}'", self.describe(), v.type_name());
        Ok(match (self, v) {
            (ParamType::Any, v) => v.clone(),
            (ParamType::Bool, Value::Bool(_)) => v.clone(),
            (ParamType::Int { min, max }, Value::Int(i)) => {
                if min.is_some_and(|lo| *i < lo) || max.is_some_and(|hi| *i > hi) {
                    return Err(wrong());
                }
                v.clone()
            }
            (ParamType::Float, Value::Int(i)) => Value::Float(*i as f64),
            (ParamType::Float, Value::Float(_)) => v.clone(),
            (
                ParamType::Str | ParamType::InputPath | ParamType::InputPathOr(_) | ParamType::OutputDir | ParamType::Artifact(_),
                Value::Str(_),
            ) => v.clone(),
            (ParamType::Choice(c), Value::Str(s)) if c.contains(&s.as_str()) => v.clone(),
            (ParamType::Choice(c), _) => {
                let got = v.to_string();
                return Err(format!(
                    "expected one of {}, got '{got}'{}",
                    c.join(", "),
                    crate::spec::suggest(&got, c.iter().copied())
                        .filter(|s| s.starts_with("did"))
                        .map(|s| format!("; {}", s.split('?').next().unwrap_or_default().to_string() + "?"))
                        .unwrap_or_default()
                ));
            }
            (ParamType::List(t), Value::List(items)) => Value::List(items.iter().map(|i| t.check(i)).collect::<Result<_, _>>()?),
            _ => return Err(wrong()),
        })
    }
}

/// One output table of a stage kind; each is its own cache entry with its own key.
#[derive(Clone, Debug)]
pub struct OutputSpec {
    pub name: &'static str,
    /// The table type (`codes`, `pooled`, `split`, …) that inputs check against;
    /// [`TableType::Param`]: the one a parameter names (`table`).
    pub table: TableType,
    pub doc: &'static str,
}

impl Signature {
    pub fn param(&self, name: &str) -> Option<&ParamSpec> {
        self.params.iter().find(|p| p.name == name)
    }

    pub fn input(&self, name: &str) -> Option<&InputSlot> {
        self.inputs.iter().find(|i| i.name == name)
    }

    pub fn output(&self, name: &str) -> Option<&OutputSpec> {
        self.outputs.iter().find(|o| o.name == name)
    }
}

/// A required input that receives one variant per instance.
pub fn input(name: &'static str, accepts: &[TableType], doc: &'static str) -> InputSlot {
    InputSlot { name, accepts: accepts.to_vec(), many: Many::One, required: true, doc }
}

impl InputSlot {
    /// The slot may be left unset.
    pub fn optional(mut self) -> InputSlot {
        self.required = false;
        self
    }

    /// How the slot receives variants (default: [`Many::One`]).
    pub fn many(mut self, many: Many) -> InputSlot {
        self.many = many;
        self
    }
}

impl Signature {
    /// Start a kind's signature: no inputs, parameters or outputs yet, no open parameters, no
    /// fused axes, no hooks. Finish with [`SignatureBuilder::build`].
    #[allow(clippy::new_ret_no_self)] // the builder's entry point: kinds read `Signature::new(…)…build()`
    pub fn new(kind: &'static str, version: u32, doc: &'static str) -> SignatureBuilder {
        SignatureBuilder(Signature {
            kind,
            version,
            doc,
            inputs: vec![],
            params: vec![],
            open_params: false,
            outputs: vec![],
            fuse_axes: vec![],
            validate: None,
            estimate: None,
            check_files: None,
        })
    }
}

/// Builds a [`Signature`]: `Signature::new("split", 1, "…").input(input("from", &[TableType::Dataset],
/// "…")).params::<SplitParams>().output("split", TableType::Split, "…").validate(validate).build()`.
#[must_use]
pub struct SignatureBuilder(Signature);

impl SignatureBuilder {
    /// Add an input slot (see [`input`], [`InputSlot::optional`], [`InputSlot::many`]).
    pub fn input(mut self, slot: InputSlot) -> Self {
        self.0.inputs.push(slot);
        self
    }

    /// Add the parameters of `P`, after those added before.
    pub fn params<P: Params>(mut self) -> Self {
        self.0.params.extend(P::specs());
        self
    }

    /// Accept parameters beyond the declared ones (free-form kinds).
    pub fn open_params(mut self) -> Self {
        self.0.open_params = true;
        self
    }

    /// Add an output table.
    pub fn output(mut self, name: &'static str, table: TableType, doc: &'static str) -> Self {
        self.0.outputs.push(OutputSpec { name, table, doc });
        self
    }

    /// See [`Signature::fuse_axes`].
    pub fn fuse_axes(mut self, axes: &[&'static str]) -> Self {
        self.0.fuse_axes = axes.to_vec();
        self
    }

    /// See [`Signature::validate`].
    pub fn validate(mut self, f: Validate) -> Self {
        self.0.validate = Some(f);
        self
    }

    /// See [`Signature::estimate`].
    pub fn estimate(mut self, f: Estimate) -> Self {
        self.0.estimate = Some(f);
        self
    }

    /// See [`Signature::check_files`].
    pub fn check_files(mut self, f: CheckFiles) -> Self {
        self.0.check_files = Some(f);
        self
    }

    pub fn build(self) -> Signature {
        self.0
    }
}
