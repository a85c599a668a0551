//! Plan-time checks of an SAE against the model and tap it will read: [`check_against_model`],
//! [`check_against_tap`] and the [`SaeWarning`]s they return.

use std::fmt;

use super::{SaeConfig, SaeError, layer_of_hook};

/// A plan-time finding that does not stop a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaeWarning {
    /// The SAE was trained on another layer than the one it is applied to.
    LayerMismatch { hook_layer: usize, hook_name: Option<String>, tap_layer: usize },
    /// The cfg does not say which layer the SAE was trained on.
    UnknownLayer { tap_layer: usize },
    /// The SAE reads another point of the residual stream than the tap, where one of the two is a
    /// `hook_resid_pre` (`blocks.L.hook_resid_pre` is `blocks.(L−1).hook_resid_post`).
    PointMismatch { hook_name: String, tap: String, fix: String },
}

impl fmt::Display for SaeWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SaeWarning::LayerMismatch { hook_layer, hook_name, tap_layer } => {
                let hook = hook_name.as_deref().map(|h| format!(" ({h})")).unwrap_or_default();
                write!(
                    f,
                    "sae hook layer {hook_layer}{hook} differs from the tapped layer {tap_layer}: its features are read off \
                     a residual stream it was not trained on; tap layer {hook_layer} unless this is intended"
                )
            }
            SaeWarning::UnknownLayer { tap_layer } => {
                write!(f, "sae cfg.json names no hook layer (hook_name/hook_layer); cannot check it against the tapped layer {tap_layer}")
            }
            SaeWarning::PointMismatch { hook_name, tap, fix } => write!(
                f,
                "sae was trained on {hook_name} but the stage reads {tap}, another point of the residual stream: its features \
                 are read off activations it was not trained on; {fix} unless this is intended (the MOSAIC authors' \
                 reading, hidden_states[L] for the blocks.L.hook_resid_post SAE, is `hook: resid_pre` on purpose)"
            ),
        }
    }
}

/// Plan-time check of an SAE against the model it will read (no weights needed): `d_in` must
/// equal the model's hidden size, a needed input scale must be known, and a hook layer other than
/// the tapped one is a warning. `subject` names the SAE in errors. The tap is block `tap_layer`'s
/// output (`hook_resid_post`); [`check_against_tap`] for either point.
pub fn check_against_model(cfg: &SaeConfig, width: usize, tap_layer: usize, subject: &str) -> Result<Vec<SaeWarning>, SaeError> {
    check_against_tap(cfg, width, tap_layer, false, subject)
}

/// [`check_against_model`] for a tap at block `tap_layer`'s input (`tap_pre`, `hook_resid_pre`) or
/// output. Positions on the residual stream are compared, so `blocks.11.hook_resid_post` matches a
/// `resid_pre` tap of block 12.
pub fn check_against_tap(
    cfg: &SaeConfig,
    width: usize,
    tap_layer: usize,
    tap_pre: bool,
    subject: &str,
) -> Result<Vec<SaeWarning>, SaeError> {
    if cfg.d_in != width {
        return Err(SaeError::Width { d_in: cfg.d_in, width });
    }
    cfg.effective_input_scale(subject)?;
    let tap_position = if tap_pre { tap_layer } else { tap_layer + 1 };
    let tap_name = format!("blocks.{tap_layer}.hook_resid_{}", if tap_pre { "pre" } else { "post" });
    let sae_position = cfg.hook_name.as_deref().and_then(stream_position);
    Ok(match (sae_position, cfg.hook_layer) {
        (Some(position), Some(layer)) if position != tap_position => {
            let post = cfg.hook_name.as_deref().is_some_and(|h| h.ends_with("hook_resid_post"));
            if post && !tap_pre {
                vec![SaeWarning::LayerMismatch { hook_layer: layer, hook_name: cfg.hook_name.clone(), tap_layer }]
            } else {
                // the SAE's own hook, in the stage's terms
                let fix = format!("tap `layer: {layer}` with `hook: resid_{}`", if post { "post" } else { "pre" });
                vec![SaeWarning::PointMismatch { hook_name: cfg.hook_name.clone().unwrap_or_default(), tap: tap_name, fix }]
            }
        }
        (Some(_), _) => vec![],
        (None, Some(layer)) if layer != tap_layer => {
            vec![SaeWarning::LayerMismatch { hook_layer: layer, hook_name: cfg.hook_name.clone(), tap_layer }]
        }
        (None, Some(_)) => vec![],
        (None, None) => vec![SaeWarning::UnknownLayer { tap_layer }],
    })
}

