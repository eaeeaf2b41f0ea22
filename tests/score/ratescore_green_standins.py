"""Random-weight stand-ins with the real architectures of RaTEScore's and GREEN's models, in a Hugging
Face hub cache under their real hub ids (nothing is downloaded):

- Angelakeke/RaTE-NER-Deberta: transformers' DebertaV2ForTokenClassification with DeBERTa-v3's
  relative attention and RaTE-NER's 11 labels (B-/I- of ABNORMALITY, NON-ABNORMALITY, DISEASE,
  NON-DISEASE, ANATOMY, and O, its model card's order), with a SentencePiece unigram tokenizer
  (DebertaV2Tokenizer; [PAD] [CLS] [SEP] [UNK] [MASK] as DeBERTa-v3's) trained offline on the test texts;
- FremyCompany/BioLORD-2023-C: an MPNetModel (BioLORD-2023 is fine-tuned all-mpnet-base-v2) with an
  MPNetTokenizer over a WordPiece vocabulary of the test texts;
- a GREEN judge (hub id of StanfordAIMI/GREEN-radllama2-7b): a LlamaForCausalLM with a byte-fallback
  BPE LlamaTokenizer (<unk> <s> </s>, the 256 byte tokens) trained offline on GREEN's own prompts.

Only the sizes are small; the classes and every loading call are the packages' own.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

SNAPSHOT = "0" * 40
NER_REPO = "Angelakeke/RaTE-NER-Deberta"
EMBEDDING_REPO = "FremyCompany/BioLORD-2023-C"
GREEN_REPO = "StanfordAIMI/GREEN-radllama2-7b"
NER_LABELS = ["B-ABNORMALITY", "I-ABNORMALITY", "B-NON-ABNORMALITY", "I-NON-ABNORMALITY", "B-DISEASE", "I-DISEASE",
              "B-NON-DISEASE", "I-NON-DISEASE", "B-ANATOMY", "I-ANATOMY", "O"]


def snapshot(hf_home: Path, repo: str) -> Path:
    """The snapshot folder from_pretrained(repo) reads offline in the hub cache under `hf_home`."""
    repo_dir = hf_home / "hub" / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(SNAPSHOT)
    snap = repo_dir / "snapshots" / SNAPSHOT
    snap.mkdir(parents=True, exist_ok=True)
    return snap


def build_ner(hf_home: Path, texts: list[str]) -> Path:
    import sentencepiece as spm
    import torch
    from transformers import DebertaV2Config, DebertaV2ForTokenClassification, DebertaV2Tokenizer

    model = io.BytesIO()
    spm.SentencePieceTrainer.train(sentence_iterator=iter(texts * 4), model_writer=model, vocab_size=200,
                                   model_type="unigram", pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]",
                                   bos_piece="[CLS]", eos_piece="[SEP]", unk_piece="[UNK]",
                                   user_defined_symbols=["[MASK]"], hard_vocab_limit=False, minloglevel=2)
    sp = spm.SentencePieceProcessor(model_proto=model.getvalue())
    vocab = [(sp.id_to_piece(i), sp.get_score(i)) for i in range(sp.get_piece_size())]
    snap = snapshot(hf_home, NER_REPO)
    tokenizer = DebertaV2Tokenizer(vocab=vocab, unk_token="[UNK]", model_max_length=512)
    tokenizer.save_pretrained(str(snap))
    config = DebertaV2Config(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, relative_attention=True, position_buckets=256,
                             norm_rel_ebd="layer_norm", share_att_key=True, pos_att_type=["p2c", "c2p"],
                             position_biased_input=False, max_relative_positions=-1,
                             id2label=dict(enumerate(NER_LABELS)), label2id={k: i for i, k in enumerate(NER_LABELS)})
    torch.manual_seed(3)
    ner = DebertaV2ForTokenClassification(config).eval()
    with torch.no_grad():  # spread the random logits: every label, entities of every type and length
        ner.classifier.weight.mul_(30.0)
    ner.save_pretrained(str(snap))
    return snap


def _words(texts: list[str]) -> list[str]:
    singles = set("abcdefghijklmnopqrstuvwxyz0123456789")
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())} | singles)
    letters = sorted({c for w in words for c in w})
    return [*words, *(f"##{c}" for c in letters)]


def build_embedding(hf_home: Path, texts: list[str]) -> Path:
    import torch
    from transformers import MPNetConfig, MPNetModel, MPNetTokenizer

    tokens = ["<s>", "<pad>", "</s>", "[UNK]", "<mask>", *_words(texts)]
    snap = snapshot(hf_home, EMBEDDING_REPO)
    MPNetTokenizer(vocab={t: i for i, t in enumerate(tokens)}, model_max_length=512).save_pretrained(str(snap))
    config = MPNetConfig(vocab_size=len(tokens), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                         intermediate_size=64, max_position_embeddings=514, pad_token_id=1)
    torch.manual_seed(4)
    MPNetModel(config).save_pretrained(str(snap))
    return snap


def build_green(hf_home: Path, refs: list[str], hyps: list[str], repo: str = GREEN_REPO,
                analysis: str | None = None, folder: Path | None = None) -> Path:
    """The judge under `repo` (or in `folder`); its BPE is trained on GREEN's prompts of these
    reports (RadEval's make_prompt). Random weights write garbage. With `analysis`, the weights are
    set so that greedy decoding writes exactly `analysis` (one added token) after every prompt:
    the layers add nothing to the residual stream (o_proj and down_proj zero), so the next token
    depends on the current one only, and the output head maps the prompt's last token (</s>, which
    GREEN's add_eos_token appends) to the analysis and the analysis to </s>."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, LlamaTokenizer

    from pefomed.score.report_models import _no_nltk_download

    with _no_nltk_download():
        from radeval.metrics.green_score.utils import make_prompt
    prompts = [make_prompt(r, h) for r, h in zip(refs, hyps)]
    specials = ["<unk>", "<s>", "</s>"]
    byte_tokens = [f"<0x{b:02X}>" for b in range(256)]
    bpe = Tokenizer(models.BPE(unk_token="<unk>", byte_fallback=True))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
    bpe.decoder = decoders.Metaspace()
    bpe.train_from_iterator([p.replace(" ", "▁") for p in prompts],
                            trainers.BpeTrainer(vocab_size=700, special_tokens=specials + byte_tokens,
                                                show_progress=False))
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    snap = folder if folder is not None else snapshot(hf_home, repo)
    snap.mkdir(parents=True, exist_ok=True)
    tokenizer = LlamaTokenizer(vocab=model["vocab"], merges=merges, model_max_length=4096)
    if analysis is not None:
        from tokenizers import AddedToken

        tokenizer.add_tokens([AddedToken(analysis, normalized=False, special=False)])
    tokenizer.save_pretrained(str(snap))
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=4096,
                         bos_token_id=1, eos_token_id=2, pad_token_id=None, tie_word_embeddings=False)
    torch.manual_seed(5)
    judge = LlamaForCausalLM(config).eval()
    if analysis is not None:
        written, eos = len(tokenizer) - 1, tokenizer.eos_token_id
        emb = torch.nn.functional.normalize(judge.model.embed_tokens.weight.detach(), dim=-1)
        with torch.no_grad():
            for layer in judge.model.layers:
                layer.self_attn.o_proj.weight.zero_()
                layer.mlp.down_proj.weight.zero_()
            judge.lm_head.weight.zero_()
            judge.lm_head.weight[written] = 10 * emb[eos]
            judge.lm_head.weight[eos] = 10 * emb[written]
    judge.save_pretrained(str(snap))
    return snap
