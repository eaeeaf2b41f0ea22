"""`pefomed infer --batch-size auto`: the largest batch that fits on the GPU, found before answering.

On CUDA the probe generates, in one batch, the `size` samples with the longest prompts (by the
length proxy that orders the batches: images first, then instruction characters) for the full
max_new_tokens (min_new_tokens forces that length, so the KV cache grows as far as any real batch's
can), with the run's beams and num_return_sequences. It starts at min(AUTO_START, number of
samples) and halves the size after each torch.OutOfMemoryError until one fits; nothing a probe
generates is kept. The sizes tried are recorded in PRED.settings.json (`generation.batch_size_auto`).

Without CUDA, auto is the source recipe's infer.batch_size: running out of CPU memory is not an
exception a process can catch (the operating system stops it), so there is nothing to probe safely.
"""

from __future__ import annotations

import gc
from collections.abc import Callable

from pefomed.errors import UserError

AUTO_START = 256  # the first size tried (capped at the number of samples)
AUTO_RULE = (f"CUDA: the first of min({AUTO_START}, samples), then half of it, and so on, whose batch of the longest "
             f"prompts generates max_new_tokens without torch.OutOfMemoryError; no CUDA: the source recipe's "
             f"infer.batch_size")


def _release_cuda_memory() -> None:
    import torch

    gc.collect()  # the failed try's tensors, held by its frames until now
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def largest_fitting(try_batch: Callable[[int], object], start: int,
                    release: Callable[[], None] = _release_cuda_memory) -> tuple[int, list[dict]]:
    """The first of start, start // 2, start // 4, ... for which `try_batch(size)` runs without
    torch.OutOfMemoryError, and every size tried ({"batch_size", "fits"}), in order. Any other
    error is not caught; `release` runs after each out-of-memory try, outside its except block
    (where the exception and its frames no longer hold the try's tensors)."""
    import torch

    if start < 1:
        raise ValueError(f"start must be at least 1, got {start}")
    size, tried = start, []
    while True:
        failed = False
        try:
            try_batch(size)
        except torch.OutOfMemoryError:
            failed = True
        tried.append({"batch_size": size, "fits": not failed})
        if not failed:
            return size, tried
        release()
        if size == 1:
            raise UserError("`batch_size` auto: one sample with the longest prompt does not fit in GPU memory "
                            f"(tried {', '.join(str(t['batch_size']) for t in tried)})",
                            hint="lower `max_new_tokens` or `num_return_sequences`, or use a larger GPU")
        size //= 2


def probe(generate, longest_first: list, exemplars: dict) -> Callable[[int], object]:
    """try_batch for `largest_fitting`: one generation of the `size` longest prompts
    (`longest_first`, longest first), each run to the full max_new_tokens; returns their ids."""

    def try_batch(size: int) -> list[str]:
        chunk = longest_first[:size]
        batch = generate.encode(chunk, [exemplars.get(s.id, []) for s in chunk])
        generate.generate_encoded(batch, chunk, min_new_tokens=generate.max_new_tokens)
        return [s.id for s in chunk]

    return try_batch


def auto_batch_size(generate, ordered: list, exemplars: dict, default: int, previous: dict | None = None
                    ) -> tuple[int, dict]:
    """(batch size, what to record as generation.batch_size_auto) for `ordered` (shortest prompt
    first, as the batches are). `previous`: an interrupted run's record, whose choice is kept (a
    resumed run then batches, and with sampling draws, as the interrupted one did)."""
    import torch

    if previous and isinstance(previous.get("batch_size_auto"), dict) and isinstance(previous.get("batch_size"), int):
        return previous["batch_size"], previous["batch_size_auto"]
    if generate.device.type != "cuda" or not torch.cuda.is_available():
        return default, {"device": generate.device.type, "rule": AUTO_RULE, "tried": []}
    size, tried = largest_fitting(probe(generate, ordered[::-1], exemplars), min(AUTO_START, len(ordered)))
    return size, {"device": "cuda", "rule": AUTO_RULE, "tried": tried}
