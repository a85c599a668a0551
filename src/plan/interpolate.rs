//! `${axis}` in parameter values: a coordinate's value written into strings.

use std::collections::BTreeSet;

use crate::spec::{Coords, Value};

/// Replace `${axis}` in every string; `$${` escapes a literal `${`. A string that is exactly
/// `${axis}` takes the coordinate's typed value (so an inherited `layer` can set an int parameter).
pub(super) fn interpolate(v: &Value, coords: &Coords, used: &mut BTreeSet<String>) -> Result<Value, String> {
    if let Value::Str(s) = v
        && let Some(var) = s.strip_prefix("${").and_then(|r| r.strip_suffix('}'))
        && !var.contains(['$', '{', '}'])
    {
        let var = var.trim();
        let val = coords.get(var).ok_or_else(|| var.to_string())?;
        used.insert(var.to_string());
        return Ok(val.clone());
    }
    Ok(match v {
        Value::Str(s) if s.contains("${") => {
            let mut out = String::new();
            let mut rest = s.as_str();
            while let Some(i) = rest.find("${") {
                if i > 0 && rest.as_bytes()[i - 1] == b'$' {
                    out.push_str(&rest[..i - 1]);
                    out.push_str("${");
                    rest = &rest[i + 2..];
                    continue;
                }
                out.push_str(&rest[..i]);
                let after = &rest[i + 2..];
                let end = after.find('}').ok_or_else(|| after.to_string())?;
                let var = after[..end].trim();
                let val = coords.get(var).ok_or_else(|| var.to_string())?;
                used.insert(var.to_string());
                match val {
                    Value::Str(s) => out.push_str(s),
                    other => out.push_str(&other.to_string()),
                }
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            Value::Str(out)
        }
        Value::List(items) => Value::List(items.iter().map(|i| interpolate(i, coords, used)).collect::<Result<_, _>>()?),
        Value::Map(m) => Value::Map(m.iter().map(|(k, v)| Ok((k.clone(), interpolate(v, coords, used)?))).collect::<Result<_, String>>()?),
        other => other.clone(),
    })
}

/// The byte offset of the first `${` in `s` that no `}` closes (an escaped `$${` is no reference).
/// [`interpolate`] would read the rest of the string as an axis name; the plan reports it first.
pub(super) fn unclosed(s: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find("${").map(|i| i + from) {
        if i > from && s.as_bytes()[i - 1] == b'$' {
            from = i + 2;
            continue;
        }
        match s[i + 2..].find('}') {
            Some(end) => from = i + 2 + end + 1,
            None => return Some(i),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_replaces_axes_and_keeps_escapes() {
        let mut c = Coords::new();
        c.insert("layer".into(), Value::Int(6));
        let mut used = BTreeSet::new();
        let v = interpolate(&Value::Str("blocks.${layer}.hook $${x}".into()), &c, &mut used).unwrap();
        assert_eq!(v, Value::Str("blocks.6.hook ${x}".into()));
        assert_eq!(
            interpolate(&Value::Str("${layer}".into()), &c, &mut used).unwrap(),
            Value::Int(6),
            "a whole-string reference keeps its type"
        );
        assert!(used.contains("layer"));
        assert_eq!(interpolate(&Value::Str("${nope}".into()), &c, &mut used), Err("nope".into()));
    }

    #[test]
    fn an_unclosed_reference_is_found_and_an_escaped_one_is_not() {
        assert_eq!(unclosed("${a"), Some(0));
        assert_eq!(unclosed("x.${layer}.${a"), Some(11));
        assert_eq!(unclosed("$${a"), None);
        assert_eq!(unclosed("cost: $$${a} and ${b"), Some(17));
        assert_eq!(unclosed("${a}"), None);
        assert_eq!(unclosed("plain $ and { and }"), None);
    }
}
