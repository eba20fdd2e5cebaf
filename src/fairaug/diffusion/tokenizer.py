"""An offline CLIP tokenizer whose vocabulary is the prompt corpus.

The tiny profile cannot download SD's 49k-token CLIP vocabulary, and would not want it: with a text
encoder of a few thousand parameters per token, one token per word keeps the embedding table small
and lets every word of a prompt be learned as a unit. The tokenizer is a stock byte-level
`CLIPTokenizer` (same normalisation and pre-tokenisation as SD's), so it saves and loads with the
pipeline like any other; words outside the corpus still tokenize, as byte-level characters.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import pre_tokenizers
from transformers import CLIPTokenizer

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
END_OF_WORD = "</w>"
# bos + the longest template prompt (15 tokens) + eos fit with room for longer label names
MAX_PROMPT_TOKENS = 24


def corpus_words(prompts: Iterable[str]) -> list[str]:
    """The distinct pre-tokens (words, punctuation) of the prompts, as the tokenizer sees them.

    Split by CLIP's own normaliser and pre-tokeniser, so a "word" here is exactly what BPE will merge.
    """
    backend = CLIPTokenizer().backend_tokenizer
    words: dict[str, None] = {}
    for prompt in prompts:
        normalized = backend.normalizer.normalize_str(prompt)
        words.update((word, None) for word, _ in backend.pre_tokenizer.pre_tokenize_str(normalized))
    return list(words)


def _apply_merges(symbols: list[str], ranks: dict[tuple[str, str], int]) -> list[str]:
    """BPE as the `tokenizers` library runs it: repeatedly merge the adjacent pair of lowest rank."""
    while len(symbols) > 1:
        pairs = [(ranks.get(pair, len(ranks)), i) for i, pair in enumerate(zip(symbols, symbols[1:]))]
        rank, i = min(pairs)
        if rank == len(ranks):
            break
        symbols = [*symbols[:i], symbols[i] + symbols[i + 1], *symbols[i + 2 :]]
    return symbols


def corpus_merges(words: Iterable[str]) -> list[tuple[str, str]]:
    """Merges that make every word one token, building it left to right.

    A word's merges are appended after all earlier ones: it is first split by the earlier merges
    (which may already join some of its characters), and its own merges then join those pieces
    left to right. Earlier words stay single tokens, because BPE applies lower ranks first.
    """
    merges: list[tuple[str, str]] = []
    ranks: dict[tuple[str, str], int] = {}
    for word in words:
        pieces = _apply_merges([*word[:-1], word[-1] + END_OF_WORD], ranks)
        prefix = pieces[0]
        for piece in pieces[1:]:
            ranks.setdefault((prefix, piece), len(merges))
            merges.append((prefix, piece))
            prefix += piece
    return merges


def build_tokenizer(prompts: Iterable[str], model_max_length: int = MAX_PROMPT_TOKENS) -> CLIPTokenizer:
    """A CLIP tokenizer that encodes each word of ``prompts`` as one token.

    Vocabulary, in CLIP's order: the 256 byte-level characters, the same with ``</w>``, the merge
    results, then the start and end tokens (end also pads, as in SD).
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    merges = corpus_merges(corpus_words(prompts))
    tokens = alphabet + [char + END_OF_WORD for char in alphabet] + [left + right for left, right in merges]
    vocab = {token: index for index, token in enumerate(dict.fromkeys([*tokens, BOS, EOS]))}
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=model_max_length)
