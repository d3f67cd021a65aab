"""The documentation stays findable and true to the code: the generated tables of docs/config.md and
docs/results.md equal what docs/gen.py writes now (so a config key or a table column added without
documentation fails here), every relative link and anchor in README.md and docs/ resolves, and the README
stays short and leads with the two commands."""

import dataclasses
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]


def _gen():
    spec = importlib.util.spec_from_file_location("docs_gen", ROOT / "docs" / "gen.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _prose(text: str) -> list[str]:
    """The lines of a markdown text outside fenced code blocks."""
    out, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            out.append(line)
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation (backticks too) dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    out = set()
    for line in _prose(path.read_text(encoding="utf-8")):
        m = re.match(r"#{1,6}\s+(.*)", line)
        if m:
            s = slug(m.group(1))
            out.add(s if s not in seen else f"{s}-{seen[s]}")
            seen[s] = seen.get(s, 0) + 1
    return out


def links(path: Path) -> list[str]:
    found = []
    for line in _prose(path.read_text(encoding="utf-8")):
        line = re.sub(r"`[^`]*`", "", line)
        found += re.findall(r"!?\[[^\]]*\]\(([^)\s]+)\)", line)
    return [t for t in found if not re.match(r"[a-z]+:", t)]  # relative only (no http:, mailto:)


# ----------------------------------------------------------------------------- generated from the code

def test_generated_tables_match_the_code():
    """Regenerated in memory, docs/config.md and docs/results.md are unchanged."""
    stale = [p.relative_to(ROOT) for p, (now, new) in _gen().expected().items() if now != new]
    assert not stale, f"out of date: {', '.join(map(str, stale))}; run `python docs/gen.py`"


def test_every_config_key_is_in_config_md():
    from harness.config import SECTIONS
    from harness.config.adaptive_config import AdaptiveConfig
    from harness.config.headline import HEADLINE_KEYS
    from harness.config.study_config import StudyConfig

    def keys(prefix: str, cls: type) -> list[str]:
        out = []
        for f in dataclasses.fields(cls):
            nested = isinstance(f.default_factory, type) and dataclasses.is_dataclass(f.default_factory)
            out += keys(f"{prefix}.{f.name}", f.default_factory) if nested else [f"{prefix}.{f.name}"]
        return out

    expected = [k for name, cls in SECTIONS.items() for k in keys(name, cls)]
    expected += keys("study", StudyConfig) + keys("adaptive", AdaptiveConfig)
    expected += [f"headline.{k}" for k in HEADLINE_KEYS]
    assert "data.synth.signal" in expected
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    missing = [k for k in expected if f"`{k}`" not in text]
    assert not missing, f"config keys missing from docs/config.md: {missing}; run `python docs/gen.py`"


def test_every_column_is_in_results_md():
    from harness.schema import SCHEMAS

    text = (ROOT / "docs" / "results.md").read_text(encoding="utf-8")
    for table, schema in SCHEMAS.items():
        section = text.split(f"## `{table}`", 1)
        assert len(section) == 2, f"docs/results.md has no section for table {table}"
        body = section[1].split("\n## ", 1)[0]
        missing = [c for c in schema.names if f"`{c}`" not in body]
        assert not missing, f"{table} columns missing from docs/results.md: {missing}; run `python docs/gen.py`"


def test_the_generator_refuses_an_undocumented_key():
    gen = _gen()
    with pytest.raises(KeyError, match="no description for extra"):
        gen._documented({"a": "x"}, ["a", "extra"], "study")


# ----------------------------------------------------------------------------- links

@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in links(page):
        file, _, anchor = target.partition("#")
        dest = (page.parent / file).resolve() if file else page
        if not dest.exists():
            broken.append(f"{target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading with that anchor)")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_slug_is_githubs():
    assert slug("Controlled distance: `lag`") == "controlled-distance-lag"
    assert slug("8. Does the headline reproduce? — `reproduce.sh`") == "8-does-the-headline-reproduce--reproducesh"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(README)}
    assert not [p.name for p in DOCS if p.resolve() not in linked]


# ----------------------------------------------------------------------------- the README

def test_readme_is_short():
    n = len(README.read_text(encoding="utf-8").splitlines())
    assert n <= 250, f"README.md has {n} lines; move detail into docs/"


