"""LLM-as-judge, PeFoMed's GPT-4 protocol: VQA answers judged correct (1) / incorrect (0); reports
rated 0-4 on a consistency rubric. The judge is any OpenAI-compatible chat endpoint or a local
transformers causal LM. Replies are cached on disk by a hash of (judge, prompt), so a rerun costs
nothing; replies with no valid score are counted and shown, never dropped silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable

import numpy as np

from pefomed.errors import UserError
from pefomed.score.rows import Row
from pefomed.score.stats import MetricSpec, mean_stats

VQA_PROMPT = """You are grading a medical visual question answering system.
Question: {question}
Correct answer: {reference}
Model answer: {prediction}
Is the model answer correct (same meaning as the correct answer)? Reply with one digit: 1 if correct, 0 if not."""

REPORT_PROMPT = """You are a radiologist comparing a generated report with the reference report of the same study.
Rate their consistency on this scale:
0 = no consistency: the findings contradict or do not overlap;
1 = low consistency: few findings agree, critical findings differ;
2 = moderate consistency: some critical findings agree, several discrepancies;
3 = high consistency: most findings agree, minor discrepancies in critical findings;
4 = minimal discrepancy: all critical findings are consistent.
Reference report: {reference}
Generated report: {prediction}
Reply with one digit from 0 to 4."""


def parse_score(reply: str, high: int) -> int | None:
    """The first standalone digit in [0, high] of the reply, or None (unparseable)."""
    match = re.search(rf"(?<!\d)([0-{high}])(?!\d)", reply or "")
    return int(match.group(1)) if match else None


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


def http_judge(url: str, model: str, key_env: str | None, cache_dir: Path, timeout: float = 120.0) -> Judge:
    """A judge behind an OpenAI-compatible /chat/completions endpoint (temperature 0)."""
    headers = {"Content-Type": "application/json"}
    if key_env:
        key = os.environ.get(key_env)
        if not key:
            raise UserError(f"--judge-key-env {key_env}: the environment variable is not set")
        headers["Authorization"] = f"Bearer {key}"
    endpoint = url.rstrip("/") + ("" if url.rstrip("/").endswith("/chat/completions") else "/chat/completions")

    def ask(prompt: str) -> str:
        body = json.dumps({"model": model, "temperature": 0, "max_tokens": 16,
                           "messages": [{"role": "user", "content": prompt}]}).encode("utf-8")
        request = urllib.request.Request(endpoint, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = json.loads(response.read().decode("utf-8"))
        except urllib.error.HTTPError as err:
            raise UserError(f"judge endpoint {endpoint} answered HTTP {err.code}: {err.read()[:200]!r}") from None
        except (urllib.error.URLError, TimeoutError) as err:
            raise UserError(f"judge endpoint {endpoint} unreachable: {err}") from None
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise UserError(f"judge endpoint {endpoint}: not a chat completion reply: {str(data)[:200]}") from None

    return Judge(f"http:{endpoint}:{model}", ask, cache_dir)


def local_judge(path: str, cache_dir: Path) -> Judge:
    """A local transformers causal LM as judge (greedy decoding, chat template when it has one)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if not Path(path).is_dir():
        raise UserError(f"--judge-local {path}: not a folder with a causal LM")
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
            out = model.generate(**inputs, max_new_tokens=8, do_sample=False,
                                 pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id or 0)
        return tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True)

    weights = sorted(Path(path).glob("*.safetensors")) or sorted(Path(path).glob("*.bin"))
    ident = hashlib.sha256(b"".join(p.read_bytes()[:1 << 16] for p in weights)).hexdigest()[:16]
    return Judge(f"local:{Path(path).resolve()}:{ident}", ask, cache_dir)


def make_judge(opts: Any) -> Judge:
    cache = Path(opts.judge_cache or Path.home() / ".cache" / "pefomed" / "judge")
    if opts.judge_local:
        return local_judge(opts.judge_local, cache)
    if not opts.judge_model:
        raise UserError("--judge-url needs --judge-model")
    return http_judge(opts.judge_url, opts.judge_model, opts.judge_key_env, cache)


def judge_metrics(rows: list[Row], opts: Any, notes: dict | None = None, judge: Judge | None = None) -> list[MetricSpec]:
    judge = judge or make_judge(opts)
    from pefomed.console import track

    n = len(rows)
    scores = np.zeros(n)
    parsed = np.zeros(n, dtype=bool)
    items = list(enumerate(rows))
    iterator = track(items, "judging") if getattr(opts, "progress", False) else items
    for i, row in iterator:
        high = 1 if row.task == "vqa" else 4
        template = VQA_PROMPT if row.task == "vqa" else REPORT_PROMPT
        reply = judge.reply(template.format(question=row.question, reference=row.reference, prediction=row.prediction))
        value = parse_score(reply, high)
        if value is not None:
            scores[i], parsed[i] = value, True
    specs = []
    for task, name, high in (("vqa", "vqa_correct", 1), ("report", "report_likert", 4)):
        in_task = np.array([r.task == task for r in rows])
        if not in_task.any():
            continue
        ok = in_task & parsed
        dist = {str(k): int(np.sum(ok & (scores == k))) for k in range(high + 1)}
        extra = {"distribution": dist, "unparseable": int(np.sum(in_task & ~parsed)), "judge": judge.name}
        st, fn = mean_stats(scores, ok)
        specs.append(MetricSpec("judge", name, st, fn, n=int(ok.sum()), extra=extra,
                                binary=scores.copy() if high == 1 else None, mask=ok if high == 1 else None))
        if high == 4:
            st4, fn4 = mean_stats(scores / 4.0, ok)
            specs.append(MetricSpec("judge", "report_likert/4", st4, fn4, n=int(ok.sum()), extra=extra))
    if notes is not None:
        notes["judge"] = {"name": judge.name, "calls": judge.calls, "cache": str(judge.cache_dir),
                          "protocol": "PeFoMed GPT-4 protocol: VQA 0/1, reports 0-4 Likert; mean over parsed replies"}
    return specs