/// Where a residual-stream hook reads, as the number of blocks applied before it:
/// `blocks.L.hook_resid_pre` → L, `blocks.L.hook_resid_post` → L + 1; other hooks → `None`.
pub fn stream_position(hook_name: &str) -> Option<usize> {
    let layer = layer_of_hook(hook_name)?;
    if hook_name.ends_with("hook_resid_pre") {
        Some(layer)
    } else if hook_name.ends_with("hook_resid_post") {
        Some(layer + 1)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::sae::config::tests::pre6;

    #[test]
    fn taps_compare_stream_positions() {
        let post12 = SaeConfig::from_json(
            &pre6()
                .replace("blocks.6.hook_resid_post", "blocks.12.hook_resid_post")
                .replace("\"hook_point_layer\": 6", "\"hook_point_layer\": 12"),
        )
        .unwrap();
        assert_eq!(stream_position("blocks.12.hook_resid_post"), Some(13));
        assert_eq!(stream_position("blocks.12.hook_resid_pre"), Some(12));
        assert_eq!(stream_position("blocks.12.hook_mlp_out"), None);
        // the spec's reading: the output of block 12
        assert!(check_against_tap(&post12, 4, 12, false, "s").unwrap().is_empty());
        // the same stream, named from the next block's input
        assert!(check_against_tap(&post12, 4, 13, true, "s").unwrap().is_empty());
        // the MOSAIC authors' reading, hidden_states[12] = the input of block 12: warned, with the fix
        let w = check_against_tap(&post12, 4, 12, true, "s").unwrap();
        assert!(matches!(&w[..], [SaeWarning::PointMismatch { .. }]), "{w:?}");
        let text = w[0].to_string();
        assert!(text.starts_with("sae was trained on blocks.12.hook_resid_post but the stage reads blocks.12.hook_resid_pre"), "{text}");
        assert!(text.contains("tap `layer: 12` with `hook: resid_post`") && text.contains("MOSAIC"), "{text}");
        // a resid_pre SAE tapped at a block's output
        let pre5 = SaeConfig::from_json(
            &pre6()
                .replace("blocks.6.hook_resid_post", "blocks.5.hook_resid_pre")
                .replace("\"hook_point_layer\": 6", "\"hook_point_layer\": 5"),
        )
        .unwrap();
        assert!(check_against_tap(&pre5, 4, 4, false, "s").unwrap().is_empty());
        let w = check_against_tap(&pre5, 4, 5, false, "s").unwrap();
        assert!(w[0].to_string().contains("tap `layer: 5` with `hook: resid_pre`"), "{}", w[0]);
    }

    #[test]
    fn check_against_model_width_and_layer() {
        let cfg = SaeConfig::from_json(pre6()).unwrap();
        let err = check_against_model(&cfg, 2, 6, "s").unwrap_err().to_string();
        assert_eq!(
            err,
            "sae d_in 4 but the model's hidden size is 2: this SAE was trained on another model's residual stream; \
             pick an SAE whose d_in is 2"
        );
        assert_eq!(check_against_model(&cfg, 4, 6, "s").unwrap(), vec![]);
        let warnings = check_against_model(&cfg, 4, 10, "s").unwrap();
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].to_string().starts_with("sae hook layer 6 (blocks.6.hook_resid_post) differs from the tapped layer 10"));
    }
}
