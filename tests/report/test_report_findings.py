"""Plain-language findings: the verdict follows the evidence, and edge cases read sensibly."""

from __future__ import annotations

from illusion_checks.report.findings import headline, language_finding
from illusion_checks.report.item_stats import Recovery, mc_only_recovery


def summary(kept=50, mc_only=30, produced_only=5, lost=5, median=3.0, delta_pr=0.2, ci=(0.1, 0.3)):
    n = kept + mc_only + produced_only + lost
    return {
        "n_items": 200, "n_both_correct": n,
        "fates": {"kept": kept, "mc_only": mc_only, "produced_only": produced_only, "lost": lost},
        "dissociation_rate": mc_only / n if n else None,
        "retention": (kept + produced_only) / n if n else None,
        "median_gold_rank": {"mc_only": median if mc_only else None},
        "delta_pr": delta_pr, "delta_pr_ci95": list(ci) if ci else None,
    }


def rec(beam, sample=None, n=30, probed=30):
    return Recovery(n, probed, beam, probed, sample)


def test_near_top_and_recovered_is_demoted():
    f = language_finding("sw", summary(), rec(0.55, 0.7))
    assert f.verdict == "demoted"
    assert f.text == ("sw: 33% of the answers the reference produced are now MC-only (30 of 90); "
                      "beam-5 recovers 55% of them, 10-sample decoding 70%; their gold first token "
                      "has median rank 3: the answers are demoted, not erased.")


def test_deep_rank_and_unrecovered_is_erased():
    f = language_finding("te", summary(median=40.0), rec(0.05, 0.1))
    assert f.verdict == "erased" and "look erased, not merely demoted" in f.text
    assert "demoted, not erased" not in f.text


def test_conflicting_evidence_is_mixed():
    f = language_finding("bn", summary(median=3.0), rec(0.05, 0.08))
    assert f.verdict == "mixed" and "some answers are demoted, others look lost" in f.text


def test_rank_alone_is_flagged_as_unconfirmed():
    f = language_finding("ar", summary(median=2.0), Recovery(30, 0, None, 0, None))
    assert f.verdict == "demoted"
    assert f.text.endswith("(beam search and sampling did not run to confirm).")


def test_partial_probing_is_said():
    f = language_finding("ar", summary(), rec(0.5, None, n=30, probed=12))
    assert "beam-5 recovers 50% of them (of the 12 probed); their gold" in f.text


def test_recovery_on_too_few_probed_items_does_not_decide():
    f = language_finding("te", summary(median=3.0), rec(0.0, 0.0, n=30, probed=3))
    assert f.verdict == "demoted"
    assert f.text.endswith("(too few items were probed to confirm by search).")


def test_too_few_mc_only_items_give_no_verdict():
    f = language_finding("en", summary(mc_only=2), rec(1.0, 1.0, n=2, probed=2))
    assert f.verdict == "unknown" and "too few to tell" in f.text


def test_no_mc_only_items():
    assert "still produced" in language_finding("en", summary(mc_only=0, lost=1), rec(None)).text
    lost = language_finding("en", summary(mc_only=0, lost=20), rec(None))
    assert lost.verdict == "none" and "lost in both formats" in lost.text


def test_notable_loss_is_added():
    f = language_finding("te", summary(kept=40, lost=30), rec(0.6, 0.7))
    assert f.text.endswith("Another 29% are lost in both formats.")


def test_no_both_correct_items():
    f = language_finding("xx", summary(0, 0, 0, 0), rec(None))
    assert f.verdict == "empty" and "no fates to track" in f.text


def test_headline_picks_the_worst_languages_and_reads_delta_pr():
    per = {"a": summary(mc_only=10), "b": summary(mc_only=40), "c": summary(mc_only=25)}
    found = [language_finding(k, s, rec(0.6, 0.6)) for k, s in per.items()]
    lines = headline({"overall": summary(mc_only=75, delta_pr=0.2)}, found, "wanda:0.5")
    assert lines[0].startswith("After wanda:0.5, ") and "across 3 languages" in lines[0]
    assert "ΔPR is +0.20 (the 95% interval excludes 0): open generation degrades more" in lines[1]
    assert lines[2].startswith("b: ") and lines[3].startswith("c: ")
    negative = headline({"overall": summary(delta_pr=-0.05, ci=(-0.2, 0.1))}, found, "int4")
    assert "ΔPR is -0.05: MC scoring degrades as much as open generation" in negative[1]


def test_headline_without_both_correct_items():
    found = [language_finding("sw", summary(0, 0, 0, 0), rec(None))]
    (line,) = headline({"overall": summary(0, 0, 0, 0)}, found, "wanda:0.5")
    assert "in sw" in line and "cannot be tracked" in line


def test_mc_only_recovery_counts_probed_items_only(small_results):
    items = small_results["items"]
    result = mc_only_recovery(items)
    mc_only = [it for it in items if it["fate"] == "mc_only"]
    probed = [it for it in mc_only if it["compressed"]["beam"] is not None]
    assert result.n_items == len(mc_only) and result.n_beam == len(probed)
    assert result.beam == sum(it["compressed"]["beam"]["reached"] for it in probed) / len(probed)


def test_an_uninterpretable_rank_is_not_cited():
    s = {**summary(median=40.0), "rank_interpretable": False}
    f = language_finding("ru", s, rec(0.55, 0.7))
    assert "median rank" not in f.text
    assert "their gold rank is not interpretable here" in f.text
    assert f.verdict == "demoted"  # recovery alone decides; the deep rank would have made it "mixed"
