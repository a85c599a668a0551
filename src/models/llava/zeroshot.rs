//! LLaVA's own answer, the zero-shot baseline: the full language model with its LM head (untied,
//! or the token embedding when tied), built only for this.
//!
//! - [`LlavaLm::score`]: the log-likelihood of each candidate answer (its tokens right after the
//!   prompt), from one prompt pass per batch with a KV cache and one pass per chunk of answers.
//! - [`LlavaLm::generate`]: greedy decoding with a KV cache until a stop token or a length limit.
//!
//! Log-softmax runs in f32 over the full vocabulary, whatever the weights' dtype.

use candle_core::{D, DType, Device, IndexOp, Tensor};

use super::gemma::KvCache;
use super::{Checkpoint, ImageScale, LlavaError, LlavaGemma, Prompt, Request, TapPoint};

/// Answers scored together against one image's cached prompt.
const ANSWER_CHUNK: usize = 32;

/// LLaVA-Gemma with every block, the final norm and the LM head.
pub struct LlavaLm {
    base: LlavaGemma,
    /// The token embedding `[vocab, hidden]` (answer and generated tokens are looked up in it).
    embed: Tensor,
    /// The LM head `[vocab, hidden]` (the embedding when tied).
    head: Tensor,
}

impl LlavaLm {
    pub fn load(
        checkpoint: &Checkpoint,
        prompt: Prompt,
        image_scale: ImageScale,
        dtype: DType,
        device: &Device,
    ) -> Result<LlavaLm, LlavaError> {
        let request = Request { blocks: vec![], point: TapPoint::ResidPost, final_norm: true, vit: false, image_scale };
        let base = LlavaGemma::load(checkpoint, prompt, request, dtype, device)?;
        let cfg = &checkpoint.config.text;
        let vb = checkpoint.var_builder(dtype, device);
        let embed = vb.get((cfg.vocab_size, cfg.hidden_size), "language_model.model.embed_tokens.weight")?;
        let head = if checkpoint.contains("language_model.lm_head.weight") {
            vb.get((cfg.vocab_size, cfg.hidden_size), "language_model.lm_head.weight")?
        } else if checkpoint.config.tie_word_embeddings {
            embed.clone()
        } else {
            return Err(LlavaError::MissingTensor {
                dir: checkpoint.dir().to_path_buf(),
                name: checkpoint.layout().actual("language_model.lm_head.weight"),
                files: checkpoint.files().iter().map(|f| f.display().to_string()).collect(),
            });
        };
        Ok(LlavaLm { base, embed, head })
    }

    pub fn prompt(&self) -> &Prompt {
        self.base.prompt()
    }

    /// Scaled embeddings of token rows `ids` (`[B, t]` u32) → `[B, t, hidden]`.
    fn embed_ids(&self, ids: &Tensor) -> Result<Tensor, LlavaError> {
        let (b, t) = ids.dims2()?;
        let rows = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, ()))?;
        Ok(rows.broadcast_mul(&self.base.normalizer)?)
    }

    /// Log-probabilities `[.., vocab]` (f32) of the next token after hidden states `[.., hidden]`.
    fn log_probs(&self, hidden: &Tensor) -> Result<Tensor, LlavaError> {
        let logits = hidden.broadcast_matmul(&self.head.t()?)?.to_dtype(DType::F32)?;
        Ok(candle_nn::ops::log_softmax(&logits, D::Minus1)?)
    }

    /// The prompt pass: (log-probs of the token after the prompt `[B, vocab]`, the cache).
    fn prefix(&self, pixels: &Tensor) -> Result<(Tensor, KvCache), LlavaError> {
        let (merged, _, _) = self.base.embed(pixels)?;
        let (hidden, cache) = self.base.gemma.forward_cached(&merged, None)?;
        let last = hidden.i((.., hidden.dim(1)? - 1, ..))?;
        Ok((self.log_probs(&last)?, cache))
    }

    /// `[B][answers]`: Σ log p(answer token | prompt, earlier answer tokens) for each image and
    /// candidate answer (each a non-empty token sequence).
    pub fn score(&self, pixels: &Tensor, answers: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, LlavaError> {
        if let Some(i) = answers.iter().position(Vec::is_empty) {
            return Err(LlavaError::Request { message: format!("answer {i} tokenizes to nothing") });
        }
        let (first, cache) = self.prefix(pixels)?;
        let first = first.to_vec2::<f32>()?;
        let device = self.base.device();
        let mut out = vec![vec![0f32; answers.len()]; first.len()];
        for (b, row) in out.iter_mut().enumerate() {
            for (c, chunk) in answers.chunks(ANSWER_CHUNK).enumerate() {
                // every answer but its last token is fed; right padding is invisible to real tokens
                let width = chunk.iter().map(|a| a.len() - 1).max().unwrap_or(0);
                let mut ll: Vec<f32> = chunk.iter().map(|a| first[b][a[0] as usize]).collect();
                if width > 0 {
                    let ids: Vec<u32> = chunk.iter().flat_map(|a| (0..width).map(move |k| a.get(k).copied().unwrap_or(0))).collect();
                    let ids = Tensor::from_vec(ids, (chunk.len(), width), device)?;
                    let past = cache.repeat_row(b, chunk.len())?;
                    let (hidden, _) = self.base.gemma.forward_cached(&self.embed_ids(&ids)?, Some(&past))?;
                    let lp = self.log_probs(&hidden)?.to_vec3::<f32>()?;
                    for (j, a) in chunk.iter().enumerate() {
                        for k in 1..a.len() {
                            ll[j] += lp[j][k - 1][a[k] as usize];
                        }
                    }
                }
                row[c * ANSWER_CHUNK..c * ANSWER_CHUNK + chunk.len()].copy_from_slice(&ll);
            }
        }
        Ok(out)
    }

    /// Greedy answers, at most `max_new` tokens each, each ending at (and including) the first
    /// token in `stop`.
    pub fn generate(&self, pixels: &Tensor, max_new: usize, stop: &[u32]) -> Result<Vec<Vec<u32>>, LlavaError> {
        let (mut lp, mut cache) = self.prefix(pixels)?;
        let b = lp.dim(0)?;
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut done = vec![false; b];
        for _ in 0..max_new {
            let next = lp.argmax(D::Minus1)?.to_vec1::<u32>()?;
            for (i, &t) in next.iter().enumerate() {
                if !done[i] {
                    out[i].push(t);
                    done[i] = stop.contains(&t);
                }
            }
            if done.iter().all(|d| *d) || out.iter().all(|o| o.len() >= max_new) {
                break;
            }
            let ids = Tensor::from_vec(next, (b, 1), self.base.device())?;
            let (hidden, extended) = self.base.gemma.forward_cached(&self.embed_ids(&ids)?, Some(&cache))?;
            cache = extended;
            lp = self.log_probs(&hidden.i((.., 0, ..))?)?;
        }
        Ok(out)
    }
}
