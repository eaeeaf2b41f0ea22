"""The judge's API key is read from the environment variable named by --judge-key-env, sent
to the judge, and never written: not to METRICS.json, the report, the reply cache, or the
terminal."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from robust_checks import run_main

SECRET = "sk-test-7f3a9c1e55d24b0b"


class _Judge(BaseHTTPRequestHandler):
    seen: list[str] = []

    def do_POST(self):  # noqa: N802
        self.rfile.read(int(self.headers["Content-Length"]))
        type(self).seen.append(self.headers.get("Authorization", ""))
        data = json.dumps({"choices": [{"message": {"role": "assistant", "content": "1"}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


def test_judge_key_is_used_but_never_written(tmp_path, monkeypatch, capsys):
    httpd = HTTPServer(("127.0.0.1", 0), _Judge)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("PEFOMED_TEST_JUDGE_KEY", SECRET)
        pred = tmp_path / "pred.jsonl"
        pred.write_text("".join(json.dumps({"id": f"v{i}", "question": "effusion?", "prediction": "yes",
                                            "reference": "yes" if i else "no", "task": "vqa"}) + "\n" for i in range(3)))
        code, out, err = run_main(["score", pred, "--out", tmp_path / "out" / "metrics.json", "--bootstrap", "10",
                                   "--judge-url", f"http://127.0.0.1:{httpd.server_address[1]}/v1",
                                   "--judge-model", "m", "--judge-key-env", "PEFOMED_TEST_JUDGE_KEY",
                                   "--judge-cache", tmp_path / "cache", "--no-meteor", "--no-clinical"], capsys)
    finally:
        httpd.shutdown()
    assert code == 0, err
    assert _Judge.seen and all(h == f"Bearer {SECRET}" for h in _Judge.seen)  # the key was used
    assert SECRET not in out + err
    written = [p for p in tmp_path.rglob("*") if p.is_file() and p != pred]
    assert any(p.name == "metrics.json" for p in written) and any("cache" in p.parts for p in written)
    for path in written:
        assert SECRET.encode() not in path.read_bytes(), f"the judge key was written to {path}"
