"""The README's teaser figure, composed from the output folder of `panst3r-splat demo`.

    .venv/bin/panst3r-splat demo --out demo_out --oracle && .venv/bin/python scripts/readme_figure.py demo_out

(the default `--out` is `docs/teaser.png`). One PNG, one section per row, every tile titled:

1. input views: a few of the demo's input photos (evenly spaced over the input split) and, beneath them, the built-in
   model's merged panoptic segmentation of the same views (`OUT/predictions/`);
2. held-out views (novel cameras of the dataset, `OUT/renders/test/`): the ground-truth photo, the rendered RGB and
   the rendered panoptic colouring of the labelled splats fitted from the predictions, and the ground-truth
   panoptic colouring; where the demo could not place the held-out cameras in the fitted scene it rendered the
   input views instead, and the section says so;
2b. the same held-out views from the predictions fitted under the scene's own cameras (`OUT/posed/renders/`, the
   paper's protocol), when the demo made them;
3. with `demo --oracle`: the same held-out views from the splats fitted to the ground truth (`OUT/oracle/renders/`),
   the reference for the splatting and lifting alone;
4. orbit: rendered RGB and panoptic at viewpoints of the demo's orbit around the fitted scene (`OUT/renders/orbit/`).

A footer gives the demo's scores from `OUT/summary.json`. Nothing is re-rendered or retouched: every tile is a PNG the
demo wrote (or the dataset's ground truth coloured with the palette the renders use), so the figure shows what the
demo produced, good or bad. Colours: stuff in its class colour, each thing instance in its class colour mixed with an
instance colour (`splat.palette.panoptic_colors`), void black; instance colours of predictions and ground truth are
not matched to each other.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from jaxtyping import UInt8
from PIL import Image, ImageDraw, ImageFont

from panst3r_splat.core import class_table
from panst3r_splat.pipeline.errors import UserError
from panst3r_splat.splat.palette import panoptic_colors

TITLE_PX = 16
"""Height of the band above each tile holding its title."""
HEADER_PX = 22
"""Height of a section's header line."""
GAP_PX = 4
LINE_PX = 17
"""Height of a line of the legend and the footer."""
SWATCH_PX = 11
MARGIN_PX = 8
BACKGROUND = (255, 255, 255)
TEXT = (20, 20, 20)
MUTED = (90, 90, 90)
MAX_PALETTE_COLOURS = 256
"""Colours of the written PNG: an adaptive palette keeps the file small (the label images have few colours; the
photos and RGB renders lose a little colour depth, not detail)."""


@dataclass(frozen=True)
class Tile:
    """One titled image of the figure (None: an empty slot with a title saying why)."""

    title: str
    image: Optional[UInt8[np.ndarray, "H W 3"]]


@dataclass(frozen=True)
class Section:
    header: str
    tiles: tuple[Tile, ...]


@dataclass(frozen=True)
class Figure:
    """What the PNG shows: the sections, the classes of its legend, the footer text."""

    sections: tuple[Section, ...]
    classes: tuple[int, ...]
    """Dataset class ids in the legend: those of the predicted segments and of the ground truth shown."""
    footer: tuple[str, ...]


# ------------------------------------------------------------------------------------------------------ reading


def read_rgb(path: Path) -> UInt8[np.ndarray, "H W 3"]:
    if not path.is_file():
        raise UserError(f"{path} is missing: run `panst3r-splat demo --out {_demo_root(path)}` to completion first")
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB"), dtype=np.uint8)


def read_ids(path: Path) -> np.ndarray:
    """An integer label PNG (uint8 class ids or uint16 instance / segment ids) as int64."""
    if not path.is_file():
        raise UserError(f"{path} is missing: run `panst3r-splat demo --out {_demo_root(path)}` to completion first")
    with Image.open(path) as image:
        return np.asarray(image).astype(np.int64)


def _demo_root(path: Path) -> Path:
    """The demo folder above `path` (the one holding summary.json), for error messages."""
    for parent in path.parents:
        if (parent / "summary.json").is_file() or (parent / ".panst3r-splat-demo").is_file():
            return parent
    return path.parent


def read_json(path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"{path} is missing: run `panst3r-splat demo --out {_demo_root(path)}` to completion first")
    return json.loads(path.read_text())


