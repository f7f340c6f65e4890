"""English phonemes with the system espeak-ng versus the copies bundled in wheels.

Sources: ``system`` (the reference: Debian's 1.51 made the golden data), ``espeak-english``
(espeak-ng 1.51 in a Linux x86_64 wheel) and ``espeakng-loader`` (espeak-ng 1.52.0, every
platform). Each library runs in its own subprocess (phonemizer's espeak backend is per process),
chosen the way rhythmflow chooses it (``RHYTHMFLOW_ESPEAK=<source>``, see
``rhythmflow.lyrics.g2p.espeak_library``), through rhythmflow's own English G2P path (the same
normalisation, punctuation clean-up, phonemizer settings and phone merges). A source whose
package is not installed is skipped (with a note). Three sets:

  * golden lines: every line of the golden ``english_lines.jsonl`` through ``g2p_phonemes`` /
    ``g2p_tokens``, also compared with the stored upstream phonemes and tokens;
  * words: a few thousand distinct ordinary English words, one ``english_phonemes`` call each,
    from four offline sources (the golden lines, a hand-written list of everyday and song words
    below, words used at least twice in CPython's own documentation prose
    (``pydoc_data.topics``) and the nouns in inflect's plural tables);
  * text lines: the hand-written words in lines of eight, so that words meet in running text
    (linking sounds, reductions).

    python benchmarks/espeak_compare.py
    python benchmarks/espeak_compare.py --examples 40 --json /tmp/espeak.json
    python benchmarks/espeak_compare.py --sources system espeak-english

Prints each version, and per bundled source against the system one: the counts compared, how
many differ (and %), the phone substitutions behind the differences, and examples.

Measured (Debian 1.51 system library, espeak-english 0.1.1, espeakng-loader 0.2.4):
espeak-english differs on 0 of 118 golden lines, 0 of 3,723 words, 0 of 133 text lines;
espeakng-loader on 10, 65 and 13 (every one the 1.52 ``oːɹ`` → ``ɔːɹ`` change).
"""

from __future__ import annotations

import argparse
import collections
import difflib
import inspect
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_GOLDEN = Path(os.environ.get("RHYTHMFLOW_GOLDEN_DIR", REPO.parent / "shared" / "golden"))
DEFAULT_ASSETS = Path(os.environ.get("RHYTHMFLOW_ASSETS_DIR", REPO.parent / "shared" / "assets"))

