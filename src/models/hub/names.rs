//! Names on the hub: repository ids, revisions and paths checked so that no name escapes the
//! cache, the commit-sha test, and how errors name a file.

use super::HubError;

/// How errors name a file: `owner/name@revision[/path]`.
pub(super) fn reference(repo: &str, revision: &str, path: &str) -> String {
    if path.is_empty() { format!("{repo}@{revision}") } else { format!("{repo}@{revision}/{path}") }
}

pub(super) fn is_commit_sha(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// `owner/name` with the hub's characters.
pub fn check_repo(repo: &str) -> Result<(), HubError> {
    let ok_part = |p: &str| {
        !p.is_empty()
            && p != "."
            && p != ".."
            && !p.starts_with('-')
            && p.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    };
    match repo.split_once('/') {
        Some((owner, name)) if ok_part(owner) && ok_part(name) => Ok(()),
        _ => Err(HubError::BadName {
            reference: repo.into(),
            reason: "expected a repository id owner/name (letters, digits, '-', '_', '.')".into(),
        }),
    }
}

/// A relative path without `.` or `..` segments, empty segments or a leading `/`.
pub(super) fn check_relative(path: &str, reference: &str, what: &str) -> Result<(), HubError> {
    let bad =
        path.is_empty() || path.starts_with('/') || path.contains('\\') || path.split('/').any(|s| s.is_empty() || s == ".." || s == ".");
    if bad {
        return Err(HubError::BadName {
            reference: reference.into(),
            reason: format!("{what} {path:?} must be a relative path without '.', '..' or empty segments"),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::models::hub::{HubCache, HubError};

    #[test]
    fn rejects_names_that_escape_the_cache() {
        let cache = HubCache::at("/nowhere");
        assert!(matches!(cache.file("o/r", "main", "../x"), Err(HubError::BadName { .. })));
        assert!(matches!(cache.file("o/r", "../../x", "f"), Err(HubError::BadName { .. })));
        assert!(matches!(cache.file("o", "main", "f"), Err(HubError::BadName { .. })));
        assert!(matches!(cache.file("o/r/s", "main", "f"), Err(HubError::BadName { .. })));
        assert!(matches!(cache.file("../r", "main", "f"), Err(HubError::BadName { .. })));
    }
}
