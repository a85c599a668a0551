"""Random SAELens-format SAEs for the extraction benchmark (`benches/extraction.sh`), on the mid-size bench model.

Each SAE reads `blocks.L.hook_resid_post` of the model `benches/llava_forward.py` builds (it is built here if
missing): W_enc [d_in, d_sae] and W_dec [d_sae, d_in] random, b_dec 0, and b_enc calibrated on the model's own
image-token residuals so that a token fires about --l0 features (what the jb Gemma-2B SAEs fire on text: 47-62),
so the stored non-zeros, the totals and the Parquet bytes are those of a realistic SAE, not of a random ReLU
that fires on half its features.

    /work/scratch/sae-venv/bin/python benches/extraction_saes.py [--dir /work/scratch/bench-llava-mid]
        [--layers 0 6 12 17] [--d-sae 16384] [--l0 64]
"""

import argparse
import json
import pathlib
import sys

import numpy as np
import PIL.Image
import safetensors.torch
import torch
import transformers

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import llava_forward as lf  # noqa: E402  (the bench model's builder and prompt)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", default="/work/scratch/bench-llava-mid")
    ap.add_argument("--layers", type=int, nargs="+", default=[0, 6, 12, 17])
    ap.add_argument("--d-sae", type=int, default=16384)
    ap.add_argument("--l0", type=float, default=64.0, help="target features per image token")
    ap.add_argument("--images", type=int, default=16, help="calibration images (the first of the written ones)")
    ap.add_argument("--write-images", type=int, default=512, help="noise PNGs written to DIR/images/<class>/ for the bench")
    args = ap.parse_args()
    torch.manual_seed(7)
    model_dir = pathlib.Path(args.dir)
    if not (model_dir / "config.json").exists():
        lf.build(model_dir, lf.MID)
    model = transformers.LlavaForConditionalGeneration.from_pretrained(model_dir, dtype=torch.float32).eval()
    vc, tc = model.config.vision_config, model.config.text_config
    n_image = (vc.image_size // vc.patch_size) ** 2
    ids = lf.prompt_ids(model_dir, n_image)
    img = [i for i, t in enumerate(ids) if t == model.config.image_token_id]
    got = {}
    hooks = [model.model.language_model.layers[L].register_forward_hook(
        lambda _m, _a, o, L=L: got.__setitem__(L, (o[0] if isinstance(o, tuple) else o)[:, img[0]:img[-1] + 1]))
        for L in args.layers]
    # the bench's images: uniform RGB noise at the model's input size (so preprocessing is a plain normalize), in
    # 8 class folders; the SAEs are calibrated on the first of them, so the bench sees the calibrated L0
    rng = np.random.default_rng(11)
    pixels = rng.integers(0, 256, size=(args.write_images, vc.image_size, vc.image_size, 3), dtype=np.uint8)
    for i, px in enumerate(pixels):
        folder = model_dir / "images" / f"class_{i % 8}"
        folder.mkdir(parents=True, exist_ok=True)
        PIL.Image.fromarray(px).save(folder / f"img_{i:05}.png")
    pre = json.loads((model_dir / "preprocessor_config.json").read_text())
    mean, std = np.array(pre["image_mean"]), np.array(pre["image_std"])
    norm = ((pixels[: args.images] / 255.0 - mean) / std).transpose(0, 3, 1, 2)
    with torch.inference_mode():
        pv = torch.tensor(norm, dtype=torch.float32)
        model.model(input_ids=torch.tensor([ids] * args.images), pixel_values=pv, use_cache=False)
    for h in hooks:
        h.remove()
    d_in, d_sae = tc.hidden_size, args.d_sae
    q = 1.0 - args.l0 / d_sae
    for L in args.layers:
        x = got[L].reshape(-1, d_in).float()
        w_enc = torch.randn(d_in, d_sae) / d_in ** 0.5
        pre = x @ w_enc
        # per feature, the pre-activation quantile that leaves about l0/d_sae of the tokens active
        b_enc = -torch.quantile(pre, q, dim=0)
        w_dec = torch.randn(d_sae, d_in) / d_sae ** 0.5
        out = model_dir / "saes" / f"blocks.{L}.hook_resid_post"
        out.mkdir(parents=True, exist_ok=True)
        safetensors.torch.save_file({"W_enc": w_enc.contiguous(), "b_enc": b_enc.contiguous(), "W_dec": w_dec.contiguous(),
                                     "b_dec": torch.zeros(d_in)}, str(out / "sae_weights.safetensors"))
        cfg = {"architecture": "standard", "d_in": d_in, "d_sae": d_sae, "dtype": "float32", "device": "cpu",
               "hook_name": f"blocks.{L}.hook_resid_post", "hook_layer": L, "activation_fn_str": "relu",
               "apply_b_dec_to_input": False, "normalize_activations": "none", "model_name": "bench-llava-mid",
               "sae_lens_version": "6.0.0"}
        (out / "cfg.json").write_text(json.dumps(cfg, indent=2) + "\n")
        l0 = (torch.relu(pre + b_enc) > 0).sum(1).float().mean().item()
        print(f"layer {L}: {out} (calibration L0 {l0:.1f})", file=sys.stderr)


if __name__ == "__main__":
    main()