# Everyday and song words, written for this benchmark (no order, no meaning).
EVERYDAY_WORDS = """
a about above across act after again against age ago air all almost alone along already also
always am among an and anger angel animal another answer any anyone anything apart apple are arm
arms around arrive art as ask asleep at away baby back bad bag ball band bank bar base bath be
beach bear beat beautiful became because become bed been before began begin behind being believe
bell belong below bend beneath beside best better between beyond big bird birth bit bite black
blade blame blank bleed bless blind blood bloom blow blue board boat body bone book border born
borrow both bottle bottom bought bound bow box boy brain brave bread break breath breathe bride
bridge bright bring broke broken brother brought brown build burn burning bus bush busy but butter
buy by cage call calm came camera can candle cannot car card care careful carry case cast cat
catch caught cause cell center chain chair chance change chase cheap check cheek cherry chest
child children choice choose chorus church circle city claim class clean clear climb clock close
closer cloth cloud clouds coast coat coffee cold collar color come comfort coming common cool
corner cost could count country couple courage course cover crash crazy cream cried cross crowd
crown cry crying cup cut dance dancer dancing danger dark darling daughter dawn day days dead deal
dear death deep deeper desert desire destiny devil diamond did die different dinner dirt dirty do
doctor does dog doing done door doubt down drag draw dream dreamer dreams dress drink drive driver
drop drown drum dry dust each eagle ear early earth east easy eat echo edge eight either else
empty end enemy engine enough enter even evening ever every everybody everyone everything eye
eyes face fade faith fall fallen false family far farm fast fate father favorite fear feather feel
feeling feet fell fellow felt fence fever few field fight fill final find fine finger fire first
fish five flag flame flash flesh flight float floor flower fly follow food fool foot for forest
forever forget forgive forgot form forward found four free freedom friend friends from front fruit
full fun funny future game garden gate gave gentle get ghost gift girl give given glad glass glory
go god goes going gold golden gone good goodbye got grace grand grass grave gray great green grew
ground grow guard guess guitar gun guy hair half hall hand hands hang happen happy hard harm has
hate have he head heal hear heard heart hearts heat heaven heavy held hell hello help her here hero
hey hide high highway hill him his history hit hold hole holy home honest honey hope horse hot
hotel hour house how however human hundred hunger hungry hunt hurry hurt husband ice idea if
imagine in inside into iron is island it its jacket jail jealous job join joke journey joy judge
jump just keep kept key kick kid kill kind king kiss kitchen knee knew knife knock know known lady
lake land language large last late laugh laughter law lay lead leader learn least leave left leg
less lesson let letter liar lie life lift light lightning like line lion lip lips listen little
live lives living lock lonely long look lose lost lot loud love lover lovers loving low luck lucky
lullaby lying mad made magic mail make man many map march mark market marry master match matter
may maybe me mean meet melody memory men mercy message met middle midnight might mile milk mind
mine minute mirror miss mistake moment money monster month moon more morning most mother mountain
mouth move movie much music must my myself name narrow nature near neck need needle neighbor neither
nervous never new news next nice night nine no nobody noise none north nose not nothing now number
ocean of off offer often oh oil okay old on once one only open or orange order other our out outside
over own page pain paint pair palace paper paradise parent park part party pass past path pay peace
people perfect perhaps person phone piano pick picture piece pillow place plan plane play please
pocket poem poet point poison police poor pop power pray prayer pretty price pride prison promise
proud pull pure purple push put queen question quick quiet quite race radio rage rain rainbow raise
ran rather reach read ready real reason red remember rest return rhythm rich ride right ring rise
risk river road rock roll roof room root rope rose round run running sad safe said sail saint same
sand sat save saw say scar scene school scream sea search season seat second secret see seed seem
seen sell send sense sent serious serve set seven shadow shake shame shape share sharp she shine
ship shirt shoe shoot shore short shot should shoulder shout show shut shy sick side sigh sight
sign silence silent silk silver simple since sing singer single sister sit six size skin sky sleep
slow small smile smoke snow so soft soldier some somebody someone something sometimes son song
songs soon sorry soul sound south space speak special speed spend spirit spring stage stand star
stars start station stay steal step still stone stop storm story straight strange stranger stream
street strength strong stuck study stupid such sugar summer sun sunshine supposed sure surface
surprise sweet swim swing sword table tail take talk tall taste tea teach tear tears tell ten than
thank that the their them then there these they thing things think third this those though thought
thousand three threw throat through throw thunder ticket tide tiger time tired to today together
told tomorrow tongue tonight too took top touch toward town train treasure tree trouble truck true
trust truth try turn twelve twenty twice two under understand until up upon us use used valley
very victory village voice wait wake walk wall wander want war warm was wash watch water wave way
we weak wear weather wedding week weight welcome well went were west wet what wheel when where
whether which while whisper white who whole why wide wife wild will win wind window wine wing
winter wish with within without woke woman women wonder wonderful wood word words work world worry
worse worth would wound write wrong yard year years yellow yes yesterday yet you young your youth
""".split()


