//! Finding and reading SAEs: references → [`SaeSpec`] → `cfg.json` + `sae_weights.safetensors`.
//!
//! A pipeline names an SAE in one of three ways ([`SaeRef::parse`]):
//!
//! - `release/sae_id` from the built-in table ([`super::releases`]), e.g.
//!   `gemma-2b-res-jb/blocks.12.hook_resid_post`;
//! - `hf://owner/repo[@revision]/folder` (revision defaults to `main`);
//! - a local folder in the same layout (anything else; `./name` forces a local folder whose first
//!   segment happens to be a release name).
//!
//! [`resolve`] turns a reference and an optional `input_scale:` parameter into a [`SaeSpec`]
//! (pure, no I/O); [`locate`] finds the folder (the hub cache for hub SAEs); [`read_config`] reads
//! only `cfg.json` (cheap, for `plan`); [`load`] builds the [`Sae`].

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::VarBuilder;

use super::hub::{self, HubCache, HubError};
use super::releases;
use super::sae::{Sae, SaeConfig, SaeError, layer_of_hook, without_backtrace};

/// The SAELens file names.
pub const CFG_FILE: &str = "cfg.json";
pub const WEIGHTS_FILE: &str = "sae_weights.safetensors";

/// An SAE as a pipeline names it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaeRef {
    Release { release: String, sae_id: String },
    Hub { repo: String, revision: String, folder: String },
    Local(PathBuf),
}

/// Where an SAE's folder is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaeSource {
    /// A folder of a hub repository (`folder` may be empty: the repository root).
    Hub {
        repo: String,
        revision: String,
        folder: String,
    },
    Local(PathBuf),
}

impl fmt::Display for SaeSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaeSource::Hub { repo, revision, folder } if folder.is_empty() => write!(f, "hf://{repo}@{revision}"),
            SaeSource::Hub { repo, revision, folder } => write!(f, "hf://{repo}@{revision}/{folder}"),
            SaeSource::Local(path) => write!(f, "{}", path.display()),
        }
    }
}

/// Where an input scale came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleSource {
    /// The release table's `norm_scaling_factor`.
    Release,
    /// The stage's `input_scale:` parameter (wins over the release table).
    Parameter,
}

/// A resolved SAE reference: everything known before reading any file.
#[derive(Clone, Debug, PartialEq)]
pub struct SaeSpec {
    pub source: SaeSource,
    /// `release/sae_id` when it came from the table.
    pub release: Option<(String, String)>,
    pub input_scale: Option<(f64, ScaleSource)>,
    pub neuronpedia_id: Option<String>,
    /// From the release id (`blocks.N.…`); for other references read `cfg.json`.
    pub hook_layer: Option<usize>,
}

impl SaeSpec {
    /// How errors name this SAE: `gemma-2b-res-jb/blocks.12.hook_resid_post`, `hf://…`, a path.
    pub fn subject(&self) -> String {
        match &self.release {
            Some((release, id)) => format!("{release}/{id}"),
            None => self.source.to_string(),
        }
    }
}

