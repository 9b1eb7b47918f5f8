"""Final answers in `\\boxed{...}` and their grading with math-verify."""

from __future__ import annotations

import threading


def extract_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (nested braces allowed), or None."""
    start = text.rfind("\\boxed")
    while start != -1:
        i = start + len("\\boxed")
        while i < len(text) and text[i] == " ":
            i += 1
        if i < len(text) and text[i] == "{":
            depth, j = 0, i
            while j < len(text):
                if text[j] == "{":
                    depth += 1
                elif text[j] == "}":
                    depth -= 1
                    if depth == 0:
                        return text[i + 1 : j].strip()
                j += 1
        start = text.rfind("\\boxed", 0, start)
    return None


def _normalize(answer: str) -> str:
    return answer.replace(" ", "").replace("$", "").rstrip(".").lower()


def grade_answer(given: str | None, ground_truth: str) -> bool:
    """True when `given` equals `ground_truth` mathematically (math-verify: 1/2 == 0.5,
    x^2+1 == 1+x^2), or as normalised text when the expressions do not parse."""
    if given is None or not given.strip():
        return False
    if _normalize(given) == _normalize(ground_truth):
        return True
    from math_verify import parse, verify

    # math-verify's timeouts use signals, which only the main thread may set.
    in_main = threading.current_thread() is threading.main_thread()
    timeout = 5 if in_main else None
    gold = parse(f"${ground_truth}$", parsing_timeout=timeout)
    pred = parse(f"${given}$", parsing_timeout=timeout)
    if not gold or not pred:
        return False
    return bool(verify(gold, pred, timeout_seconds=timeout))