def test_readme_lines_fit_outside_tables():
    long = [i + 1 for i, line in enumerate(README.read_text(encoding="utf-8").splitlines())
            if len(line) > 120 and not line.startswith("|")]
    assert not long, f"README.md lines over 120 characters: {long}"


def test_readme_leads_with_make_bench_and_make_test():
    """The first two commands the README shows (in code blocks or code spans) are the two commands."""
    text = README.read_text(encoding="utf-8")
    segments, fenced = [], False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif fenced:
            segments.append(line.split("#")[0].strip())
        else:
            segments += re.findall(r"`([^`]+)`", line)
    command = re.compile(r"(make|harness|python|pip|\.venv/bin/\S+|cd|tensorboard|mlflow|wandb)(\s|$)")
    commands = [s for s in segments if command.match(s)]
    assert commands[:2] == ["make bench", "make test"], commands[:4]


def test_readme_names_the_ci_test_command():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    targets = re.findall(r"^make (\S+)", ci, re.M)
    assert "test" in targets
    text = README.read_text(encoding="utf-8")
    for t in targets:
        assert re.search(rf"^{t}:", makefile, re.M), f"Makefile has no target {t}"
        assert f"make {t}" in text, f"README.md does not name `make {t}`, which .ci/run runs"


def test_readme_headline_keeps_its_machine_and_command():
    """The measured answer stays beside the command and machine that produced it, says what the full
    narrative in docs/bench.md says, and names what it was checked against."""
    text = README.read_text(encoding="utf-8")
    marker = "Reached the target within 1,000 steps"
    section = next(s for s in text.split("\n## ") if marker in s)
    for fact in ("`make bench`", "AMD EPYC", "torch 2.13.0+cpu", "AVX512", "2026-12-08", "results/bench/report.md",
                 "1000-1011", "benchmarks/validity.py", "not real-title facts"):
        assert fact in section, fact
    paragraph = next(p for p in section.split("\n\n") if marker in p)
    bench = (ROOT / "docs" / "bench.md").read_text(encoding="utf-8")
    for number in re.findall(r"\d+(?:\.\d+)?(?:e-\d+)?", paragraph):
        assert number in bench, f"README's headline number {number} is not in docs/bench.md"


# ----------------------------------------------------------------------------- wording

@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_seed_means_a_random_seed_and_no_history(page):
    """"Seed" is a random seed (the code the project grew from is "the reference code"), and the docs
    say what is, without the story of how it came to be."""
    text = page.read_text(encoding="utf-8")
    bad = re.findall(r"the seed's|in the seed\b|seed-scale|issue #?\d+|was lent|added later|no GPU was", text,
                     re.I)
    assert not bad, f"{page.relative_to(ROOT)}: {bad}"


def test_help_readme_table_and_subcommands_agree():
    """`harness init --help` names every shipped config; the README's command table has a row for every
    subcommand of the CLI (and no other), and every option of `harness run` and `harness predict`."""
    import argparse

    from harness.cli import build_parser
    from harness.shipped import config_files

    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    init_help = sub.choices["init"].format_help()
    shipped = [f.name.removesuffix(".yaml") for f in config_files()]
    assert len(shipped) >= 8 and all(re.search(rf"\b{name}\b", init_help) for name in shipped), init_help
    rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.startswith("| `harness ")]
    in_table = {re.match(r"\| `harness (--version|[a-z]+)", r).group(1) for r in rows}
    assert in_table - {"--version"} == set(sub.choices), in_table ^ set(sub.choices)
    for name in ("run", "predict", "launch"):
        (row,) = [r for r in rows if r.startswith(f"| `harness {name} ")]
        options = {o for a in sub.choices[name]._actions for o in a.option_strings if o.startswith("--")} - {"--help"}
        if name == "launch":  # its table row names the main options; `harness launch --help` has the rest
            options = {"--jobs", "--storage", "--artifacts", "--setup", "--dry-run"}
        missing = sorted(o for o in options if o not in row)
        assert not missing, f"README's `harness {name}` row lacks {missing}"
    # every option of `harness data check` says what it does
    check = sub.choices["data"]._actions[-1].choices["check"]
    assert all(a.help for a in check._actions if a.option_strings), [a.option_strings for a in check._actions]
