"""A small tokenizer for language models trained from scratch on crystal texts.

One token per element symbol, per digit, per punctuation mark (space and newline included),
per word of the prompt templates, plus ``[MASK]`` and the special tokens ``<s>``, ``</s>``,
``<pad>`` and ``<unk>``: under 200 tokens in all. Pretrained models keep their own tokenizer.

Splitting is unambiguous by construction. A prompt word only matches a whole run of letters
(``Below`` is one token, never ``Be`` + ``low``), and element symbols match longest first
(``Cl`` is one token, never ``C`` + ``l``). Since no token is a lowercase-only fragment that
could end a symbol (the lowercase prompt words only match whole words), a formula such as
``CoNaCl`` can only split as ``Co Na Cl``. Decoding concatenates the tokens, so decoding the
tokens of any text built from the vocabulary gives that text back exactly.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from flowllm_kit.text.codec import element_symbols
from flowllm_kit.text.prompts import MASK, PROMPT_TEMPLATES

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

__all__ = [
    "BOS_TOKEN",
    "EOS_TOKEN",
    "PAD_TOKEN",
    "PUNCTUATION",
    "UNK_TOKEN",
    "build_tokenizer",
    "prompt_words",
    "vocabulary",
]

BOS_TOKEN = "<s>"
EOS_TOKEN = "</s>"
PAD_TOKEN = "<pad>"
UNK_TOKEN = "<unk>"
PUNCTUATION: tuple[str, ...] = (" ", "\n", ".", "-", "+", ",", ":", '"', "(", ")")
"""Single-character tokens besides digits: what crystal texts and prompts use, and a few
more a formula or value might need."""
_DIGITS = tuple("0123456789")


def prompt_words() -> tuple[str, ...]:
    """The words (runs of letters) of the prompt templates, in first-seen order."""
    words: dict[str, None] = {}
    for template in PROMPT_TEMPLATES:
        for word in re.findall(r"[A-Za-z]+", template.replace(MASK, " ")):
            words.setdefault(word, None)
    return tuple(words)


def vocabulary() -> list[str]:
    """Every token, in id order: special tokens, mask, digits, punctuation, elements, words."""
    tokens = [BOS_TOKEN, EOS_TOKEN, PAD_TOKEN, UNK_TOKEN, MASK, *_DIGITS, *PUNCTUATION]
    tokens += element_symbols()
    tokens += [word for word in prompt_words() if word not in tokens]
    return tokens


def _split_pattern() -> str:
    """Regex whose matches are the tokens; text between matches becomes ``<unk>``."""
    words = sorted(prompt_words(), key=len, reverse=True)
    symbols = sorted(element_symbols(), key=len, reverse=True)  # longest first: Cl before C
    alternatives = [re.escape(MASK)]
    alternatives += [f"(?<![A-Za-z]){word}(?![A-Za-z])" for word in words]
    alternatives += symbols
    alternatives += [re.escape(char) for char in (*_DIGITS, *PUNCTUATION)]
    return "|".join(alternatives)


def build_tokenizer(*, model_max_length: int = 2048) -> PreTrainedTokenizerFast:
    """A fresh tokenizer for crystal texts and the kit's prompts.

    ``tokenizer(text)`` prepends ``<s>``; append ``tokenizer.eos_token`` to training texts
    yourself (:func:`~flowllm_kit.text.prompts.training_text` does). Padding is on the
    right; set ``tokenizer.padding_side = "left"`` for batched generation. Save it with
    ``save_pretrained(folder)`` and load it with ``AutoTokenizer.from_pretrained(folder)``.

    Args:
        model_max_length: Longest sequence, in tokens, the model will see.

    Returns:
        A transformers fast tokenizer.

    Example::

        >>> tokenizer = build_tokenizer()
        >>> tokenizer.tokenize("NaCl\\n0.50")
        ['Na', 'Cl', '\\n', '0', '.', '5', '0']
    """
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab = {token: index for index, token in enumerate(vocabulary())}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK_TOKEN))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex(_split_pattern()), behavior="isolated")
    backend.decoder = decoders.Fuse()  # concatenate tokens as they are: exact round trip
    backend.post_processor = processors.TemplateProcessing(
        single=f"{BOS_TOKEN} $A",
        pair=f"{BOS_TOKEN} $A $B",
        special_tokens=[(BOS_TOKEN, vocab[BOS_TOKEN])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        unk_token=UNK_TOKEN,
        model_max_length=model_max_length,
        padding_side="right",
        clean_up_tokenization_spaces=False,
    )
