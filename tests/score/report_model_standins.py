"""Random-weight stand-ins with the real architectures of the `radeval` metrics, written where the
packages look for their weights (nothing is downloaded):

- a small BERT (transformers' BertModel; a WordPiece vocabulary built from the test reports)
  in a Hugging Face cache under the hub id `bert-base-uncased`, which f1chexbert reads its
  backbone config and tokenizer from; the same folder is RadGraph's transformer and BERTScore's model;
- chexbert.pth: RadEval's own CheXbert labeler (BertModel + 13 four-way and one two-way head) on
  that backbone, randomly initialised, in a hub cache as hf_hub_download leaves it;
- a RadGraph model folder (config.json, vocabulary/, weights.th): RadEval's vendored DyGIE with the
  embedder and the labels of radgraph-xl, randomly initialised.

Only the sizes are small (hidden 32, 2 layers): the classes and the loading code are RadEval's.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

SNAPSHOT = "0" * 40
LAYERS = 2


def _vocab(texts: list[str]) -> list[str]:
    # every letter and digit as a word too: RadGraph's tokenizer probes the special tokens with "a", "b"
    singles = set("abcdefghijklmnopqrstuvwxyz0123456789")
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())} | singles)
    letters = sorted({c for w in words for c in w})
    return ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *(f"##{c}" for c in letters if c not in words)]


def build_backbone(hf_home: Path, texts: list[str]) -> Path:
    """The small BERT as `bert-base-uncased` in the hub cache under `hf_home`; returns its folder."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizer

    snap = hf_home / "hub" / "models--bert-base-uncased" / "snapshots" / SNAPSHOT
    snap.mkdir(parents=True, exist_ok=True)
    (snap.parent.parent / "refs").mkdir(exist_ok=True)
    (snap.parent.parent / "refs" / "main").write_text(SNAPSHOT)
    vocab = snap / "vocab.txt"
    vocab.write_text("\n".join(_vocab(texts)) + "\n")
    BertTokenizer(str(vocab), do_lower_case=True, model_max_length=512).save_pretrained(str(snap))
    config = BertConfig(vocab_size=len(vocab.read_text().split()), hidden_size=32, num_hidden_layers=LAYERS,
                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=512)
    torch.manual_seed(0)
    BertModel(config).save_pretrained(str(snap))
    return snap


def _hub_file(cache: Path, repo: str, filename: str) -> Path:
    """Where hf_hub_download(repo, filename, cache_dir=cache) finds its file offline."""
    repo_dir = cache / ("models--" + repo.replace("/", "--"))
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(SNAPSHOT)
    (repo_dir / "snapshots" / SNAPSHOT).mkdir(parents=True, exist_ok=True)
    return repo_dir / "snapshots" / SNAPSHOT / filename


def build_chexbert(cache: Path, texts: list[str]) -> Path:
    """chexbert.pth of StanfordAIMI/RRG_scorers in the hub cache `cache` (needs the backbone in
    the default hub cache, offline). The random heads are centred on the mean [CLS] state of
    `texts`: a random backbone's [CLS] states differ little from report to report, and uncentred
    heads would give every report the same labels (every aggregation degenerate)."""
    import torch
    from transformers import AutoConfig, BertModel, BertTokenizer

    torch.manual_seed(1)
    backbone = BertModel(AutoConfig.from_pretrained("bert-base-uncased")).eval()
    hidden = backbone.config.hidden_size
    heads = torch.nn.ModuleList([torch.nn.Linear(hidden, 4) for _ in range(13)] + [torch.nn.Linear(hidden, 2)])
    tok = BertTokenizer.from_pretrained("bert-base-uncased")
    with torch.no_grad():
        enc = tok(texts, padding=True, return_tensors="pt")
        cls = backbone(**enc).last_hidden_state[:, 0]
        centre, spread = cls.mean(0), cls.std(0).mean()
        for head in heads:
            head.weight.div_(spread)
            head.bias.copy_(-head.weight @ centre)
    state = {**{f"bert.{k}": v for k, v in backbone.state_dict().items()},
             **{f"linear_heads.{k}": v for k, v in heads.state_dict().items()}}
    path = _hub_file(cache, "StanfordAIMI/RRG_scorers", "chexbert.pth")
    # the DataParallel prefix of the released checkpoint, which RadEval strips
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    return path


NER_LABELS = ["", "Anatomy::definitely present", "Observation::definitely present", "Observation::uncertain",
              "Observation::definitely absent"]
RELATION_LABELS = ["", "modify", "located_at", "suggestive_of"]


def radgraph_config(backbone: str) -> dict:
    bert = {"model_name": backbone, "max_length": 512}
    return {
        "dataset_reader": {"type": "dygie", "max_span_width": 8, "token_indexers": {"bert": bert}},
        "model": {
            "type": "dygie", "embedder": {"token_embedders": {"bert": bert}}, "initializer": {},
            "module_initializer": {}, "feature_size": 20, "max_span_width": 8, "target_task": "relation",
            "feedforward_params": {"num_layers": 2, "hidden_dims": 32, "dropout": 0.4},
            "loss_weights": {"ner": 1.0, "relation": 1.0, "coref": 0.0, "events": 0.0},
            "modules": {"ner": {}, "coref": {"spans_per_word": 0.3, "max_antecedents": 10},
                        "relation": {"spans_per_word": 0.5},
                        "events": {"trigger_spans_per_word": 0.3, "argument_spans_per_word": 0.8,
                                   "loss_weights": {"trigger": 1.0, "arguments": 0.5}}},
        },
    }


def build_radgraph(cache: Path, backbone: str, model_type: str = "radgraph-xl") -> Path:
    """<cache>/<model_type>/ as radgraph reads it, built the way RadGraph.__init__ builds its model."""
    import torch
    from dotmap import DotMap

    from pefomed.score.report_models import _radgraph_module

    _radgraph_module()  # RadEval's vendored RadGraph importable (its import name, see there)
    from RadEval.metrics.radgraph._vendor.allennlp.data import Vocabulary
    from RadEval.metrics.radgraph._vendor.allennlp.modules import text_field_embedders, token_embedders
    from RadEval.metrics.radgraph._vendor.dygie.models import dygie

    folder = cache / model_type
    folder.mkdir(parents=True, exist_ok=True)
    config = radgraph_config(backbone)
    (folder / "config.json").write_text(json.dumps(config))
    vocab = Vocabulary()
    vocab.add_tokens_to_namespace(NER_LABELS, f"{model_type}__ner_labels")
    vocab.add_tokens_to_namespace(RELATION_LABELS, f"{model_type}__relation_labels")
    vocab.save_to_files(str(folder / "vocabulary"))
    vocab = Vocabulary.from_files(str(folder / "vocabulary"))
    torch.manual_seed(2)
    embedder = text_field_embedders.BasicTextFieldEmbedder({"bert": token_embedders.PretrainedTransformerMismatchedEmbedder(
        model_name=backbone, max_length=512)})
    model_dict = DotMap(config).model
    for name in ["type", "embedder", "initializer", "module_initializer"]:
        del model_dict[name]
    model = dygie.DyGIE(vocab=vocab, embedder=embedder, **model_dict)
    with torch.no_grad():  # spread the random span and relation scores (some entities and relations found)
        for name, p in model.named_parameters():
            if "_embedder" not in name:
                p.mul_(4.0)
    torch.save(model.state_dict(), folder / "weights.th")
    return folder
