"""Write the tiny SigLIP folder of this directory and the Hugging Face outputs the tests compare against.

Not run by the tests. It needs `transformers`, `sentencepiece`, `safetensors` and `torch` in a separate environment
(the project itself never imports transformers):

    python3 -m venv /tmp/hfvenv
    /tmp/hfvenv/bin/pip install -c constraints.txt torch==2.13.0
    /tmp/hfvenv/bin/pip install transformers sentencepiece safetensors protobuf
    /tmp/hfvenv/bin/python tests/data/siglip_tiny/make_fixture.py

It trains a sentencepiece unigram model on the small corpus below (asked for 200 pieces, the corpus gives 150),
builds a random `SiglipModel` (text tower: hidden 32, 2 layers, 4 heads, 64 positions; a one-layer 8x8-pixel vision
tower, whose keys the loader must skip), saves both as `save_pretrained` does, and records in `expected.json` the
`SiglipTokenizer` ids (``padding="max_length"``, ``truncation=True``) and the `SiglipTextModel` pooler outputs,
without and with the attention mask, of the texts.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import sentencepiece as spm
import torch
import transformers
from transformers import SiglipConfig, SiglipModel, SiglipTextModel, SiglipTokenizer

HERE = Path(__file__).resolve().parent

CORPUS = """\
this is a photo of a wall and the floor of a small room
this is a photo of a cabinet next to the bed
a wooden chair stands beside the sofa in the living room
the table by the door holds a lamp and a bag
light comes through the window behind the curtain
the kitchen counter has a sink and a refrigerator
shelves on the wall hold books plants and a television
the ceiling of the bathroom is white above the toilet
a person sits on the chair and reads a book
other props lie on the floor of the bedroom
a photo of an office with desks monitors and a whiteboard
the blue armchair and the grey cushion on the couch
a picture frame hangs above the fireplace in the hall
there is a rug under the coffee table and a plant in the corner
the washing machine stands in the laundry room near the dryer
a mirror over the bathroom sink and a towel on the rail
open boxes and a suitcase on the bed of the guest room
a printer a keyboard and a mouse on the office desk
this photo shows a staircase a railing and a radiator
the oven the microwave and the dishwasher of the kitchen
"""

PROMPT = "This is a photo of {}."
NAMES = [
    "wall", "floor", "cabinet", "bed", "chair", "sofa", "table", "door", "window", "counter", "shelves", "curtain",
    "ceiling", "refrigerator", "television", "person", "toilet", "sink", "lamp", "bag", "otherprop",
    "Kitchen-Cabinet (open)!", "  a   BLUE\tarmchair  ", "tv #2, on the wall?", "café au lait", "",
    " ".join(["very long name of a small grey object on the shelf"] * 6),
]
EXTRA_TEXTS = ["a photo of a chair", "CHAIR", "   ", "shelves; books & plants... (many)", " leading space", "tab\there"]


def train_spiece() -> bytes:
    """A unigram model laid out as SigLIP's (0 <pad>, 1 </s>, 2 <unk>, no BOS); identity normalisation keeps the
    file small (the real model's NFKC map is 240 KB; normalisation is sentencepiece's own, the same in both)."""
    out = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(CORPUS.splitlines() * 4), model_writer=out, vocab_size=200, model_type="unigram",
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1, pad_piece="<pad>", eos_piece="</s>", unk_piece="<unk>",
        normalization_rule_name="identity", hard_vocab_limit=False, minloglevel=2,
    )
    return out.getvalue()


def randomise(model: torch.nn.Module, seed: int = 0) -> None:
    """Weights far from the near-identity initialisation, so every parameter moves the outputs."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g)
            if "layer_norm" in name or "layernorm" in name:
                p.copy_(1.0 + 0.2 * noise if name.endswith("weight") else 0.1 * noise)
            else:
                p.copy_(0.3 * noise)


def main() -> None:
    (HERE / "spiece.model").write_bytes(train_spiece())
    tokenizer = SiglipTokenizer(str(HERE / "spiece.model"), model_input_names=["input_ids"])
    config = SiglipConfig(
        text_config=dict(vocab_size=tokenizer.vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=64, pad_token_id=1, eos_token_id=1,
                         bos_token_id=None),
        vision_config=dict(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                           image_size=8, patch_size=4),
    )
    model = SiglipModel(config).eval()
    randomise(model)
    model.save_pretrained(HERE)
    tokenizer.save_pretrained(HERE)
    text_model = SiglipTextModel.from_pretrained(HERE).eval()  # reloaded: what a user's folder gives

    texts = [PROMPT.format(n) for n in NAMES] + EXTRA_TEXTS
    tok = tokenizer(texts, padding="max_length", truncation=True, return_tensors="pt", return_attention_mask=True)
    with torch.no_grad():
        pooler = text_model(input_ids=tok["input_ids"]).pooler_output
        pooler_masked = text_model(input_ids=tok["input_ids"], attention_mask=tok["attention_mask"]).pooler_output
    expected = {
        "made_with": {"transformers": transformers.__version__, "torch": torch.__version__,
                      "sentencepiece": spm.__version__, "python": sys.version.split()[0]},
        "prompt": PROMPT,
        "names": NAMES,
        "texts": texts,
        "input_ids": tok["input_ids"].tolist(),
        "attention_mask": tok["attention_mask"].tolist(),
        "pooler_output": pooler.tolist(),
        "pooler_output_masked": pooler_masked.tolist(),
    }
    (HERE / "expected.json").write_text(to_json(expected))


def to_json(data: dict) -> str:
    """One line per key, one line per row of a table (readable diffs, small file)."""
    def value(v: object) -> str:
        if isinstance(v, list) and v and isinstance(v[0], list):
            return "[\n  " + ",\n  ".join(json.dumps(row) for row in v) + "\n ]"
        return json.dumps(v, ensure_ascii=False)

    return "{\n" + ",\n".join(f" {json.dumps(k)}: {value(v)}" for k, v in data.items()) + "\n}\n"


if __name__ == "__main__":
    main()
