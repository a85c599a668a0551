//! Cache keys. Key = blake3 over the canonical JSON of: key format, stage kind, the kind's version
//! constant, parameters (defaults filled, sorted; execution-only ones left out), the keys of the
//! inputs (with coordinates for gathering inputs), fingerprints of external inputs, and the
//! output's name. Absolute paths and timestamps never enter it.

use std::collections::BTreeMap;

use serde_json::{Value as J, json};

use super::BoundInput;
use super::signature::Signature;
use crate::spec::Value;

/// Bump when the preimage layout changes: every key changes with it.
pub const KEY_FORMAT: u32 = 1;

/// Hex characters of a key (128 bits).
pub const KEY_LEN: usize = 32;

pub fn preimage(sig: &Signature, params: &BTreeMap<String, Value>, inputs: &[BoundInput], externals: &BTreeMap<String, String>) -> J {
    let params: serde_json::Map<String, J> = params.iter().map(|(k, v)| (k.clone(), v.to_json())).collect();
    let inputs: serde_json::Map<String, J> = inputs
        .iter()
        .map(|b| {
            let v = if b.many {
                J::Array(b.items.iter().map(|it| json!({"coords": crate::spec::canonical_coords(&it.coords), "key": it.key})).collect())
            } else {
                J::String(b.items.first().map(|it| it.key.clone()).unwrap_or_default())
            };
            (b.slot.clone(), v)
        })
        .collect();
    json!({
        "format": KEY_FORMAT,
        "kind": sig.kind,
        "version": sig.version,
        "params": params,
        "inputs": inputs,
        "external": externals,
    })
}

/// The key of one output of an instance.
pub fn output_key(preimage: &J, output: &str) -> String {
    let mut h = blake3::Hasher::new();
    h.update(preimage.to_string().as_bytes());
    h.update(b"\0output=");
    h.update(output.as_bytes());
    h.finalize().to_hex()[..KEY_LEN].to_string()
}

/// A field-by-field description of what differs between two preimages, e.g.
/// `params.method: top5 → top10`, `inputs.from changed`, `version: 1 → 2`.
pub fn diff(old: &J, new: &J) -> Vec<String> {
    let mut out = Vec::new();
    diff_into("", old, new, &mut out);
    out
}

fn short(v: &J) -> String {
    let s = match v {
        J::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.len() > 60 { format!("{}…", &s[..s.char_indices().nth(57).map(|(i, _)| i).unwrap_or(s.len())]) } else { s }
}

fn diff_into(path: &str, old: &J, new: &J, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (J::Object(a), J::Object(b)) => {
            let keys: std::collections::BTreeSet<&String> = a.keys().chain(b.keys()).collect();
            for k in keys {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => diff_into(&p, x, y, out),
                    (None, Some(y)) => out.push(format!("{p}: added ({})", short(y))),
                    (Some(x), None) => out.push(format!("{p}: removed (was {})", short(x))),
                    (None, None) => {}
                }
            }
        }
        _ => out.push(format!("{path}: {} → {}", short(old), short(new))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_the_changed_field() {
        let a = json!({"params": {"method": "top5", "seed": 0}, "version": 1});
        let b = json!({"params": {"method": "top10", "seed": 0}, "version": 1});
        assert_eq!(diff(&a, &b), vec!["params.method: top5 → top10".to_string()]);
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn output_keys_differ_per_output_and_are_stable() {
        let p = json!({"kind": "x"});
        assert_ne!(output_key(&p, "codes"), output_key(&p, "totals"));
        assert_eq!(output_key(&p, "codes"), output_key(&json!({"kind": "x"}), "codes"));
        assert_eq!(output_key(&p, "codes").len(), KEY_LEN);
    }
}
