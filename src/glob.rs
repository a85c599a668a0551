//! Tiny glob for instance ids: `*` any run, `?` one character, everything else literal.
//! (Instance ids contain `[`, `]` and `=`, which full glob syntax would treat as classes.)

pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == '*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn matches_ids_with_brackets_literally() {
        assert!(glob_match("probe*", "probe[layer=10,pool=top5]"));
        assert!(glob_match("probe[layer=10*", "probe[layer=10,pool=top5]"));
        assert!(!glob_match("probe[layer=1]", "probe[layer=10]"));
        assert!(glob_match("*[layer=?]", "pool[layer=6]"));
        assert!(glob_match("pool", "pool"));
        assert!(!glob_match("pool", "pooled"));
    }
}
