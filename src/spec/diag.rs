//! Diagnostics: an error with a place in a pipeline file, rendered like a compiler's.

use std::fmt;

/// A 1-based line/column position in a pipeline file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One problem in a pipeline file: where, in which stage, what, and how to fix it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnostic {
    /// The file as the user named it (never canonicalised, so messages match what they typed).
    pub file: String,
    pub pos: Pos,
    /// The stage the problem belongs to, when there is one.
    pub stage: Option<String>,
    pub message: String,
    /// A suggestion: the closest valid name, the valid choices, or the fix.
    pub help: Option<String>,
    /// The offending source line, for the caret display.
    pub source_line: Option<String>,
}

impl Diagnostic {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic { file: String::new(), pos, stage: None, message: message.into(), help: None, source_line: None }
    }

    pub fn stage(mut self, stage: impl Into<String>) -> Self {
        self.stage = Some(stage.into());
        self
    }

    pub fn help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn help_opt(mut self, help: Option<String>) -> Self {
        if help.is_some() {
            self.help = help;
        }
        self
    }

    /// Attach the file name and the source line the position points at.
    pub fn locate(mut self, file: &str, source: &str) -> Self {
        self.file = file.to_string();
        if self.pos.line > 0 {
            self.source_line = source.lines().nth(self.pos.line - 1).map(str::to_string);
        }
        self
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}: ", self.file, self.pos)?;
        if let Some(stage) = &self.stage {
            write!(f, "stage '{stage}': ")?;
        }
        write!(f, "{}", self.message)?;
        if let Some(line) = &self.source_line {
            let n = self.pos.line.to_string();
            let pad = " ".repeat(n.len());
            let (line, caret) = excerpt(line, self.pos.col.saturating_sub(1));
            let caret_pad: String = line.chars().take(caret).map(|c| if c == '\t' { '\t' } else { ' ' }).collect();
            write!(f, "\n {pad} |\n {n} | {line}\n {pad} | {caret_pad}^")?;
        }
        if let Some(help) = &self.help {
            write!(f, "\n  = help: {help}")?;
        }
        Ok(())
    }
}

/// The part of a source line shown under a diagnostic: the whole line when it is short, else
/// [`EXCERPT`] characters around the caret with `…` where it was cut (a 24 KB matrix line is not
/// printed whole). Returns the text and the caret's character offset in it.
fn excerpt(line: &str, caret: usize) -> (String, usize) {
    let chars: Vec<char> = line.chars().collect();
    if chars.len() <= EXCERPT {
        return (line.to_string(), caret);
    }
    let start = caret.saturating_sub(EXCERPT / 2).min(chars.len().saturating_sub(EXCERPT));
    let end = (start + EXCERPT).min(chars.len());
    let mut text: String = if start > 0 { "…".into() } else { String::new() };
    text.extend(&chars[start..end]);
    if end < chars.len() {
        text.push('…');
    }
    (text, caret - start + usize::from(start > 0))
}

/// The most characters of a source line a diagnostic shows.
const EXCERPT: usize = 100;

/// All problems found in one pipeline file (parsing reports as many as it can at once).
#[derive(Clone, Debug, thiserror::Error)]
pub struct Diagnostics(pub Vec<Diagnostic>);

impl fmt::Display for Diagnostics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, d) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{d}")?;
        }
        if self.0.len() > 1 {
            write!(f, "\n{} problems in the pipeline file", self.0.len())?;
        }
        Ok(())
    }
}

/// "did you mean 'x'?" for the closest candidate, else the list of valid names.
pub fn suggest<'a>(got: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<String> {
    let candidates: Vec<&str> = candidates.into_iter().collect();
    if candidates.is_empty() {
        return None;
    }
    let best = candidates
        .iter()
        .map(|c| (strsim::jaro_winkler(got, c), *c))
        .filter(|(score, _)| *score >= 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)));
    let list = candidates.join(", ");
    Some(match best {
        Some((_, c)) => format!("did you mean '{c}'? valid: {list}"),
        None => format!("valid: {list}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_line_is_cut_around_the_caret() {
        let line = format!("  m: {{n: [{}]}}", (0..5000).map(|i| i.to_string()).collect::<Vec<_>>().join(", "));
        let col = line.find("2500").unwrap() + 1;
        let mut d = Diagnostic::new(Pos { line: 1, col }, "bad value");
        d.file = "p.yaml".into();
        d.source_line = Some(line.clone());
        let text = d.to_string();
        assert!(text.len() < 400, "{} bytes", text.len());
        let lines: Vec<&str> = text.lines().collect();
        let (shown, caret) = (lines[2], lines[3]);
        assert!(shown.contains("…") && shown.contains("2500"), "{shown}");
        // the caret stands under the value's first character
        let at = caret.chars().count() - 1;
        assert_eq!(shown.chars().skip(at).take(4).collect::<String>(), "2500", "{shown}\n{caret}");
        // a short line is shown whole
        d.source_line = Some("  m: {n: [1, 2]}".into());
        d.pos.col = 11;
        assert!(d.to_string().contains(" 1 |   m: {n: [1, 2]}"));
    }

    #[test]
    fn suggests_the_closest_name() {
        let s = suggest("methd", ["method", "seed", "rows"]).unwrap();
        assert!(s.starts_with("did you mean 'method'?"), "{s}");
        let s = suggest("zzz", ["method", "seed"]).unwrap();
        assert_eq!(s, "valid: method, seed");
    }

    #[test]
    fn renders_a_caret_under_the_column() {
        let d = Diagnostic::new(Pos { line: 2, col: 3 }, "unknown key 'x'")
            .stage("pool")
            .help("did you mean 'y'?")
            .locate("p.yaml", "a: 1\n  x: 2\n");
        let text = d.to_string();
        assert!(text.starts_with("p.yaml:2:3: stage 'pool': unknown key 'x'"), "{text}");
        assert!(text.contains(" 2 |   x: 2\n   |   ^"), "{text}");
    }
}
