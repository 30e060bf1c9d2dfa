"""The README's figures are the result files' figures.

Every measured figure in README.md sits in a section that ``bench/readme_tables.py``
renders from ``bench/results/``; rendering again must reproduce the README exactly, and
no measured-looking figure (nats, images/s, GFLOP/s, MB, %, ±) may appear outside those
sections and code blocks except beside a citation of published work or as a goal.
"""

import re
import sys

from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import readme_tables  # noqa: E402

FIGURE = re.compile(r"\d[\d,]*(?:\.\d+)?\s*(?:nats|images/s|GFLOP/s|MB\b|GB\b|ms\b|s/epoch|minutes?\b|min\b|"
                    r"hours?\b|seconds?\b|s\b|%)|±\s*\d|\b(?:a few|several|about an?|under an?|within an?)\s+"
                    r"(?:seconds?|minutes?|hours?)\b", re.I)
# Published figures beside their citation, and goals (thresholds, not measurements). "At most"
# and "at least" are no exemption: "sized for at most 3 hours" is a measure and needs a file.
CITATION = re.compile(r"et al\.|published|\(\d{4}|\d{4}\)|goal")


def test_readme_sections_equal_what_their_result_files_render():
    text = (ROOT / "README.md").read_text()
    names = readme_tables.sections(text)
    assert {"default-run", "likelihood", "speed", "family", "classify", "anomaly", "inpaint",
            "export-bench"} <= set(names), names
    rendered = readme_tables.render(text)
    if rendered != text:
        diff = [(a, b) for a, b in zip(text.splitlines(), rendered.splitlines()) if a != b][:5]
        raise AssertionError(f"README.md differs from bench/results (python bench/readme_tables.py): {diff}")


def test_no_figure_is_typed_outside_the_rendered_sections():
    text = (ROOT / "README.md").read_text()
    text = readme_tables.SECTION.sub("", text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    typed = [line for line in text.splitlines() if FIGURE.search(line) and not CITATION.search(line)]
    assert not typed, "figures typed by hand (render them from bench/results):\n" + "\n".join(typed)
