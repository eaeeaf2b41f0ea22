"""LLM judge against a local OpenAI-compatible HTTP server and a tiny local causal LM (no downloads)."""

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from pefomed.score.judge import parse_score
from pefomed.score.run import score_files


class _Handler(BaseHTTPRequestHandler):
    calls = 0

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        prompt = body["messages"][0]["content"]
        type(self).calls += 1
        assert self.headers.get("Authorization") == "Bearer sekret"
        if "one digit from 0 to 4" in prompt:
            reply = "garbled" if "Cardiomegaly" in prompt else ("Score: 4" if "effusion" in prompt else "2")
        else:
            reply = "1" if "Model answer: yes" in prompt else "0"
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": reply}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    httpd = HTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    _Handler.calls = 0
    yield f"http://127.0.0.1:{httpd.server_address[1]}/v1"
    httpd.shutdown()


def _rows(tmp_path):
    rows = [{"id": "v1", "question": "effusion?", "prediction": "yes", "reference": "yes", "task": "vqa"},
            {"id": "v2", "question": "effusion?", "prediction": "no", "reference": "yes", "task": "vqa"},
            {"id": "r1", "prediction": "Small effusion.", "reference": "Small pleural effusion.", "task": "report"},
            {"id": "r2", "prediction": "Normal.", "reference": "Atelectasis.", "task": "report"},
            {"id": "r3", "prediction": "Cardiomegaly.", "reference": "Normal heart.", "task": "report"}]
    path = tmp_path / "PRED.jsonl"
    path.write_text("".join(json.dumps({"images": [], **r}) + "\n" for r in rows))
    return path


def test_http_judge_scores_caches_and_counts_unparseable(tmp_path, server, monkeypatch):
    monkeypatch.setenv("JUDGE_KEY", "sekret")
    path = _rows(tmp_path)
    opts = dict(judge_url=server, judge_model="m", judge_key_env="JUDGE_KEY", judge_cache=str(tmp_path / "cache"),
                bootstrap=50, meteor=False, clinical=False)
    m = score_files([path], **opts)
    judge = m["judge"]
    assert judge["vqa_correct"]["value"] == 0.5 and judge["vqa_correct"]["distribution"] == {"0": 1, "1": 1}
    likert = judge["report_likert"]
    assert likert["distribution"] == {"0": 0, "1": 0, "2": 1, "3": 0, "4": 1}
    assert likert["unparseable"] == 1 and likert["n"] == 2
    assert likert["value"] == pytest.approx((2 + 4) / 2)
    assert judge["report_likert/4"]["value"] == pytest.approx(6 / 8)
    assert _Handler.calls == 5
    again = score_files([path], **opts)  # all replies from the cache
    assert _Handler.calls == 5 and again["judge"] == m["judge"]
    assert again["settings"]["judge"]["calls"] == 0


def test_parse_score():
    assert parse_score("Score: 3/4", 4) == 3
    assert parse_score("I'd say 7", 4) is None
    assert parse_score("", 1) is None
    assert parse_score("10", 4) is None


def test_local_causal_lm_judge(tmp_path):
    torch = pytest.importorskip("torch")
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    corpus = ["reply with one digit 0 1 2 3 4 question answer model report effusion yes no"] * 3
    tok.train_from_iterator(corpus, trainers.WordLevelTrainer(special_tokens=["[UNK]", "[PAD]", "[EOS]"]))
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", eos_token="[EOS]")
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=fast.vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                         num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=512,
                         pad_token_id=fast.pad_token_id, eos_token_id=fast.eos_token_id, bos_token_id=None)
    model_dir = tmp_path / "tiny"
    LlamaForCausalLM(config).save_pretrained(model_dir)
    fast.save_pretrained(model_dir)
    path = _rows(tmp_path)
    opts = dict(judge_local=str(model_dir), judge_cache=str(tmp_path / "cache"), bootstrap=20, meteor=False,
                clinical=False)
    m = score_files([path], **opts)
    for name, total in (("vqa_correct", 2), ("report_likert", 3)):
        entry = m["judge"][name]
        # every reply is accounted for: parsed into the distribution or counted unparseable
        assert sum(entry["distribution"].values()) + entry["unparseable"] == total
    assert m["settings"]["judge"]["calls"] == 5
    assert score_files([path], **opts)["settings"]["judge"]["calls"] == 0
