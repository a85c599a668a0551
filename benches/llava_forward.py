"""PyTorch side of the LLaVA-Gemma forward benchmark (`cargo bench --bench llava_forward` is the candle side).

Builds a MID-SIZE random-weight LLaVA-Gemma with transformers (same architecture as Intel/llava-gemma-2b, smaller
dims) and saves it OUTSIDE the repository in the 2024 on-disk layout (diff-only config.json, two f32 shards +
model.safetensors.index.json with the 2024 names, tokenizer.json with <image> after the text vocab), reusing the
builders of tests/fixtures/llava/make_fixtures.py. Then times transformers: the language model run to block BLOCK
(default: the last one) on the gemma-it prompt with "What is shown in this image?", for a batch of B random images,
eager attention, float32 (--dtype), under torch.inference_mode(), warmup + median of several runs, and prints images/s as JSON.

    /work/scratch/sae-venv/bin/python benches/llava_forward.py [--dir /work/scratch/bench-llava-mid] [--threads 2]
        [--batch 8] [--iters 7] [--warmup 2] [--out /work/scratch/bench-llava-mid/torch.json]
        [--block 17] [--full-vision] [--attn eager|sdpa] [--force]
        [--size mid|real] [--device cpu|cuda] [--dtype float32|bfloat16|float16]   (real size: see docs/PERF.md)
    RAYON_NUM_THREADS=2 LLAVA_BENCH_TORCH=/work/scratch/bench-llava-mid/torch.json cargo bench --bench llava_forward

What is timed is the work saeflow does for one batch: CLIP up to hidden_states[-2] (by default the unused last
CLIP layer is dropped, as saeflow never builds it; --full-vision keeps it, as transformers' LLaVA runs it), the
projector, the merge, and Gemma blocks 0..=BLOCK (layers past BLOCK are removed; the final norm and lm_head are
not run beyond the final RMSNorm that GemmaModel always applies, which is negligible). The model directory also
gets `bench_check.safetensors` (pixel_values of 2 images and the transformers output at the image rows), which the
Rust bench compares against to make sure both sides compute the same thing. Note: transformers >= 5.4 does not
multiply the image rows by sqrt(D); the Rust bench runs with ImageScale::Unscaled so the check matches (the cost is
the same either way).
"""

import argparse
import json
import math
import os
import pathlib
import statistics
import sys
import time

import safetensors.torch
import torch
import transformers

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests/fixtures/llava"))
import make_fixtures as mf  # noqa: E402  (builders shared with the parity fixtures)

SEED = 20260101
# Intel/llava-gemma-2b's architecture at mid size: CLIP ViT (patch 14) -> 2-layer GELU MLP -> Gemma (MQA).
MID = dict(
    seed=SEED,
    layout="2024",
    bpe_vocab=200,
    dtype="float32",
    strategy="default",
    vision=dict(hidden_size=256, intermediate_size=1024, num_hidden_layers=6, num_attention_heads=8,
                patch_size=14, image_size=112, projection_dim=64),
    text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=18, num_attention_heads=4,
              num_key_value_heads=1, head_dim=128),
)
# The real Intel/llava-gemma-2b architecture (CLIP ViT-L/14-336, Gemma-2B) with random weights: 3.3 B parameters
# (untied lm_head included), a 13.4 GB f32 checkpoint and ~35 GB of host memory to build. For a GPU host (--device cuda).
REAL = dict(
    MID,
    vision=dict(hidden_size=1024, intermediate_size=4096, num_hidden_layers=24, num_attention_heads=16,
                patch_size=14, image_size=336, projection_dim=768),
    text=dict(hidden_size=2048, intermediate_size=16384, num_hidden_layers=18, num_attention_heads=8,
              num_key_value_heads=1, head_dim=256),
    vocab_size=256064,
)
SIZES = {"mid": MID, "real": REAL}


def build(model_dir: pathlib.Path, v: dict):
    """Write the random-weight checkpoint (2024 layout) and tokenizer into model_dir."""
    model_dir.mkdir(parents=True, exist_ok=True)
    tok = mf.build_tokenizer(v["bpe_vocab"])
    image_token_id = tok.token_to_id(mf.IMAGE_TOKEN)
    vocab_size = v.get("vocab_size") or 64 * math.ceil((image_token_id + 1) / 64)
    config = mf.llava_config(v, vocab_size, image_token_id)
    model = transformers.LlavaForConditionalGeneration(config).eval()
    sd = mf.random_state_dict(model, v["seed"])
    mf.write_checkpoint_2024(model_dir, v, sd, vocab_size, image_token_id)
    for decoy in ("llava-decoy.safetensors", "pytorch_model.bin"):  # the fixture's loader traps; not wanted here
        (model_dir / decoy).unlink()
    mf.write_tokenizer_2024(model_dir, tok)
    mf.dump_json(model_dir / "preprocessor_config.json", mf.preprocessor_config(v["vision"]["image_size"]))
    mf.dump_json(model_dir / "bench_meta.json", {"seed": v["seed"], "vision": v["vision"], "text": v["text"],
                                                 "vocab_size": vocab_size, "image_token_id": image_token_id,
                                                 "transformers": transformers.__version__})


