"""Data CSVs (docs/cli.md §4.2) that the command line's and the Python package's tests both read, and the reference
reading of one: Python's csv module."""
import csv
import os

# Files a quoted CSV names, in the order train reads them, and the images of `repmode synth cells` they link to.
QUOTED_FILES = ['sig,nal "1".nrrd', "nuc lei, target.nrrd", "membranes.nrrd"]
QUOTED_LINKS = ["signal.nrrd", "nuclei.nrrd", "membranes.nrrd"]
# A byte-order mark, CRLF, a blank line, a comma, doubled quotes and a line break inside quotes, spaces before a
# quote and around an unquoted field, a last line ended by CR.
QUOTED = (b'\xef\xbb\xbfsignal,task,target\r\n\r\n'
          b'"sig,nal ""1"".nrrd",nuclei,"nuc lei, target.nrrd"\r\n'
          b'  "sig,nal ""1"".nrrd", membranes ,"membranes.nrrd\n"\r')

# Bad CSVs of the tasks nuclei and membranes over signal.nrrd, and how the message goes on after the file's name.
BAD = [
    (b'signal,target,task\nsignal.nrrd,nuclei.nrrd,nuclei\n"signal.nrrd,nuclei.nrrd,nuclei\n',
     " line 3: a quoted field is not closed"),
    (b'signal,target,task\r\nsignal.nrrd,nu"clei.nrrd,nuclei\r\n', " line 2: a stray quote"),
    (b'signal,target,task\n"signal.nrrd" ,nuclei.nrrd,nuclei\n', " line 2: a stray quote"),
    (b'signal,target,task\n"signal\n.nrrd",nuclei.nrrd,nuclei\nsignal.nrrd,nuclei.nrrd\n',
     " line 4 has 2 fields, the header 3"),
    (b'signal,target,task\rsignal.nrrd,nuclei.nrrd,nuclei\rsignal.nrrd,\x00,nuclei\r', " line 3: a NUL byte"),
    (b'\xef\xbb\xbfsignal,target,task\nsignal.nrrd,nuclei\xff.nrrd,nuclei\n', " line 2: not UTF-8 text"),
    (b'signal,target,task,signal\nsignal.nrrd,nuclei.nrrd,nuclei,signal.nrrd\n',
     ": the column 'signal' is named twice"),
]


def write_quoted(cells, folder):
    """QUOTED as folder/q.csv, its files linked to the images of the folder `cells`."""
    for name, target in zip(QUOTED_FILES, QUOTED_LINKS):
        os.symlink(os.path.join(cells, target), os.path.join(folder, name))
    path = os.path.join(folder, "q.csv")
    with open(path, "wb") as f:
        f.write(QUOTED)
    return path


def csv_module_reads(path):
    """The reference: the images a data CSV names, in the order train reads them (each signal once), as Python's csv
    module reads the file (its fields trimmed of white space, blank records skipped)."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        records = [[c.strip() for c in r] for r in csv.reader(f, skipinitialspace=True)]
    records = [r for r in records if r and r != [""]]
    seen, files = set(), []
    for r in records[1:]:
        row = dict(zip(records[0], r))
        if row["signal"] not in seen:
            seen.add(row["signal"])
            files.append(row["signal"])
        files += [row["target"]] + ([row["mask"]] if row.get("mask") else [])
    return [os.path.join(os.path.dirname(path), f) for f in files]
