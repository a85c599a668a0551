//! `kinds`: the stage-kind reference, as text or as the Markdown of docs/kinds.md.

use std::process::ExitCode;

use anyhow::{Result, bail};

use super::*;

pub(super) fn cmd_kinds(registry: &Registry, kind: Option<&str>, markdown: bool) -> Result<ExitCode> {
    let sigs: Vec<_> = registry.signatures().filter(|s| kind.is_none_or(|k| s.kind == k)).collect();
    if sigs.is_empty() {
        let k = kind.unwrap_or_default();
        bail!("unknown kind '{k}'; {}", crate::spec::suggest(k, registry.kinds()).unwrap_or_default());
    }
    if markdown {
        print!("{}", kinds_markdown(&sigs));
        return Ok(ExitCode::SUCCESS);
    }
    for s in sigs {
        println!("{} (version {})\n  {}", s.kind, s.version, s.doc);
        for i in &s.inputs {
            let many = match &i.many {
                Many::One => String::new(),
                Many::All => ", gathers every variant".into(),
                Many::Over(a) => format!(", gathers over {}", a.join(", ")),
            };
            let accepts = if i.accepts.is_empty() {
                "any table".to_string()
            } else {
                i.accepts.iter().map(|t| t.name()).collect::<Vec<_>>().join(" | ")
            };
            println!("  input  {:<12} {accepts}{}{many} — {}", i.name, if i.required { "" } else { ", optional" }, i.doc);
        }
        for p in &s.params {
            let default = p.default.as_ref().map(|d| format!(" = {d}")).unwrap_or_else(|| " (required)".into());
            println!("  param  {:<12} {}{default}{} — {}", p.name, p.ty.describe(), if p.in_key { "" } else { ", not in the key" }, p.doc);
        }
        if s.open_params {
            println!("  param  (any other)  accepted and part of the key");
        }
        for o in &s.outputs {
            println!("  output {:<12} {} table — {}", o.name, o.table, o.doc);
        }
        if !s.fuse_axes.is_empty() {
            println!("  fused over: {}", s.fuse_axes.join(", "));
        }
        println!();
    }
    Ok(ExitCode::SUCCESS)
}

/// The stage-kind reference as Markdown: one section per kind, a table of its inputs, parameters
/// and outputs. Mock kinds come last.
pub(super) fn kinds_markdown(sigs: &[&crate::plan::Signature]) -> String {
    let mut sigs = sigs.to_vec();
    sigs.sort_by_key(|s| (s.kind.starts_with("mock."), s.kind));
    let mut out = String::new();
    for s in sigs {
        out += &format!("#### `{}`\n\n{}", s.kind, s.doc);
        if !s.fuse_axes.is_empty() {
            out += &format!(" Instances that differ only in {} run as one computation.", s.fuse_axes.join(", "));
        }
        out += "\n\n| | name | type | default | meaning |\n|---|---|---|---|---|\n";
        for i in &s.inputs {
            let accepts = if i.accepts.is_empty() {
                "any table".to_string()
            } else {
                i.accepts.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(" or ")
            };
            let many = match &i.many {
                Many::One => "",
                Many::All => ", gathers every variant",
                Many::Over(_) => ", gathers over axes",
            };
            out +=
                &format!("| input | `{}` | {accepts}{many} | {} | {} |\n", i.name, if i.required { "required" } else { "optional" }, i.doc);
        }
        for p in &s.params {
            let default = match &p.default {
                None => "required".to_string(),
                Some(crate::spec::Value::Null) => "unset".to_string(),
                Some(v) => format!("`{v}`"),
            };
            let key = if p.in_key { "" } else { " (not part of the cache key)" };
            out += &format!(
                "| param | `{}` | {} | {default} | {}{key} |\n",
                p.name,
                p.ty.describe().replace('|', "\\|"),
                p.doc.replace('|', "\\|")
            );
        }
        if s.open_params {
            out += "| param | any other | any | | accepted, and part of the cache key |\n";
        }
        for o in &s.outputs {
            let table = match o.table {
                crate::tables::TableType::Param(p) => format!("the `{p}` parameter"),
                t => format!("`{t}`"),
            };
            out += &format!("| output | `{}` | {table} table | | {} |\n", o.name, o.doc.replace('|', "\\|"));
        }
        out += "\n";
    }
    out
}
