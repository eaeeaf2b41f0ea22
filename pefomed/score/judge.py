"""LLM-as-judge: VQA answers judged correct (1) / incorrect (0); reports rated 0-4 on a consistency
rubric. Two protocols (`--judge-protocol`):

- `pefomed` (default): pefomed's own wording of PeFoMed's criteria, asking for "Score: N";
- `pefomed-paper`: PeFoMed's released prompts verbatim (pefomed.score.judge_prompts_pefomed), its
  VQA criterion "matches the correct answer or is a good enough answer" parsed after
  "Correctness:", its 0-4 report rubric parsed after "Score:".

The score is read after its label, never as the first digit anywhere ("on a 0-4 scale, 3" is 3).
The judge is any OpenAI-compatible chat endpoint or a local transformers causal LM. Replies are
cached on disk by a hash of (judge identity, prompt): the identity is the endpoint (credentials and
query removed) and model name, or a local model's path plus a sha256 of all its weight files.
Replies with no valid score are counted and shown beside the average, never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pefomed.errors import UserError
from pefomed.score import judge_prompts_pefomed as paper_prompts
from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec, mean_stats

VQA_PROMPT = """You are grading a medical visual question answering system.
Question: {question}
Correct answer: {reference}
Model answer: {prediction}
Is the model answer correct (it matches the correct answer, or is a good enough answer to the question)?
Reply in the form "Score: 1" if correct, "Score: 0" if not."""

REPORT_PROMPT = """You are a radiologist comparing a generated report with the reference report of the same study.
Rate their consistency on this scale:
0 = no consistency: the findings contradict or do not overlap;
1 = low consistency: few findings agree, critical findings differ;
2 = moderate consistency: some critical findings agree, several discrepancies;
3 = high consistency: most findings agree, minor discrepancies in critical findings;
4 = minimal discrepancy: all critical findings are consistent.
Reference report: {reference}
Generated report: {prediction}
Reply with one digit from 0 to 4, in the form "Score: N"."""


@dataclass(frozen=True)
class Protocol:
    vqa: str
    report: str
    vqa_label: str
    report_label: str
    max_tokens: int

    def prompt(self, row: Row) -> str:
        if row.task == "vqa":
            if self is PROTOCOLS["pefomed-paper"]:
                return self.vqa.format(question=row.question, true_answer=row.reference,
                                       generated_answer=row.prediction)
            return self.vqa.format(question=row.question, reference=row.reference, prediction=row.prediction)
        if self is PROTOCOLS["pefomed-paper"]:
            return self.report.format(ground_truth=row.reference, generated_report=row.prediction)
        return self.report.format(reference=row.reference, prediction=row.prediction)


PROTOCOLS = {
    "pefomed": Protocol(VQA_PROMPT, REPORT_PROMPT, "Score", "Score", max_tokens=16),
    # the released scripts asked for max_tokens=100 and parsed after these labels
    "pefomed-paper": Protocol(paper_prompts.VQA, paper_prompts.REPORT, "Correctness", "Score", max_tokens=100),
}

_NUMBER = r"(?<![\d.])(\d+(?:\.\d+)?)(?![\d.])"
# "0-4", "0 to 4", "out of 4", "/4": a scale named in the reply, not a score
_SCALE = re.compile(r"\d+\s*(?:-|–|to)\s*\d+|(?:out of|/)\s*\d+", re.IGNORECASE)


def parse_score(reply: str, high: int, label: str = "Score") -> int | None:
    """The judge's score: the first number after the last `label:` (PeFoMed's scripts read after
    the label too); without the label, the one number left once scales ("0-4", "out of 4") are
    removed. A number outside 0..high, a fraction, or none or several candidates: None."""
    reply = reply or ""
    marks = list(re.finditer(rf"\b{re.escape(label)}\b\s*[:=]?", reply, re.IGNORECASE))
    if marks:
        match = re.search(_NUMBER, reply[marks[-1].end():])
        candidates = [match.group(1)] if match else []
    else:
        candidates = re.findall(_NUMBER, _SCALE.sub(" ", reply))
    if len(candidates) != 1 or "." in candidates[0]:
        return None
    value = int(candidates[0])
    return value if 0 <= value <= high else None


class Judge:
    def __init__(self, name: str, ask: Callable[[str], str], cache_dir: Path):
        self.name = name
        self._ask = ask
        self.cache_dir = Path(cache_dir)
        self.calls = 0  # backend calls actually made (cache misses)

    def reply(self, prompt: str) -> str:
        key = hashlib.sha256(json.dumps([self.name, prompt]).encode("utf-8")).hexdigest()
        path = self.cache_dir / key[:2] / f"{key}.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))["reply"]
        text = self._ask(prompt)
        self.calls += 1
        from pefomed.io import write_json

        write_json(path, {"judge": self.name, "prompt": prompt, "reply": text})
        return text


def public_url(url: str) -> str:
    """The endpoint as it may be written down: user:password@ and the query string removed (an API
    key passed in the URL must never reach METRICS.json, the cache or the terminal)."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def http_judge(url: str, model: str, key_env: str | None, cache_dir: Path, timeout: float = 120.0,
               max_tokens: int = 16) -> Judge:
    """A judge behind an OpenAI-compatible /chat/completions endpoint (temperature 0)."""
    headers = {"Content-Type": "application/json"}
    if key_env:
        key = os.environ.get(key_env)
        if not key:
            raise UserError(f"`judge_key_env` {key_env}: the environment variable is not set")
        headers["Authorization"] = f"Bearer {key}"
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/chat/completions")

    def ask(prompt: str) -> str:
        body = json.dumps({"model": model, "temperature": 0, "max_tokens": max_tokens,
                           "messages": [{"role": "user", "content": prompt}]}).encode("utf-8")
        request = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            raise UserError(f"judge endpoint {shown} answered HTTP {err.code}: {err.read()[:200]!r}") from None
        except (urllib.error.URLError, TimeoutError) as err:
            raise UserError(f"judge endpoint {shown} unreachable: {type(err).__name__}") from None
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise UserError(f"judge endpoint {shown}: not a chat completion reply: {str(data)[:200]}") from None

    shown = public_url(endpoint)
    return Judge(f"http:{shown}:{model}", ask, cache_dir)


