//! The built-in SAE release table, in the manner of SAELens' `sae_lens/pretrained_saes.yaml`.
//!
//! A release is a Hugging Face repository of SAEs in the SAELens layout; each SAE has an id (how a
//! pipeline names it), a folder in the repository, optionally a Neuronpedia id and an input scale
//! (`norm_scaling_factor`, which is not in the SAE's `cfg.json`). Entries are copied from SAELens
//! 6.x's table (checked against the `6.18.0` tag and the version in `tests/fixtures/sae/`), not
//! from memory: add a release by copying its entry, never by guessing folder names.

/// One SAE of a release.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ReleaseSae {
    /// The id a pipeline uses after `release/` (SAELens' `id`), e.g. `blocks.12.hook_resid_post`.
    pub id: &'static str,
    /// The folder in the repository (SAELens' `path`).
    pub folder: &'static str,
    /// Neuronpedia's id of this SAE (`model/source`), when it has dashboards there.
    pub neuronpedia: Option<&'static str>,
    /// SAELens' `norm_scaling_factor`: the input scale for SAEs trained on normalised activations.
    pub norm_scaling_factor: Option<f64>,
}

/// A release: a repository of SAEs for one model.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Release {
    pub name: &'static str,
    /// The Hugging Face repository (`owner/name`).
    pub repo: &'static str,
    /// The model the SAEs were trained on (TransformerLens name).
    pub model: &'static str,
    pub saes: &'static [ReleaseSae],
}

impl Release {
    /// The SAE with this id.
    pub fn sae(&self, id: &str) -> Option<&'static ReleaseSae> {
        self.saes.iter().find(|s| s.id == id)
    }

    /// The ids, in table order (for error messages).
    pub fn ids(&self) -> Vec<&'static str> {
        self.saes.iter().map(|s| s.id).collect()
    }
}

const fn sae(id: &'static str, folder: &'static str, neuronpedia: Option<&'static str>) -> ReleaseSae {
    ReleaseSae { id, folder, neuronpedia, norm_scaling_factor: None }
}

/// Every built-in release.
pub const RELEASES: &[Release] = &[
    Release {
        name: "gemma-2b-res-jb",
        repo: "jbloom/Gemma-2b-Residual-Stream-SAEs",
        model: "gemma-2b",
        saes: &[
            sae("blocks.0.hook_resid_post", "gemma_2b_blocks.0.hook_resid_post_16384_anthropic", Some("gemma-2b/0-res-jb")),
            sae("blocks.6.hook_resid_post", "gemma_2b_blocks.6.hook_resid_post_16384_anthropic_fast_lr", Some("gemma-2b/6-res-jb")),
            sae("blocks.10.hook_resid_post", "gemma_2b_blocks.10.hook_resid_post_16384", Some("gemma-2b/10-res-jb")),
            ReleaseSae {
                id: "blocks.12.hook_resid_post",
                folder: "gemma_2b_blocks.12.hook_resid_post_16384",
                neuronpedia: Some("gemma-2b/12-res-jb"),
                norm_scaling_factor: Some(0.21381938399317255),
            },
            sae("blocks.17.hook_resid_post", "gemma_2b_blocks.17.hook_resid_post_16384", None),
        ],
    },
    Release {
        name: "gemma-2b-it-res-jb",
        repo: "jbloom/Gemma-2b-IT-Residual-Stream-SAEs",
        model: "gemma-2b-it",
        saes: &[sae("blocks.12.hook_resid_post", "gemma_2b_it_blocks.12.hook_resid_post_16384", Some("gemma-2b-it/12-res-jb"))],
    },
];

/// The release with this name.
pub fn release(name: &str) -> Option<&'static Release> {
    RELEASES.iter().find(|r| r.name == name)
}

/// The release names (for error messages).
pub fn names() -> Vec<&'static str> {
    RELEASES.iter().map(|r| r.name).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::sae::layer_of_hook;

    #[test]
    fn layer_12_has_the_saelens_scale() {
        let s = release("gemma-2b-res-jb").unwrap().sae("blocks.12.hook_resid_post").unwrap();
        assert_eq!(s.norm_scaling_factor, Some(0.21381938399317255));
        assert_eq!(s.folder, "gemma_2b_blocks.12.hook_resid_post_16384");
        let others = release("gemma-2b-res-jb").unwrap().saes.iter().filter(|s| s.id != "blocks.12.hook_resid_post");
        assert!(others.clone().all(|s| s.norm_scaling_factor.is_none()));
    }

    #[test]
    fn folders_and_neuronpedia_ids() {
        let r = release("gemma-2b-res-jb").unwrap();
        assert_eq!(r.repo, "jbloom/Gemma-2b-Residual-Stream-SAEs");
        let rows: Vec<_> = r.saes.iter().map(|s| (s.id, s.folder, s.neuronpedia)).collect();
        assert_eq!(
            rows,
            vec![
                ("blocks.0.hook_resid_post", "gemma_2b_blocks.0.hook_resid_post_16384_anthropic", Some("gemma-2b/0-res-jb")),
                ("blocks.6.hook_resid_post", "gemma_2b_blocks.6.hook_resid_post_16384_anthropic_fast_lr", Some("gemma-2b/6-res-jb")),
                ("blocks.10.hook_resid_post", "gemma_2b_blocks.10.hook_resid_post_16384", Some("gemma-2b/10-res-jb")),
                ("blocks.12.hook_resid_post", "gemma_2b_blocks.12.hook_resid_post_16384", Some("gemma-2b/12-res-jb")),
                ("blocks.17.hook_resid_post", "gemma_2b_blocks.17.hook_resid_post_16384", None),
            ]
        );
        let it = release("gemma-2b-it-res-jb").unwrap();
        assert_eq!(it.repo, "jbloom/Gemma-2b-IT-Residual-Stream-SAEs");
        assert_eq!(it.saes[0].folder, "gemma_2b_it_blocks.12.hook_resid_post_16384");
        assert_eq!(it.saes[0].neuronpedia, Some("gemma-2b-it/12-res-jb"));
        assert_eq!(it.saes[0].norm_scaling_factor, None);
    }

    #[test]
    fn ids_are_unique_and_name_their_layer() {
        for r in RELEASES {
            let mut ids = r.ids();
            ids.sort_unstable();
            ids.dedup();
            assert_eq!(ids.len(), r.saes.len(), "{}", r.name);
            for s in r.saes {
                assert!(layer_of_hook(s.id).is_some(), "{}/{}", r.name, s.id);
                assert!(s.folder.contains(s.id), "{}/{}: folder {}", r.name, s.id, s.folder);
            }
        }
        assert!(release("gemma-2b-res-jbx").is_none());
    }
}