def golden_records(golden: Path) -> list[dict]:
    path = golden / "lyrics" / "english_lines.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def word_sources(records: list[dict]) -> dict[str, list[str]]:
    """Distinct lower-case words per offline source (first-seen order)."""
    import pydoc_data.topics

    import inflect

    def distinct(words) -> list[str]:
        return list(dict.fromkeys(w.lower() for w in words))

    golden = distinct(w for r in records for w in re.findall(r"[A-Za-z]+", r["text"]))
    prose = " ".join(pydoc_data.topics.topics.values())
    counts = collections.Counter(re.findall(r"(?<![\w.])[a-z]{2,14}(?![\w(])", prose))
    docs = [w for w, n in counts.items() if n >= 2]
    plural_tables = inspect.getsource(inflect)
    nouns = distinct(re.findall(r'"([a-z]{3,14})"', plural_tables))
    return {
        "golden lines": golden,
        "everyday list": distinct(EVERYDAY_WORDS),
        "python docs prose": docs,
        "inflect tables": nouns,
    }


def text_lines(words: list[str], per_line: int = 8) -> list[str]:
    return [" ".join(words[i : i + per_line]) for i in range(0, len(words), per_line)]


# ---------------------------------------------------------------- worker (one library)


def worker() -> None:
    """Phonemize the corpus read from stdin with the library RHYTHMFLOW_ESPEAK selects."""
    from rhythmflow.lyrics import g2p_phonemes, g2p_tokens
    from rhythmflow.lyrics.g2p import english

    corpus = json.load(sys.stdin)

    def attempt(fn, text):
        try:
            return fn(text)
        except Exception as exc:  # a difference worth showing, not a crash
            return f"error: {type(exc).__name__}: {exc}"

    info = english.espeak_info()
    start = time.perf_counter()
    out = {
        "source": info.library.source,
        "library": info.library.library,
        "data_path": info.library.data_path,
        "version": ".".join(map(str, info.version)),
        "lines": [
            [attempt(g2p_phonemes, t), attempt(g2p_tokens, t)] for t in corpus["golden_texts"]
        ],
        "words": [attempt(english.english_phonemes, w) for w in corpus["words"]],
        "text_lines": [attempt(english.english_phonemes, t) for t in corpus["text_lines"]],
    }
    out["seconds"] = time.perf_counter() - start
    json.dump(out, sys.stdout, ensure_ascii=False)


REFERENCE = "system"
SOURCES = ("system", "espeak-english", "espeakng-loader")


def run_worker(choice: str, corpus: dict, assets: Path) -> dict | None:
    """The worker's results with library ``choice``; None when that source is not installed."""
    env = {**os.environ, "RHYTHMFLOW_ESPEAK": choice, "RHYTHMFLOW_ASSETS_DIR": str(assets)}
    env.setdefault("HF_HUB_OFFLINE", "1")
    done = subprocess.run(
        [sys.executable, __file__, "--worker"],
        input=json.dumps(corpus),
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    if done.returncode != 0:
        if choice != REFERENCE and "is not installed" in done.stderr:
            print(f"{choice:16s} skipped: not installed on this machine")
            return None
        sys.exit(f"{choice} worker failed (exit {done.returncode}):\n{done.stderr}")
    return json.loads(done.stdout)


# ---------------------------------------------------------------- comparison


def substitutions(a: str, b: str) -> list[str]:
    """Phone-level edits turning ``a`` into ``b`` (``x→y``, ``+y``, ``-x``)."""
    pa, pb = a.split("|"), b.split("|")
    edits = []
    for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=pa, b=pb, autojunk=False).get_opcodes():
        if op != "equal":
            edits.append(f"{'|'.join(pa[i1:i2]) or '+'}→{'|'.join(pb[j1:j2]) or '-'}")
    return edits