def weights_sha256(folder: Path, cache_dir: Path) -> str:
    """sha256 over every weight file of a local judge, whole files (two checkpoints differing only
    past their first bytes are different judges). Memoised by (path, size, mtime) in the cache."""
    weights = sorted(p for pattern in ("*.safetensors", "*.bin", "*.pt", "*.gguf") for p in folder.glob(pattern))
    stamp = json.dumps([[str(p.resolve()), p.stat().st_size, p.stat().st_mtime_ns] for p in weights])
    memo = cache_dir / "weights" / (hashlib.sha256(stamp.encode()).hexdigest() + ".json")
    if memo.is_file():
        return json.loads(memo.read_text(encoding="utf-8"))["sha256"]
    digest = hashlib.sha256()
    for path in weights:
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            for chunk in iter(lambda: handle.read(1 << 20), b""):
                digest.update(chunk)
    from pefomed.io import write_json

    write_json(memo, {"files": json.loads(stamp), "sha256": digest.hexdigest()})
    return digest.hexdigest()


def local_judge(path: str, cache_dir: Path, max_tokens: int = 16) -> Judge:
    """A local transformers causal LM as judge (greedy decoding, chat template when it has one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not Path(path).is_dir():
        raise UserError(f"`judge_local` {path}: not a folder with a causal LM")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    model.eval()

    def ask(prompt: str) -> str:
        if getattr(tokenizer, "chat_template", None):
            text = tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False,
                                                 add_generation_prompt=True)
        else:
            text = prompt + "\n"
        inputs = tokenizer(text, return_tensors="pt")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_tokens, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id or 0)
        return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    ident = weights_sha256(Path(path), Path(cache_dir))
    return Judge(f"local:{Path(path).resolve()}:sha256={ident}", ask, cache_dir)


def protocol_of(opts: Any) -> Protocol:
    name = getattr(opts, "judge_protocol", None) or "pefomed"
    if name not in PROTOCOLS:
        raise UserError(f"`judge_protocol` must be one of {', '.join(PROTOCOLS)}, got {name!r}")
    return PROTOCOLS[name]


def make_judge(opts: Any) -> Judge:
    cache = Path(opts.judge_cache or Path.home() / ".cache" / "pefomed" / "judge")
    max_tokens = protocol_of(opts).max_tokens
    if opts.judge_local:
        return local_judge(opts.judge_local, cache, max_tokens)
    if not opts.judge_model:
        raise UserError("`judge_url` needs `judge_model`")
    return http_judge(opts.judge_url, opts.judge_model, opts.judge_key_env, cache, max_tokens=max_tokens)


def judge_metrics(rows: list[Row], opts: Any, notes: dict | None = None, judge: Judge | None = None) -> list[MetricSpec]:
    protocol = protocol_of(opts)
    judge = judge or make_judge(opts)
    from pefomed.console import track

    n = len(rows)
    scores = np.zeros(n)
    parsed = np.zeros(n, dtype=bool)
    items = list(enumerate(rows))
    iterator = track(items, "judging") if getattr(opts, "progress", False) else items
    for i, row in iterator:
        high = 1 if row.task == "vqa" else 4
        reply = judge.reply(protocol.prompt(row))
        value = parse_score(reply, high, protocol.vqa_label if row.task == "vqa" else protocol.report_label)
        if value is not None:
            scores[i], parsed[i] = value, True
    specs = []
    for task, name, high in (("vqa", "vqa_correct", 1), ("report", "report_likert", 4)):
        in_task = np.array([r.task == task for r in rows])
        if not in_task.any():
            continue
        ok = in_task & parsed
        dist = {str(k): int(np.sum(ok & (scores == k))) for k in range(high + 1)}
        extra = {"distribution": dist, "unparseable": int(np.sum(in_task & ~parsed)), "judge": judge.name,
                 "statistic": "mean over parsed replies"}
        st, fn = mean_stats(scores, ok)
        specs.append(MetricSpec("judge", name, st, fn, n=int(ok.sum()), extra=extra,
                                binary=scores.copy() if high == 1 else None, mask=ok if high == 1 else None))
        if high == 4:
            st4, fn4 = mean_stats(scores / 4.0, ok)
            specs.append(MetricSpec("judge", "report_likert/4", st4, fn4, n=int(ok.sum()), extra=extra))
    if notes is not None:
        name = getattr(opts, "judge_protocol", None) or "pefomed"
        notes["judge"] = {"name": judge.name, "calls": judge.calls, "cache": str(judge.cache_dir),
                          "protocol": name, "protocol_text": (
                              "PeFoMed's released gpt_eval prompts, verbatim" if name == "pefomed-paper" else
                              "pefomed's wording of PeFoMed's criteria") + ": VQA 0/1, reports 0-4 Likert; mean over "
                              "parsed replies; the score is read after its label",
                          "unparseable": int(np.sum(~parsed))}
    return specs
