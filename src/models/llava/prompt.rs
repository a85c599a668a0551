//! The prompt every image is run with: the chat template rendered around the question, the single
//! `<image>` expanded into one token per image feature, tokenized once per run.
//!
//! Positions come from token ids, never from constants: the image tokens are the run of
//! `image_token_index`, and the End-of-Image (EoI) token is the first token after that run (or,
//! as an option, the run's last token). The rendered template carries its own `<bos>`, so the text
//! is encoded *without* the tokenizer's special tokens — encoding with them would give Gemma two
//! `<bos>` (a known pitfall of `processor(text=apply_chat_template(...))`).

use std::ops::Range;
use std::path::Path;

use super::LlavaError;

/// Gemma-it's chat template with one user turn holding the image and the question.
pub const GEMMA_IT_TEMPLATE: &str = "<bos><start_of_turn>user\n<image>\n{question}<end_of_turn>\n<start_of_turn>model\n";

/// The question MOSAIC-style studies ask (any fixed text works: the image tokens precede it).
pub const DEFAULT_QUESTION: &str = "What is shown in this image?";

/// Which position is "End-of-Image".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EoiPosition {
    /// The first token after the last image token (default).
    AfterImage,
    /// The last image token.
    LastImage,
}

impl EoiPosition {
    pub fn parse(s: &str) -> Option<EoiPosition> {
        match s {
            "after_image" => Some(EoiPosition::AfterImage),
            "last_image" => Some(EoiPosition::LastImage),
            _ => None,
        }
    }
}

/// The tokenized prompt.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The template with the question filled in and one `<image>` (what a user would read).
    pub text: String,
    pub ids: Vec<u32>,
    /// Positions of the image tokens.
    pub image: Range<usize>,
    /// Position of the End-of-Image token.
    pub eoi: usize,
    /// What was adjusted (a `<bos>` added), in words.
    pub notes: Vec<String>,
}

impl Prompt {
    /// Render `template` (`{question}` and one image placeholder) and tokenize it with `tokenizer`.
    /// `image_token_index` and `image_tokens` come from the model's config.
    pub fn build(
        tokenizer: &Tokenizer,
        template: &str,
        question: &str,
        image_token_index: u32,
        image_tokens: usize,
        eoi: EoiPosition,
    ) -> Result<Prompt, LlavaError> {
        let image_token = tokenizer.inner.id_to_token(image_token_index).ok_or_else(|| LlavaError::Prompt {
            message: format!(
                "the tokenizer has no token with id {image_token_index} (config.json image_token_index): does tokenizer.json belong to this checkpoint?"
            ),
        })?;
        let count = template.matches(image_token.as_str()).count();
        if count != 1 {
            return Err(LlavaError::Prompt {
                message: format!("the prompt template holds {count} {image_token} placeholders, expected exactly one: {template:?}"),
            });
        }
        if !template.contains("{question}") && !question.is_empty() {
            return Err(LlavaError::Prompt {
                message: format!("the prompt template has no {{question}} placeholder for the question {question:?}: {template:?}"),
            });
        }
        let text = template.replace("{question}", question);
        let expanded = text.replace(image_token.as_str(), &image_token.repeat(image_tokens));
        let mut ids = tokenizer.encode(&expanded)?;
        let mut notes = Vec::new();
        if let Some(bos) = tokenizer.bos {
            match (ids.first(), ids.get(1)) {
                (Some(&a), Some(&b)) if a == bos && b == bos => {
                    return Err(LlavaError::Prompt {
                        message: "the prompt starts with two <bos> tokens: write <bos> once in the template".into(),
                    });
                }
                (Some(&a), _) if a == bos => {}
                _ => {
                    ids.insert(0, bos);
                    notes.push("the template has no <bos>: one was put first, as Gemma expects".into());
                }
            }
        }
        let first = ids.iter().position(|&id| id == image_token_index);
        let last = ids.iter().rposition(|&id| id == image_token_index);
        let (first, last) = match (first, last) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(LlavaError::Prompt { message: format!("the tokenized prompt holds no {image_token} token") }),
        };
        let found = ids.iter().filter(|&&id| id == image_token_index).count();
        if found != image_tokens || last + 1 - first != image_tokens {
            return Err(LlavaError::Prompt {
                message: format!(
                    "the tokenized prompt holds {found} {image_token} tokens over positions {first}..={last}, expected one run of \
                     {image_tokens}: does the tokenizer split {image_token}? (it must be an added token)"
                ),
            });
        }
        let image = first..last + 1;
        let eoi = match eoi {
            EoiPosition::LastImage => last,
            EoiPosition::AfterImage => {
                if last + 1 >= ids.len() {
                    return Err(LlavaError::Prompt {
                        message: "nothing follows the image in the prompt, so there is no End-of-Image token: put text after <image>, or \
                                  use eoi: last_image"
                            .into(),
                    });
                }
                last + 1
            }
        };
        Ok(Prompt { text, ids, image, eoi, notes })
    }

    /// The ids before and after the image run.
    pub fn text_ids(&self) -> (&[u32], &[u32]) {
        (&self.ids[..self.image.start], &self.ids[self.image.end..])
    }
}

/// A `tokenizer.json` (Hugging Face `tokenizers`).
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    bos: Option<u32>,
}

impl Tokenizer {
    pub fn from_file(path: &Path) -> Result<Tokenizer, LlavaError> {
        let inner = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| LlavaError::Prompt { message: format!("{}: cannot read the tokenizer: {e}", path.display()) })?;
        let bos = inner.token_to_id("<bos>");
        Ok(Tokenizer { inner, bos })
    }

    /// Encode without adding special tokens (the template carries them).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, LlavaError> {
        let enc = self.inner.encode(text, false).map_err(|e| LlavaError::Prompt { message: format!("cannot tokenize the prompt: {e}") })?;
        Ok(enc.get_ids().to_vec())
    }

    /// The text of `ids`, special tokens skipped.
    pub fn decode(&self, ids: &[u32]) -> Result<String, LlavaError> {
        self.inner.decode(ids, true).map_err(|e| LlavaError::Prompt { message: format!("cannot decode {ids:?}: {e}") })
    }

    pub fn token_to_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    pub fn id_to_token(&self, id: u32) -> Option<String> {
        self.inner.id_to_token(id)
    }
}