def report(
    name: str, items: list[str], a: list, b: list, examples: int, other: str = "bundled"
) -> dict:
    """Print and return how many of ``items`` differ between ``a`` (system) and ``b`` (source
    ``other``), the phone edits behind the differences (phone strings only) and up to
    ``examples`` cases."""
    differ = [i for i, (x, y) in enumerate(zip(a, b, strict=True)) if x != y]
    pct = 100 * len(differ) / len(items) if items else 0.0
    print(f"\n{name}: {len(items)} compared, {len(differ)} differ ({pct:.2f}%)")
    patterns = collections.Counter()
    for i in differ:
        if isinstance(a[i], str) and isinstance(b[i], str):
            patterns.update(set(substitutions(a[i], b[i])))
    if patterns:
        print(f"  phone edits (system → {other}), items containing each:")
        for edit, n in patterns.most_common(15):
            print(f"    {n:5d}  {edit}")
    for i in differ[:examples]:
        print(f"  {items[i]!r}\n    system : {a[i]}\n    {other}: {b[i]}")
    return {
        "compared": len(items),
        "differ": len(differ),
        "percent": pct,
        "edits": dict(patterns.most_common()),
        "examples": [{"text": items[i], "system": a[i], other: b[i]} for i in differ],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--golden", type=Path, default=DEFAULT_GOLDEN)
    parser.add_argument("--assets", type=Path, default=DEFAULT_ASSETS)
    parser.add_argument("--examples", type=int, default=12, help="examples printed per set")
    parser.add_argument(
        "--sources",
        nargs="+",
        default=list(SOURCES),
        choices=SOURCES,
        help="libraries to run (the system one, the reference, is always run)",
    )
    parser.add_argument("--json", type=Path, help="also write the full comparison here")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker()
        return

    records = golden_records(args.golden)
    sources = word_sources(records)
    words = list(dict.fromkeys(w for ws in sources.values() for w in ws))
    corpus = {
        "golden_texts": [r["text"] for r in records],
        "words": words,
        "text_lines": text_lines(sources["everyday list"]),
    }
    sources_run = [REFERENCE] + [c for c in args.sources if c != REFERENCE]
    runs = {c: run_worker(c, corpus, args.assets) for c in sources_run}
    runs = {c: run for c, run in runs.items() if run is not None}
    for choice, run in runs.items():
        data = f", data {run['data_path']}" if run["data_path"] else ""
        print(
            f"{choice:16s} espeak-ng {run['version']:7s} {run['library']}{data} "
            f"({run['seconds']:.1f} s for all sets)"
        )
    print("words per source: " + ", ".join(f"{k} {len(v)}" for k, v in sources.items()))
    print(f"distinct words in all: {len(words)}")

    system = runs[REFERENCE]
    texts = corpus["golden_texts"]
    index = {w: i for i, w in enumerate(words)}
    results: dict = {"versions": {k: v["version"] for k, v in runs.items()}}
    for other, run in runs.items():
        if other == REFERENCE:
            continue
        print(f"\n======== system {system['version']} versus {other} {run['version']}")
        results[other] = {
            "golden lines": report(
                "golden English lines (phonemes)",
                texts,
                [p for p, _ in system["lines"]],
                [p for p, _ in run["lines"]],
                args.examples,
                other,
            ),
            "golden tokens": report(
                "golden English lines (tokens)",
                texts,
                [t for _, t in system["lines"]],
                [t for _, t in run["lines"]],
                0,
                other,
            ),
            "words": report("words", words, system["words"], run["words"], args.examples, other),
            "text lines": report(
                "text lines (everyday words, 8 per line)",
                corpus["text_lines"],
                system["text_lines"],
                run["text_lines"],
                args.examples,
                other,
            ),
        }
        print("\nwords that differ, per source:")
        for name, ws in sources.items():
            n = sum(system["words"][index[w]] != run["words"][index[w]] for w in ws)
            print(f"  {name:18s} {n:5d} / {len(ws):5d} ({100 * n / len(ws):.2f}%)")

    print("\nagainst the stored golden (upstream, espeak-ng 1.51) phonemes and tokens:")
    for choice, run in runs.items():
        wrong = 0
        for rec, (phonemes, tokens) in zip(records, run["lines"], strict=True):
            if "error" in rec:
                wrong += not str(phonemes).startswith("error:")
            else:
                wrong += phonemes != rec["phonemes"] or tokens != rec["tokens"]
        print(f"  {choice:16s} {run['version']:7s} {wrong} of {len(records)} lines differ")
        results[f"golden mismatches {choice}"] = wrong
    if args.json:
        args.json.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")


if __name__ == "__main__":
    main()