def prompt_ids(model_dir: pathlib.Path, n_image: int) -> list:
    """The gemma-it prompt with <image> expanded, encoded without special tokens (the template has its <bos>)."""
    tok = mf.Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    text = mf.EXPECTED_PROMPT.replace(mf.IMAGE_TOKEN, mf.IMAGE_TOKEN * n_image)
    return tok.encode(text, add_special_tokens=False).ids


def vision_encoder(model):
    vt = model.model.vision_tower  # transformers 5: CLIPVisionModel without the `vision_model` level
    return getattr(vt, "vision_model", vt).encoder


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default=os.environ.get("LLAVA_BENCH_DIR", "/work/scratch/bench-llava-mid"))
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (use the same as RAYON_NUM_THREADS)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--iters", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--block", type=int, default=None, help="deepest LM block to run (default: the last); -1: none")
    ap.add_argument("--full-vision", action="store_true", help="run every CLIP layer, as transformers' LLaVA does")
    ap.add_argument("--attn", default="eager", choices=["eager", "sdpa"])
    ap.add_argument("--force", action="store_true", help="rebuild the checkpoint")
    ap.add_argument("--size", default="mid", choices=sorted(SIZES), help="dims of a newly built checkpoint")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--out", default=None, help="also write the JSON here (default: DIR/torch.json)")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    model_dir = pathlib.Path(args.dir)
    if args.force or not (model_dir / "config.json").exists():
        t = time.perf_counter()
        build(model_dir, SIZES[args.size])
        print(f"built {model_dir} in {time.perf_counter() - t:.1f} s", file=sys.stderr)

    model = transformers.LlavaForConditionalGeneration.from_pretrained(
        model_dir, dtype=getattr(torch, args.dtype), attn_implementation=args.attn).eval().to(args.device)
    cfg = model.config
    vc, tc = cfg.vision_config, cfg.text_config
    n_image = (vc.image_size // vc.patch_size) ** 2  # strategy "default": CLS dropped
    ids = prompt_ids(model_dir, n_image)
    assert ids.count(cfg.image_token_id) == n_image, "the tokenizer does not match the checkpoint"
    img = [i for i, t in enumerate(ids) if t == cfg.image_token_id]
    img0, img1 = img[0], img[-1] + 1

    lm = model.model.language_model
    block = tc.num_hidden_layers - 1 if args.block is None else args.block
    assert -1 <= block < tc.num_hidden_layers
    lm.layers = lm.layers[: block + 1]
    feature_layer = cfg.vision_feature_layer
    if not args.full_vision:
        # hidden_states[-2] of the full tower == hidden_states[-1] of the tower without its last layer
        enc = vision_encoder(model)
        enc.layers = enc.layers[: vc.num_hidden_layers - 1]
        feature_layer = -1

    B = args.batch
    gen = torch.Generator().manual_seed(0)
    pixel_values = torch.randn(B, 3, vc.image_size, vc.image_size, generator=gen).to(args.device, getattr(torch, args.dtype))
    input_ids = torch.tensor([ids] * B, dtype=torch.long, device=args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)

    def forward(pv, inp):
        # transformers 5 captures only the selected hidden state (output_hidden_states=vision_feature_layer, as an
        # index resolved against the config's layer count); with the trimmed tower ask for all of them instead
        # (references, no extra compute).
        extra = {} if args.full_vision else {"output_hidden_states": True}
        out = model.model(input_ids=inp, pixel_values=pv, vision_feature_layer=feature_layer, use_cache=False, **extra)
        return out.last_hidden_state[:, img0:img1]  # block BLOCK's output at the image rows (after GemmaModel's norm)

    def forward_resid(pv, inp):
        """Block BLOCK's resid_post at the image rows (hooked, before the final norm): the parity check."""
        got = {}
        h = lm.layers[-1].register_forward_hook(lambda _m, _a, o: got.__setitem__("x", o[0] if isinstance(o, tuple) else o))
        forward(pv, inp)
        h.remove()
        return got["x"][:, img0:img1].contiguous()

    with torch.inference_mode():
        if block >= 0:
            check_pv = pixel_values[:2].contiguous()
            ref = forward_resid(check_pv, input_ids[:2])
            safetensors.torch.save_file({"pixel_values": check_pv.float().cpu(),
                                         f"resid_post.{block}.image_rows": ref.float().cpu()},
                                        str(model_dir / "bench_check.safetensors"))
        for _ in range(args.warmup):
            forward(pixel_values, input_ids)
        sync()
        times = []
        for _ in range(args.iters):
            t = time.perf_counter()
            forward(pixel_values, input_ids)
            sync()
            times.append(time.perf_counter() - t)

    med = statistics.median(times)
    result = {
        "side": "torch",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "attn": args.attn,
        "device": args.device,
        "dtype": args.dtype,
        "batch": B,
        "T": len(ids),
        "image_tokens": n_image,
        "vision_layers_run": len(vision_encoder(model).layers),
        "lm_blocks_run": block + 1,
        "iters": args.iters,
        "median_s": med,
        "min_s": min(times),
        "max_s": max(times),
        "images_per_s": B / med,
    }
    text = json.dumps(result)
    print(text)
    out = pathlib.Path(args.out) if args.out else model_dir / "torch.json"
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