/// Errors of finding and reading SAEs.
#[derive(Debug, thiserror::Error)]
pub enum SaeLoadError {
    /// A reference that names nothing.
    #[error("sae reference '{reference}': {reason}")]
    Reference { reference: String, reason: String },
    #[error("{subject}: {source}")]
    Config { subject: String, source: SaeError },
    #[error("{subject}: {}: {source}", path.display())]
    Io { subject: String, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Hub(#[from] HubError),
    #[error(transparent)]
    Sae(#[from] SaeError),
}

impl SaeRef {
    /// Parse a reference (see the module docs). Pure: a local path is not checked here.
    pub fn parse(text: &str) -> Result<SaeRef, SaeLoadError> {
        let bad = |reason: String| SaeLoadError::Reference { reference: text.into(), reason };
        let text_trimmed = text.trim();
        if text_trimmed.is_empty() {
            return Err(bad("empty; expected release/sae_id, hf://owner/repo[@revision]/folder or a folder".into()));
        }
        if let Some(rest) = text_trimmed.strip_prefix("hf://") {
            let mut parts = rest.splitn(3, '/');
            let owner = parts.next().unwrap_or("");
            let name_rev = parts.next().unwrap_or("");
            let folder = parts.next().unwrap_or("").trim_end_matches('/').to_string();
            let (name, revision) = match name_rev.split_once('@') {
                Some((name, rev)) => (name, rev.to_string()),
                None => (name_rev, "main".to_string()),
            };
            let repo = format!("{owner}/{name}");
            hub::check_repo(&repo).map_err(|e| bad(format!("{e}; expected hf://owner/repo[@revision]/folder")))?;
            if revision.is_empty() {
                return Err(bad("empty revision after '@'; write hf://owner/repo@main/folder or drop the '@'".into()));
            }
            if folder.split('/').any(|s| s == "..") || folder.contains("//") {
                return Err(bad(format!("folder {folder:?} must not contain '..' or empty segments")));
            }
            return Ok(SaeRef::Hub { repo, revision, folder });
        }
        if let Some((head, id)) = text_trimmed.split_once('/')
            && let Some(release) = releases::release(head)
        {
            if release.sae(id).is_none() {
                return Err(bad(format!(
                    "release {} has no SAE '{id}'; its ids: {}{}",
                    release.name,
                    release.ids().join(", "),
                    did_you_mean(id, &release.ids())
                )));
            }
            return Ok(SaeRef::Release { release: release.name.into(), sae_id: id.into() });
        }
        Ok(SaeRef::Local(PathBuf::from(text_trimmed)))
    }
}

fn did_you_mean(word: &str, choices: &[&str]) -> String {
    choices
        .iter()
        .map(|c| (strsim::jaro_winkler(word, c), *c))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| format!(" (did you mean '{c}'?)"))
        .unwrap_or_default()
}

/// Resolve a reference with an optional `input_scale:` parameter. Pure.
pub fn resolve(reference: &str, input_scale: Option<f64>) -> Result<SaeSpec, SaeLoadError> {
    let parameter = input_scale.map(|s| (s, ScaleSource::Parameter));
    Ok(match SaeRef::parse(reference)? {
        SaeRef::Release { release, sae_id } => {
            let rel = releases::release(&release).ok_or_else(|| SaeLoadError::Reference {
                reference: reference.into(),
                reason: format!("unknown release; known: {}", releases::names().join(", ")),
            })?;
            let entry = rel.sae(&sae_id).ok_or_else(|| SaeLoadError::Reference {
                reference: reference.into(),
                reason: format!("release {release} has no SAE '{sae_id}'"),
            })?;
            SaeSpec {
                source: SaeSource::Hub { repo: rel.repo.into(), revision: "main".into(), folder: entry.folder.into() },
                input_scale: parameter.or(entry.norm_scaling_factor.map(|s| (s, ScaleSource::Release))),
                neuronpedia_id: entry.neuronpedia.map(String::from),
                hook_layer: layer_of_hook(entry.id),
                release: Some((release, sae_id)),
            }
        }
        SaeRef::Hub { repo, revision, folder } => SaeSpec {
            source: SaeSource::Hub { repo, revision, folder },
            release: None,
            input_scale: parameter,
            neuronpedia_id: None,
            hook_layer: None,
        },
        SaeRef::Local(path) => {
            SaeSpec { source: SaeSource::Local(path), release: None, input_scale: parameter, neuronpedia_id: None, hook_layer: None }
        }
    })
}

/// The SAE's folder on this machine, and the hub commit when it came from the hub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    pub dir: PathBuf,
    pub commit: Option<String>,
}

/// Find the SAE's folder: a local folder as given, a hub folder in the cache (both files must be
/// there).
pub fn locate(spec: &SaeSpec, cache: &HubCache) -> Result<Located, SaeLoadError> {
    match &spec.source {
        SaeSource::Local(dir) => {
            if !dir.join(CFG_FILE).is_file() {
                let hint = if dir.is_dir() {
                    format!("the folder has no {CFG_FILE}; an SAELens SAE folder holds {CFG_FILE} and {WEIGHTS_FILE}")
                } else {
                    format!(
                        "no such folder; name a local SAELens folder, hf://owner/repo/folder, or release/sae_id with a \
                         release of: {}",
                        releases::names().join(", ")
                    )
                };
                return Err(SaeLoadError::Reference { reference: dir.display().to_string(), reason: hint });
            }
            Ok(Located { dir: dir.clone(), commit: None })
        }
        SaeSource::Hub { repo, revision, folder } => {
            let join = |file: &str| if folder.is_empty() { file.to_string() } else { format!("{folder}/{file}") };
            let cfg = cache.file(repo, revision, &join(CFG_FILE))?;
            let weights = cache.file(repo, revision, &join(WEIGHTS_FILE))?;
            let dir = cfg.path.parent().map(Path::to_path_buf).unwrap_or_default();
            debug_assert_eq!(weights.path.parent(), Some(dir.as_path()));
            Ok(Located { dir, commit: Some(cfg.commit) })
        }
    }
}

/// Read and check `cfg.json` and attach the spec's input scale. Cheap: no weights.
/// Errors when the cfg asks for a scale nobody gave, or a scale is given for an SAE that does not
/// take one (a release-table scale for such an SAE is dropped, as SAELens drops it).
pub fn read_config(spec: &SaeSpec, dir: &Path) -> Result<SaeConfig, SaeLoadError> {
    let subject = spec.subject();
    let path = dir.join(CFG_FILE);
    let text = std::fs::read_to_string(&path).map_err(|source| SaeLoadError::Io { subject: subject.clone(), path, source })?;
    let cfg = SaeConfig::from_json(&text).map_err(|source| SaeLoadError::Config { subject: subject.clone(), source })?;
    let scale = match (spec.input_scale, cfg.normalize) {
        (Some((_, ScaleSource::Release)), super::sae::Normalization::None) => None,
        (scale, _) => scale.map(|(s, _)| s),
    };
    let cfg = cfg.with_input_scale(scale, &subject)?;
    cfg.effective_input_scale(&subject)?;
    Ok(cfg)
}

/// Read `cfg.json` and `sae_weights.safetensors` from `dir` and build the SAE on `device` (f32).
pub fn load(spec: &SaeSpec, dir: &Path, device: &Device) -> Result<(SaeConfig, Sae), SaeLoadError> {
    let cfg = read_config(spec, dir)?;
    let path = dir.join(WEIGHTS_FILE);
    let bytes = std::fs::read(&path).map_err(|source| SaeLoadError::Io { subject: spec.subject(), path: path.clone(), source })?;
    let tensors: HashMap<String, candle_core::Tensor> =
        candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| SaeLoadError::Io {
            subject: spec.subject(),
            path: path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, without_backtrace(e)),
        })?;
    let vb = VarBuilder::from_tensors(tensors, DType::F32, device);
    let sae = Sae::new(&cfg, vb).map_err(|source| SaeLoadError::Config { subject: spec.subject(), source })?;
    Ok((cfg, sae))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        assert_eq!(
            SaeRef::parse("gemma-2b-res-jb/blocks.12.hook_resid_post").unwrap(),
            SaeRef::Release { release: "gemma-2b-res-jb".into(), sae_id: "blocks.12.hook_resid_post".into() }
        );
        assert_eq!(
            SaeRef::parse("hf://jbloom/Gemma-2b-Residual-Stream-SAEs@abc123/gemma_2b_blocks.10.hook_resid_post_16384").unwrap(),
            SaeRef::Hub {
                repo: "jbloom/Gemma-2b-Residual-Stream-SAEs".into(),
                revision: "abc123".into(),
                folder: "gemma_2b_blocks.10.hook_resid_post_16384".into()
            }
        );
        assert_eq!(
            SaeRef::parse("hf://o/r/a/b/").unwrap(),
            SaeRef::Hub { repo: "o/r".into(), revision: "main".into(), folder: "a/b".into() }
        );
        assert_eq!(SaeRef::parse("hf://o/r").unwrap(), SaeRef::Hub { repo: "o/r".into(), revision: "main".into(), folder: "".into() });
        assert_eq!(SaeRef::parse("saes/layer6").unwrap(), SaeRef::Local("saes/layer6".into()));
        assert_eq!(SaeRef::parse("/abs/sae").unwrap(), SaeRef::Local("/abs/sae".into()));
    }

    #[test]
    fn reference_errors() {
        let err = SaeRef::parse("gemma-2b-res-jb/blocks.11.hook_resid_post").unwrap_err().to_string();
        assert!(
            err.starts_with(
                "sae reference 'gemma-2b-res-jb/blocks.11.hook_resid_post': release gemma-2b-res-jb has no SAE \
                 'blocks.11.hook_resid_post'; its ids: blocks.0.hook_resid_post, blocks.6.hook_resid_post"
            ),
            "{err}"
        );
        assert!(err.contains("(did you mean"), "{err}");
        assert!(SaeRef::parse("hf://o").is_err());
        assert!(SaeRef::parse("hf://o/r@/f").is_err());
        assert!(SaeRef::parse("hf://o/r/../x").is_err());
        assert!(SaeRef::parse("  ").is_err());
    }

    #[test]
    fn resolves_releases_with_scale_and_ids() {
        let spec = resolve("gemma-2b-res-jb/blocks.12.hook_resid_post", None).unwrap();
        assert_eq!(
            spec.source,
            SaeSource::Hub {
                repo: "jbloom/Gemma-2b-Residual-Stream-SAEs".into(),
                revision: "main".into(),
                folder: "gemma_2b_blocks.12.hook_resid_post_16384".into()
            }
        );
        assert_eq!(spec.input_scale, Some((0.21381938399317255, ScaleSource::Release)));
        assert_eq!(spec.neuronpedia_id.as_deref(), Some("gemma-2b/12-res-jb"));
        assert_eq!(spec.hook_layer, Some(12));
        assert_eq!(spec.subject(), "gemma-2b-res-jb/blocks.12.hook_resid_post");

        let spec = resolve("gemma-2b-res-jb/blocks.12.hook_resid_post", Some(0.3)).unwrap();
        assert_eq!(spec.input_scale, Some((0.3, ScaleSource::Parameter)), "the parameter wins");

        let spec = resolve("gemma-2b-res-jb/blocks.17.hook_resid_post", None).unwrap();
        assert_eq!((spec.input_scale, spec.neuronpedia_id, spec.hook_layer), (None, None, Some(17)));

        let spec = resolve("gemma-2b-it-res-jb/blocks.12.hook_resid_post", None).unwrap();
        assert_eq!(spec.neuronpedia_id.as_deref(), Some("gemma-2b-it/12-res-jb"));
        assert_eq!(
            spec.source.to_string(),
            "hf://jbloom/Gemma-2b-IT-Residual-Stream-SAEs@main/gemma_2b_it_blocks.12.hook_resid_post_16384"
        );

        let spec = resolve("some/dir", Some(2.0)).unwrap();
        assert_eq!(spec.source, SaeSource::Local("some/dir".into()));
        assert_eq!(spec.input_scale, Some((2.0, ScaleSource::Parameter)));
        assert_eq!(spec.hook_layer, None);
    }

    #[test]
    fn locate_explains_a_missing_local_folder() {
        let spec = resolve("no/such/sae/folder", None).unwrap();
        let err = locate(&spec, &HubCache::at("/nowhere")).unwrap_err().to_string();
        assert!(err.starts_with("sae reference 'no/such/sae/folder': no such folder;"), "{err}");
        assert!(err.contains("gemma-2b-res-jb"), "{err}");
    }
}
