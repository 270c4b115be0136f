"""Time and peak memory of one scene through `predict` with PanSt3R at the released sizes.

    python benchmarks/official_sizes.py                         # v1 and v2, 8 and 16 views, 512, CPU
    python benchmarks/official_sizes.py --versions v1 --views 8 --json official.json

The models are the official architectures (`official_v1_config`, `official_v2_config`: ViT-L/16 encoder, ViT-B
decoder, DINOv2-L, PixelShuffle or InputMixer + LoftUp head) with random weights, saved in the project's
safetensors format (float16 on disk, float32 in memory) and run through `run_predict` exactly as
`panst3r-splat predict --checkpoint CKPT --size 512` would: loading, the forward pass over all views (all keyframes),
cameras, the model's default merge and writing the predictions folder. Inputs: a synthetic room at 512x384 (the
4:3 aspect bucket of the 512 models, so nothing is cropped). Figures per (version, views): wall time, CPU time, peak
resident set of the process during the scene and its rise over the starting set (`panst3r_splat.pipeline.jobs.demo.
measure`). Random weights make the segments meaningless but cost the same as the released ones; the checkpoints
themselves are non-commercial and not needed here.

It is a separate script and not a section of `benchmarks/run.py`: on 2 CPU cores the four rows take far longer than
that benchmark's few minutes (each row is one forward pass of two ViT-L backbones over every view at 512).
"""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import torch

from panst3r_splat.core.checkpoint import save_checkpoint
from panst3r_splat.core.class_sets import builtin_class_set
from panst3r_splat.core.model.config import official_v1_config, official_v2_config
from panst3r_splat.core.model.panst3r import PanSt3R
from panst3r_splat.pipeline.datasets.synth import SynthConfig, generate_scene, write_scene
from panst3r_splat.pipeline.jobs.demo.measure import machine_info, measure
from panst3r_splat.pipeline.stages.predict import PredictOptions, run_predict

CONFIGS = {"v1": official_v1_config, "v2": official_v2_config}


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--versions", nargs="+", default=["v1", "v2"], choices=sorted(CONFIGS))
    parser.add_argument("--views", nargs="+", type=int, default=[8, 16])
    parser.add_argument("--size", type=int, default=512, help="model long side (the released models: 512)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: torch's default)")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures here")
    parser.add_argument("--work", type=Path, default=None, help="keep checkpoints, scene and predictions here")
    return parser.parse_args()


def random_checkpoint(version: str, path: Path) -> int:
    """Write the official architecture `version` with random weights (seed 0) to `path`; its parameter count."""
    torch.manual_seed(0)
    model = PanSt3R(CONFIGS[version]()).eval()
    class_set = builtin_class_set(model.config.mask_transformer.lang_dim)
    save_checkpoint(path, model, class_names=list(class_set.class_names),
                    class_embeddings=torch.from_numpy(class_set.class_embeddings), dtype=torch.float16)
    count = sum(p.numel() for p in model.parameters())
    del model
    return count


def main() -> None:
    args = _arguments()
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="official_sizes_"))
    work.mkdir(parents=True, exist_ok=True)
    device = torch.device("cpu")
    width, height = args.size, args.size * 3 // 4
    scene = work / "scene"
    if not scene.is_dir():
        write_scene(generate_scene(SynthConfig(train_views=max(args.views), test_views=1, width=width,
                                               height=height), 1_000_003), scene)
    rows = []
    print(f"PanSt3R at the released sizes, random weights, {width}x{height}, on {machine_info(device)['cpu']} "
          f"({torch.get_num_threads()} torch threads)")
    print(f"{'model':<6}{'params':>9}{'views':>7}{'wall s':>9}{'CPU s':>9}{'peak MB':>9}{'rise MB':>9}  merge")
    for version in args.versions:
        ckpt = work / f"panst3r_{version}_random.safetensors"
        params = random_checkpoint(version, ckpt)
        for views in args.views:
            images = work / f"images_{views}"
            if not images.is_dir():
                images.mkdir()
                for path in sorted((scene / "color").iterdir())[:views]:
                    (images / path.name).write_bytes(path.read_bytes())
            out = work / f"pred_{version}_{views}"
            options = PredictOptions(checkpoint=ckpt, size=str(args.size), keyframes="all", device=device,
                                     cameras="head")
            result, usage = measure(lambda: run_predict(images, out, options), device)
            row = {"model": version, "params": params, "views": views, "width": width, "height": height,
                   "seconds": usage.seconds, "cpu_seconds": usage.user_seconds + usage.system_seconds,
                   "peak_rss_mb": usage.peak_rss_mb, "rss_rise_mb": usage.rss_rise_mb, "merge": result.merge}
            rows.append(row)
            print(f"{version:<6}{params / 1e6:>8.0f}M{views:>7}{usage.seconds:>9.1f}{row['cpu_seconds']:>9.1f}"
                  f"{usage.peak_rss_mb:>9.0f}{usage.rss_rise_mb:>9.0f}  {result.merge}", flush=True)
    if args.json is not None:
        info = {"machine": machine_info(device), "date": time.strftime("%Y-%m-%d %H:%M:%S"), "rows": rows}
        args.json.write_text(json.dumps(info, indent=1) + "\n")
    print(f"work folder: {work}")


if __name__ == "__main__":
    main()
