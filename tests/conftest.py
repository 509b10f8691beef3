"""What every pytest suite here shares: a short report when two byte strings (or two long texts) differ. pytest's own
explanation runs difflib over them, which for two image or model files takes hours (a failing comparison timed out
in CI instead of failing)."""


def pytest_assertrepr_compare(op, left, right):
    binary = isinstance(left, (bytes, bytearray)) and isinstance(right, (bytes, bytearray))
    long_text = isinstance(left, str) and isinstance(right, str) and max(len(left), len(right)) > 10000
    if op != "==" or not (binary or long_text):
        return None
    first = next((i for i, (a, b) in enumerate(zip(left, right)) if a != b), min(len(left), len(right)))
    return [f"{len(left)} {'bytes' if binary else 'characters'} == {len(right)}",
            f"the first difference at {first}: {left[first:first + 16]!r} against {right[first:first + 16]!r}"]