def gt_panoptic(data: Path, name: str) -> UInt8[np.ndarray, "H W 3"]:
    """Ground-truth panoptic colouring of a dataset frame (`rs_semantics`: class ids, `rs_instance`: instance ids,
    0 for stuff; see docs/formats.md)."""
    return panoptic_colors(read_ids(data / "rs_semantics" / f"{name}.png"),
                           read_ids(data / "rs_instance" / f"{name}.png"))


def predicted_panoptic(predictions: Path, name: str, segments: Sequence[dict[str, Any]]
                       ) -> UInt8[np.ndarray, "H W 3"]:
    """The merged predictions of an input view coloured as `render` colours segments (things keyed by segment id)."""
    semantic = read_ids(predictions / "pred_semantics" / f"{name}.png")
    segment_ids = read_ids(predictions / "pred_surrogateid" / f"{name}.png")
    things = {int(s["id"]) for s in segments if s.get("isthing")}
    instance = np.where(np.isin(segment_ids, list(things)), segment_ids, 0)
    return panoptic_colors(semantic, instance)


def spaced(names: Sequence[str], count: int) -> list[str]:
    """`count` names evenly spaced over `names` (all of them when there are fewer)."""
    if count >= len(names):
        return list(names)
    return [names[round(i * (len(names) - 1) / max(count - 1, 1))] for i in range(count)]


# ------------------------------------------------------------------------------------------------------ sections


def input_sections(out: Path, count: int) -> list[Section]:
    data, predictions = out / "data", out / "predictions"
    names = read_json(data / "splits.json")["train"]
    shown = spaced(names, count)
    segments = read_json(predictions / "segments.json")
    photos = tuple(Tile(f"input {n}", read_rgb(data / "color" / f"{n}.png")) for n in shown)
    merged = tuple(Tile(f"predicted panoptic {n}", predicted_panoptic(predictions, n, segments)) for n in shown)
    return [Section(f"Input views ({len(shown)} of {len(names)}, unposed)", photos),
            Section("PanSt3R (built-in model): merged panoptic segmentation of the input views", merged)]


def render_section(out: Path, renders: str, header: str, count: int, stage: dict[str, Any]) -> Section:
    """Held-out views rendered from a fitted scene, next to the ground truth of the same frames."""
    folder, data = out / renders, out / "data"
    info = read_json(folder / "render.json")
    names = info["views"][:count]
    facts = []
    alignment = info.get("alignment") or {}
    if alignment.get("method", "stored") != "stored" and alignment.get("rotation_error_deg") is not None:
        facts.append(f"the predicted cameras align to the dataset's with a {alignment['rotation_error_deg']:.0f} deg "
                     "rotation error")
    if info.get("void_fraction") is not None:
        facts.append(f"{100 * info['void_fraction']:.1f} % of the pixels of the {len(info['views'])} rendered views "
                     "are void (black)")
    header += f": {'; '.join(facts)}" if facts else ""
    fallback = stage.get("details", {}).get("fallback")
    if fallback:
        header += f" - the held-out cameras could not be placed in the fitted scene ({fallback}): input views shown"
    tiles: list[Tile] = []
    for n in names:
        tiles += [Tile(f"photo {n}", read_rgb(data / "color" / f"{n}.png")),
                  Tile("rendered RGB", read_rgb(folder / "rgb" / f"{n}.png")),
                  Tile("rendered panoptic", read_rgb(folder / "panoptic" / f"{n}.png")),
                  Tile("ground-truth panoptic", gt_panoptic(data, n))]
    return Section(header, tuple(tiles))


