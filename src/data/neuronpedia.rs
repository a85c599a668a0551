//! Feature explanations as Neuronpedia publishes them: the bulk export's `explanations/batch-N.jsonl.gz`
//! files (one JSON object per line with `modelId`, `layer`, `index` — a string — and `description`,
//! among other fields), a plain `.jsonl`, or a local `.json` (an array of such objects, or a map from
//! feature index to description). Several explanations of one feature: [`pick`] keeps the
//! alphabetically first non-blank description, so the choice does not depend on file order; the
//! live API ([`super::neuronpedia_api`]) applies the same rule to a feature's `explanations` array.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::path::Path;

/// Feature index → explanation, for one Neuronpedia source (`modelId` + `layer`).
#[derive(Debug, Default, Clone)]
pub struct Explanations {
    pub by_feature: BTreeMap<u32, String>,
}

/// `gemma-2b/6-res-jb` → (`gemma-2b`, `6-res-jb`).
pub fn split_source(id: &str) -> Result<(&str, &str), String> {
    id.split_once('/').ok_or_else(|| format!("neuronpedia source '{id}' is not modelId/layer, e.g. gemma-2b/6-res-jb"))
}

/// The explanation kept among several of one feature: the alphabetically first (byte order) of
/// the trimmed descriptions, blank ones ignored; `None` when there is none. Whatever order the
/// files or the API list them in, the same one is kept.
pub fn pick<'a>(descriptions: impl IntoIterator<Item = &'a str>) -> Option<String> {
    descriptions.into_iter().map(str::trim).filter(|d| !d.is_empty()).min().map(str::to_string)
}

impl Explanations {
    /// Read every explanation file under `path` (a file, or a folder of them) for one source.
    pub fn load(path: &Path, source: &str) -> Result<Explanations, String> {
        let (model, layer) = split_source(source)?;
        let mut files = Vec::new();
        if path.is_dir() {
            for e in std::fs::read_dir(path).map_err(|e| format!("{}: {e}", path.display()))?.flatten() {
                let p = e.path();
                let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                if name.ends_with(".jsonl.gz") || name.ends_with(".jsonl") || name.ends_with(".json") {
                    files.push(p);
                }
            }
            files.sort();
        } else {
            files.push(path.to_path_buf());
        }
        let mut all: BTreeMap<u32, Vec<String>> = BTreeMap::new();
        for f in &files {
            let name = f.display().to_string();
            let file = std::fs::File::open(f).map_err(|e| format!("{name}: {e}"))?;
            let reader: Box<dyn Read> = if name.ends_with(".gz") { Box::new(flate2::read::GzDecoder::new(file)) } else { Box::new(file) };
            if name.ends_with(".json") {
                let v: serde_json::Value = serde_json::from_reader(reader).map_err(|e| format!("{name}: not JSON: {e}"))?;
                match v {
                    serde_json::Value::Array(items) => items.iter().for_each(|o| take(o, model, layer, &mut all)),
                    serde_json::Value::Object(map) => {
                        for (k, d) in map {
                            if let (Ok(i), Some(d)) = (k.parse::<u32>(), d.as_str()) {
                                all.entry(i).or_default().push(d.trim().to_string());
                            }
                        }
                    }
                    _ => return Err(format!("{name}: expected an array of explanations or a map from index to description")),
                }
            } else {
                for (n, line) in BufReader::new(reader).lines().enumerate() {
                    let line = line.map_err(|e| format!("{name}: line {}: {e}", n + 1))?;
                    if line.trim().is_empty() {
                        continue;
                    }
                    let o: serde_json::Value = serde_json::from_str(&line).map_err(|e| format!("{name}: line {}: not JSON: {e}", n + 1))?;
                    take(&o, model, layer, &mut all);
                }
            }
        }
        let by_feature = all.into_iter().filter_map(|(i, ds)| pick(ds.iter().map(String::as_str)).map(|d| (i, d))).collect();
        Ok(Explanations { by_feature })
    }
}

fn take(o: &serde_json::Value, model: &str, layer: &str, all: &mut BTreeMap<u32, Vec<String>>) {
    let index = match &o["index"] {
        serde_json::Value::String(s) => s.parse::<u32>().ok(),
        serde_json::Value::Number(n) => n.as_u64().map(|n| n as u32),
        _ => None,
    };
    if o["modelId"].as_str() == Some(model)
        && o["layer"].as_str() == Some(layer)
        && let (Some(i), Some(d)) = (index, o["description"].as_str())
    {
        all.entry(i).or_default().push(d.trim().to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_keeps_the_alphabetically_first_non_blank_description_whatever_the_order() {
        assert_eq!(pick(["  zebra", "", "apple ", "  "]).as_deref(), Some("apple"));
        assert_eq!(pick(["apple", "zebra"]), pick(["zebra", "apple"]));
        assert_eq!(pick(["", " "]), None);
        assert_eq!(pick([]), None);
    }
}
