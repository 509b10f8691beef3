"""What every pytest suite here shares: a short report when two byte strings differ. pytest's own explanation runs
difflib over them, which for two image or model files takes hours (a failing comparison timed out in CI instead of
failing)."""


def pytest_assertrepr_compare(op, left, right):
    if op != "==" or not isinstance(left, (bytes, bytearray)) or not isinstance(right, (bytes, bytearray)):
        return None
    first = next((i for i, (a, b) in enumerate(zip(left, right)) if a != b), min(len(left), len(right)))
    return [f"{len(left)} bytes == {len(right)} bytes",
            f"the first difference at byte {first}: {left[first:first + 16]!r} against {right[first:first + 16]!r}"]
