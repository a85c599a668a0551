//! [`HubCache::from_env`]: the cache, endpoint, token and switches from the variables Python's
//! `huggingface_hub` reads.
//!
//! `<cache>` is `HF_HUB_CACHE`, else `HUGGINGFACE_HUB_CACHE`, else `HF_HOME/hub`, else
//! `XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub` — the order of
//! `huggingface_hub.constants`. `HF_ENDPOINT` (default `https://huggingface.co`),
//! `HF_HUB_OFFLINE` / `TRANSFORMERS_OFFLINE` (no request at all; a file not cached is an error
//! that says how to fetch it), `HF_TOKEN` / `HUGGING_FACE_HUB_TOKEN`, else the token file
//! (`HF_TOKEN_PATH`, else `$HF_HOME/token`; not with `HF_HUB_DISABLE_IMPLICIT_TOKEN`),
//! `HF_HUB_DISABLE_SYMLINKS` (the snapshot holds the file itself), `HF_HUB_ETAG_TIMEOUT` and
//! `HF_HUB_DOWNLOAD_TIMEOUT` (seconds, default 10).

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{DEFAULT_ENDPOINT, HubCache, HubError, clean_token};

/// `huggingface_hub.constants._is_true`.
fn is_true(value: Option<String>) -> bool {
    value.is_some_and(|v| matches!(v.to_ascii_uppercase().as_str(), "1" | "ON" | "YES" | "TRUE"))
}

impl HubCache {
    /// The cache, endpoint, token and switches Python's `huggingface_hub` would use in this
    /// environment.
    pub fn from_env() -> Result<HubCache, HubError> {
        HubCache::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    /// [`HubCache::from_env`] over any variable lookup (for tests). Reads the token file.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<HubCache, HubError> {
        let home = var("HOME");
        let expand = |p: String| -> PathBuf {
            match (p.strip_prefix("~/"), &home) {
                (Some(rest), Some(h)) => Path::new(h).join(rest),
                _ => PathBuf::from(p),
            }
        };
        let hf_home = || -> Result<PathBuf, HubError> {
            Ok(match var("HF_HOME") {
                Some(p) => expand(p),
                None => match var("XDG_CACHE_HOME") {
                    Some(p) => expand(p).join("huggingface"),
                    None => Path::new(&home.clone().ok_or(HubError::NoHome)?).join(".cache").join("huggingface"),
                },
            })
        };
        let root = match var("HF_HUB_CACHE").or_else(|| var("HUGGINGFACE_HUB_CACHE")) {
            Some(p) => expand(p),
            None => hf_home()?.join("hub"),
        };
        let mut cache = HubCache::at(root);
        cache.offline = is_true(var("HF_HUB_OFFLINE").or_else(|| var("TRANSFORMERS_OFFLINE")));
        cache.endpoint = var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.into()).trim_end_matches('/').to_string();
        cache.symlinks = cfg!(unix) && !is_true(var("HF_HUB_DISABLE_SYMLINKS"));
        let seconds = |name: &str| var(name).and_then(|v| v.trim().parse::<u64>().ok()).filter(|&s| s > 0).map(Duration::from_secs);
        cache.etag_timeout = seconds("HF_HUB_ETAG_TIMEOUT").unwrap_or(cache.etag_timeout);
        cache.download_timeout = seconds("HF_HUB_DOWNLOAD_TIMEOUT").unwrap_or(cache.download_timeout);
        // `get_token`: the environment, then the token file `huggingface-cli login` writes.
        cache.token = match var("HF_TOKEN").or_else(|| var("HUGGING_FACE_HUB_TOKEN")) {
            Some(t) => clean_token(&t),
            None if is_true(var("HF_HUB_DISABLE_IMPLICIT_TOKEN")) => None,
            None => {
                let path = match var("HF_TOKEN_PATH") {
                    Some(p) => Some(expand(p)),
                    None => hf_home().ok().map(|h| h.join("token")),
                };
                path.and_then(|p| std::fs::read_to_string(p).ok()).and_then(|t| clean_token(&t))
            }
        };
        Ok(cache)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::hub::mock::vars;

    #[test]
    fn cache_location_follows_huggingface_hub() {
        let at = |pairs: &[(&str, &str)]| HubCache::from_vars(vars(pairs)).unwrap().root().to_path_buf();
        assert_eq!(at(&[("HOME", "/h")]), PathBuf::from("/h/.cache/huggingface/hub"));
        assert_eq!(at(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x")]), PathBuf::from("/x/huggingface/hub"));
        assert_eq!(at(&[("HOME", "/h"), ("XDG_CACHE_HOME", "/x"), ("HF_HOME", "~/hf")]), PathBuf::from("/h/hf/hub"));
        assert_eq!(at(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/old")]), PathBuf::from("/old"));
        assert_eq!(at(&[("HF_HOME", "/hf"), ("HUGGINGFACE_HUB_CACHE", "/old"), ("HF_HUB_CACHE", "/new")]), PathBuf::from("/new"));
        assert!(matches!(HubCache::from_vars(vars(&[])), Err(HubError::NoHome)));
    }

    #[test]
    fn the_environment_sets_endpoint_token_and_switches() {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path().to_string_lossy().to_string();
        std::fs::create_dir_all(dir.path().join(".cache/huggingface")).unwrap();
        std::fs::write(dir.path().join(".cache/huggingface/token"), "  from-file\r\n").unwrap();
        std::fs::write(dir.path().join("other-token"), "from-path").unwrap();
        let token = |pairs: &[(&str, &str)]| {
            let mut all = vec![("HOME", home.as_str())];
            all.extend_from_slice(pairs);
            HubCache::from_vars(vars(&all)).unwrap().token.map(|t| t.0)
        };
        assert_eq!(token(&[]).as_deref(), Some("from-file"));
        assert_eq!(token(&[("HF_TOKEN", "hf_env")]).as_deref(), Some("hf_env"));
        assert_eq!(token(&[("HUGGING_FACE_HUB_TOKEN", "old_env")]).as_deref(), Some("old_env"));
        assert_eq!(token(&[("HF_TOKEN_PATH", "~/other-token")]).as_deref(), Some("from-path"));
        assert_eq!(token(&[("HF_HOME", "/nowhere")]), None);
        assert_eq!(token(&[("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1")]), None);
        assert_eq!(token(&[("HF_HUB_DISABLE_IMPLICIT_TOKEN", "1"), ("HF_TOKEN", "hf_env")]).as_deref(), Some("hf_env"));

        let cache = HubCache::from_vars(vars(&[("HOME", &home)])).unwrap();
        assert_eq!((cache.endpoint(), cache.is_offline(), cache.symlinks), (DEFAULT_ENDPOINT, false, true));
        let cache = HubCache::from_vars(vars(&[
            ("HOME", &home),
            ("HF_ENDPOINT", "https://mirror.example/hf/"),
            ("HF_HUB_DISABLE_SYMLINKS", "1"),
            ("HF_HUB_ETAG_TIMEOUT", "3"),
            ("HF_HUB_DOWNLOAD_TIMEOUT", "60"),
        ]))
        .unwrap();
        assert_eq!(cache.endpoint(), "https://mirror.example/hf");
        assert_eq!(cache.resolve_url("o/r", "main", "a b/c.json"), "https://mirror.example/hf/o/r/resolve/main/a%20b/c.json");
        assert!(!cache.symlinks);
        assert_eq!((cache.etag_timeout, cache.download_timeout), (Duration::from_secs(3), Duration::from_secs(60)));
        assert!(HubCache::at("/x").is_offline(), "at() never makes requests");
    }
}