def orbit_section(out: Path, count: int) -> Section:
    folder = out / "renders" / "orbit"
    names = read_json(folder / "render.json")["views"]
    # Viewpoints spread evenly over the orbit, its first frame left out.
    shown = [names[(i + 1) * len(names) // (count + 1)] for i in range(count)]
    tiles: list[Tile] = []
    for n in shown:
        tiles += [Tile(f"{n}: rendered RGB", read_rgb(folder / "rgb" / f"{n}.png")),
                  Tile(f"{n}: rendered panoptic", read_rgb(folder / "panoptic" / f"{n}.png"))]
    return Section("Orbit around the scene fitted from the predictions (novel viewpoints, no ground truth)",
                   tuple(tiles))


def footer_lines(summary: dict[str, Any]) -> list[str]:
    """The demo's scores, as its summary reports them."""
    labels = {"direct": "PanSt3R predictions", "lifted": "splats from the predictions (pose-free)",
              "lifted_posed": "splats from the predictions (scene's poses)", "oracle": "splats from ground truth (oracle)"}
    parts = []
    for name, s in summary.get("scores", {}).items():
        where = "input views" if s.get("split") == "train" else "held-out views"
        psnr = f", PSNR {s['psnr']:.1f} dB" if s.get("psnr") is not None else ""
        pq = "-" if s.get("pq_scene") is None else f"{s['pq_scene']:.3f}"
        parts.append(f"{labels.get(name, name)}: PQ^scene {pq}{psnr} ({where})")
    settings = summary.get("settings", {})
    return [f"panst3r-splat demo, seed {settings.get('seed')}, {settings.get('fit_steps')} fit steps. "
            + "; ".join(parts) + "."]


def build_figure(out: Path, *, inputs: int, held_out: int, orbit: int) -> Figure:
    summary = read_json(out / "summary.json")
    if summary.get("mode") != "synthetic":
        raise UserError(f"{out} is a demo of the user's photos (--images): the figure needs the synthetic demo's "
                        "ground truth; run `panst3r-splat demo --out DIR` without --images")
    stages = {s["key"]: s for s in summary["stages"]}
    sections = input_sections(out, inputs)
    classes = {int(s["class_id"]) for s in read_json(out / "predictions" / "segments.json")}
    if held_out:
        renders = [("renders/test", "Held-out views (novel cameras) rendered from the splats fitted to the "
                    "predictions under the model's own cameras (pose-free)", stages.get("render_test", {}))]
        if "posed_render" in stages:
            renders.append(("posed/renders", "The same views from the same predictions fitted under the scene's own "
                            "cameras (fit --poses dataset:SCENE, the paper's protocol)", stages["posed_render"]))
        if "oracle_render" in stages:
            renders.append(("oracle/renders", "The same views from splats fitted to the ground truth (demo --oracle: "
                            "the splatting and lifting alone)", stages["oracle_render"]))
        for folder, header, stage in renders:
            sections.append(render_section(out, folder, header, held_out, stage))
        for name in read_json(out / "renders/test" / "render.json")["views"][:held_out]:
            classes |= set(np.unique(read_ids(out / "data" / "rs_semantics" / f"{name}.png")).tolist())
    if orbit:
        sections.append(orbit_section(out, orbit))
    classes.discard(class_table.VOID_ID)
    return Figure(tuple(sections), tuple(sorted(classes)), tuple(footer_lines(summary)))


# ------------------------------------------------------------------------------------------------------ drawing


def _fit(image: np.ndarray, width: int) -> Image.Image:
    pil = Image.fromarray(image)
    height = round(image.shape[0] * width / image.shape[1])
    # Nearest neighbour keeps label colours exact (no blended colours at segment borders).
    return pil if pil.width == width else pil.resize((width, height), Image.Resampling.NEAREST)


def wrap(text: str, font: ImageFont.FreeTypeFont, width: int) -> list[str]:
    """`text` broken into lines no wider than `width` pixels (at spaces)."""
    lines: list[str] = []
    for word in text.split(" "):
        if lines and font.getlength(lines[-1] + " " + word) <= width:
            lines[-1] += " " + word
        else:
            lines.append(word)
    return lines


def _legend_rows(classes: Sequence[int], font: ImageFont.FreeTypeFont, width: int) -> list[list[tuple[int, int]]]:
    """Legend entries (class id, x offset) flowed into rows no wider than `width`."""
    rows: list[list[tuple[int, int]]] = [[]]
    x = 0
    for class_id in classes:
        entry = SWATCH_PX + 4 + round(font.getlength(class_table.CLASS_BY_ID[class_id].name)) + 12
        if rows[-1] and x + entry > width:
            rows.append([])
            x = 0
        rows[-1].append((class_id, x))
        x += entry
    return rows


def compose(figure: Figure, tile_width: int) -> Image.Image:
    """Sections stacked top to bottom, tiles left to right each under its title, then the legend and footer."""
    font = ImageFont.load_default(size=12)
    header_font = ImageFont.load_default(size=14)
    columns = max(len(s.tiles) for s in figure.sections)
    tile_height = max(_fit(t.image, tile_width).height for s in figure.sections for t in s.tiles
                      if t.image is not None)
    inner = columns * tile_width + (columns - 1) * GAP_PX
    headers = [wrap(s.header, header_font, inner) for s in figure.sections]
    legend = _legend_rows(figure.classes, font, inner - 60)
    footer = [line for text in figure.footer for line in wrap(text, font, inner)]
    row = TITLE_PX + tile_height
    height = (2 * MARGIN_PX + sum(HEADER_PX * len(h) + row * -(-len(s.tiles) // columns)
                                  for h, s in zip(headers, figure.sections))
              + GAP_PX + (len(legend) + len(footer)) * LINE_PX)
    canvas = Image.new("RGB", (inner + 2 * MARGIN_PX, height), BACKGROUND)
    draw = ImageDraw.Draw(canvas)
    y = MARGIN_PX
    for header, section in zip(headers, figure.sections):
        for line in header:
            draw.text((MARGIN_PX, y + 3), line, fill=TEXT, font=header_font)
            y += HEADER_PX
        for i, tile in enumerate(section.tiles):
            x = MARGIN_PX + (i % columns) * (tile_width + GAP_PX)
            top = y + (i // columns) * row
            draw.text((x + 1, top + 1), tile.title, fill=MUTED, font=font)
            if tile.image is not None:
                canvas.paste(_fit(tile.image, tile_width), (x, top + TITLE_PX))
        y += row * -(-len(section.tiles) // columns)
    y += GAP_PX
    for i, entries in enumerate(legend):
        if i == 0:
            draw.text((MARGIN_PX, y), "classes:", fill=TEXT, font=font)
        for class_id, x in entries:
            info = class_table.CLASS_BY_ID[class_id]
            left = MARGIN_PX + 60 + x
            draw.rectangle((left, y + 2, left + SWATCH_PX, y + 2 + SWATCH_PX), fill=info.color, outline=MUTED)
            draw.text((left + SWATCH_PX + 4, y), info.name, fill=TEXT, font=font)
        y += LINE_PX
    for line in footer:
        draw.text((MARGIN_PX, y), line, fill=TEXT, font=font)
        y += LINE_PX
    return canvas


def save_png(image: Image.Image, path: Path) -> int:
    """Write the figure with an adaptive palette (through a temporary file and a rename); returns its bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp"
    image.quantize(MAX_PALETTE_COLOURS, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
        tmp, format="PNG", optimize=True)
    os.replace(tmp, path)
    return path.stat().st_size


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("demo", type=Path, help="the --out folder of a finished `panst3r-splat demo` run")
    parser.add_argument("--out", type=Path, default=Path("docs/teaser.png"), help="the PNG to write")
    parser.add_argument("--inputs", type=int, default=4, help="input views shown")
    parser.add_argument("--held-out", type=int, default=1, help="held-out views shown (0: none)")
    parser.add_argument("--orbit", type=int, default=2, help="orbit viewpoints shown (0: none)")
    parser.add_argument("--tile-width", type=int, default=192, help="width of each image in pixels")
    args = parser.parse_args(argv)
    try:
        if not args.demo.is_dir():
            raise UserError(f"no demo folder at {args.demo}: run `panst3r-splat demo --out {args.demo}` first")
        if min(args.inputs, args.tile_width) < 1 or min(args.held_out, args.orbit) < 0:
            raise UserError("--inputs and --tile-width must be at least 1, --held-out and --orbit at least 0")
        figure = build_figure(args.demo, inputs=args.inputs, held_out=args.held_out, orbit=args.orbit)
        size = save_png(compose(figure, args.tile_width), args.out)
    except UserError as error:
        sys.stderr.write(f"error: {error}\n")
        return 2
    sys.stdout.write(f"figure written to {args.out} ({size / 1024:.0f} KB)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
