"""Class text embeddings from a local SigLIP model folder (plain torch + sentencepiece; no transformers, no hub).

    from panst3r_splat.core.text import siglip_class_embeddings
    embeddings = siglip_class_embeddings("siglip-base-patch16-224", ["wall", "chair"])  # (2, 768) float32, normalised

`siglip_model` is the text tower, `siglip_tokenizer` the tokenizer, `siglip_folder` reads a ``save_pretrained``
folder, `embeddings` applies the official prompt and normalisation.
"""

from panst3r_splat.core.text.embeddings import SIGLIP_PROMPT, embed_texts, format_prompts, siglip_class_embeddings
from panst3r_splat.core.text.siglip_folder import SiglipFolderError, SiglipText, load_siglip_text
from panst3r_splat.core.text.siglip_model import SiglipTextConfig, SiglipTextTransformer
from panst3r_splat.core.text.siglip_tokenizer import SiglipTokenizer, SiglipTokenizerConfig

__all__ = [
    "SIGLIP_PROMPT",
    "SiglipFolderError",
    "SiglipText",
    "SiglipTextConfig",
    "SiglipTextTransformer",
    "SiglipTokenizer",
    "SiglipTokenizerConfig",
    "embed_texts",
    "format_prompts",
    "load_siglip_text",
    "siglip_class_embeddings",
]
