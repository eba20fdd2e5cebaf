"""The offline CLIP tokenizer: one token per corpus word, saved and loaded like SD's."""

import pytest
from transformers import CLIPTokenizer

from fairaug.config.diffusion import DEFAULT_TEMPLATES
from fairaug.diffusion.prompts import all_prompts
from fairaug.diffusion.tokenizer import BOS, EOS, MAX_PROMPT_TOKENS, build_tokenizer, corpus_words
from fairaug.labels import HAM10000_DX, WOUND_PHASES

CORPUS = all_prompts(DEFAULT_TEMPLATES, {"derm": list(HAM10000_DX), "wound": list(WOUND_PHASES)})


@pytest.fixture(scope="module")
def tokenizer():
    return build_tokenizer(CORPUS)


def test_every_corpus_word_is_one_token(tokenizer):
    backend = tokenizer.backend_tokenizer
    for prompt in CORPUS:
        tokens = tokenizer.convert_ids_to_tokens(tokenizer(prompt).input_ids)
        words = [word for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(prompt))]
        assert tokens == [BOS, *(word + "</w>" for word in words), EOS], prompt
    assert max(len(tokenizer(prompt).input_ids) for prompt in CORPUS) <= MAX_PROMPT_TOKENS
    assert set(corpus_words(CORPUS)) >= {"fitzpatrick", "vi", ",", "melanocytic", "proliferative", "healthy"}


def test_special_tokens_and_padding_as_in_stable_diffusion(tokenizer):
    assert tokenizer.model_max_length == MAX_PROMPT_TOKENS
    assert tokenizer.bos_token == BOS and tokenizer.eos_token == tokenizer.pad_token == EOS
    padded = tokenizer([""], padding="max_length", max_length=tokenizer.model_max_length).input_ids[0]
    assert padded == [tokenizer.bos_token_id] + [tokenizer.eos_token_id] * (MAX_PROMPT_TOKENS - 1)


def test_unknown_words_fall_back_to_byte_level_characters(tokenizer):
    ids = tokenizer("zebra ünï 42!").input_ids
    tokens = tokenizer.convert_ids_to_tokens(ids)
    assert tokens[0] == BOS and tokens[-1] == EOS
    assert tokenizer.unk_token_id not in ids[1:-1]
    assert tokenizer.decode(ids, skip_special_tokens=True) == "zebra ünï 4 2 !"


def test_round_trips_through_save_and_load(tokenizer, tmp_path):
    tokenizer.save_pretrained(tmp_path)
    loaded = CLIPTokenizer.from_pretrained(tmp_path)
    assert loaded.model_max_length == tokenizer.model_max_length and len(loaded) == len(tokenizer)
    for prompt in [*CORPUS, "an unknown prompt"]:
        assert loaded(prompt).input_ids == tokenizer(prompt).input_ids
