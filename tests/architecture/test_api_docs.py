"""The public C API documents its contract function by function: a function that returns rm_status names in its
comment the statuses it returns (or says it never fails), every status a header names exists, and a function that
returns a pointer says who owns it (frees it, or how long it stays valid). A function's comment is the block comment
right above it, or above the run of declarations it is grouped with (no blank line between them)."""
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
HEADERS = ROOT / "include" / "repmode"

# Words that say who owns a returned pointer and for how long.
OWNERSHIP = re.compile(r"\bfree[sd]?\b|\brm_free\b|\bowned\b|\bowns\b|\bborrowed\b|\bvalid (?:until|while|for)\b"
                       r"|\bstatic\b", re.I)
NEVER_FAILS = re.compile(r"\bnever fails\b", re.I)
STATUS = re.compile(r"\bRM_ERR_\w+")


def known_statuses():
    """The members of enum rm_status, read from core.h."""
    text = (HEADERS / "core.h").read_text()
    body = re.search(r"typedef enum rm_status \{(.*?)\} rm_status;", text, re.S).group(1)
    return set(re.findall(r"\b(RM_\w+)\s*=", body))


def declarations(lines):
    """Every RM_API declaration as (first line, last line, return type, name), 0-based line numbers."""
    found, i = [], 0
    while i < len(lines):
        if lines[i].lstrip().startswith("RM_API "):
            j = i
            while ";" not in lines[j]:
                j += 1
            decl = " ".join(l.strip() for l in lines[i:j + 1])
            m = re.match(r"RM_API\s+(.*?)\b(rm_\w+)\s*\(", decl)
            found.append((i, j, m.group(1).strip(), m.group(2)))
            i = j
        i += 1
    return found


def comment_above(lines, first, decl_lines):
    """The block comment ending right above line `first`, skipping the declarations grouped with it; None if none."""
    i = first - 1
    while i >= 0 and i in decl_lines:
        i -= 1
    if i < 0 or not lines[i].rstrip().endswith("*/"):
        return None
    j = i
    while "/*" not in lines[j]:
        j -= 1
    return "\n".join(lines[j:i + 1])


def offences(text, statuses, where="header"):
    """What is wrong with one header's text, as messages."""
    lines = text.splitlines()
    decls = declarations(lines)
    decl_lines = {n for first, last, _, _ in decls for n in range(first, last + 1)}
    found = [f"{where}: {s} is not a status of rm_status" for s in sorted(set(STATUS.findall(text)) - statuses)]
    for first, _, ret, name in decls:
        comment = comment_above(lines, first, decl_lines)
        if comment is None:
            if ret == "rm_status" or "*" in ret:
                found.append(f"{where}:{first + 1}: {name} has no comment")
            continue
        if ret == "rm_status" and not STATUS.search(comment) and not NEVER_FAILS.search(comment):
            found.append(f"{where}:{first + 1}: {name} returns rm_status but its comment names no status "
                         "(RM_ERR_...) and does not say it never fails")
        if "*" in ret and not OWNERSHIP.search(comment):
            found.append(f"{where}:{first + 1}: {name} returns a pointer but its comment does not say who owns it "
                         "(free, owned, borrowed, valid until/while, static)")
    return found


def test_the_check_catches_what_it_must():
    statuses = {"RM_OK", "RM_ERR_ARGUMENT", "RM_ERR_NOMEM"}
    bad = "\n".join([
        "RM_API rm_status rm_undocumented(rm_ctx *ctx);",
        "",
        "/* Does something. */",
        "RM_API rm_status rm_silent(rm_ctx *ctx,",
        "                           int x);",
        "/* Makes a thing. */",
        "RM_API rm_thing *rm_thing_make(void);",
        "/* RM_ERR_BOGUS when it feels like it. */",
        "RM_API rm_status rm_bogus(rm_ctx *ctx);",
    ])
    found = offences(bad, statuses)
    for name in ("rm_undocumented has no comment", "rm_silent returns rm_status", "rm_thing_make returns a pointer",
                 "RM_ERR_BOGUS is not a status"):
        assert any(name in f for f in found), (name, found)
    assert len(found) == 4, found

    good = "\n".join([
        "/* RM_ERR_ARGUMENT for a NULL x; RM_ERR_NOMEM. The result is the caller's: free it with rm_thing_free. */",
        "RM_API rm_status rm_thing_create(rm_ctx *ctx, rm_thing **out);",
        "RM_API rm_thing *rm_thing_make(void);",
        "/* Never fails. */",
        "RM_API rm_status rm_nop(rm_ctx *ctx);",
        "RM_API int rm_undocumented_count(void);",
    ])
    assert offences(good, statuses) == []


def test_every_public_function_documents_its_statuses_and_ownership():
    statuses = known_statuses()
    assert {"RM_OK", "RM_ERR_ARGUMENT", "RM_ERR_NOMEM"} <= statuses, statuses
    headers = sorted(HEADERS.glob("*.h"))
    assert headers, f"no headers under {HEADERS}"
    found, n_functions = [], 0
    for h in headers:
        text = h.read_text()
        n_functions += len(declarations(text.splitlines()))
        found += offences(text, statuses, str(h.relative_to(ROOT)))
    assert n_functions > 100, f"only {n_functions} RM_API functions found: the parser has lost its way"
    assert not found, "\n".join(found)
