"""What a user reads: verdict sentences computed from metrics, numbers formatted by kind,
the compact console summary, the curves' panels, the demo's index page."""

import html
import re

import pytest

from mentor import recipes
from mentor.console import corruption_table, duration, format_value, print_metrics
from mentor.demo import write_index
from mentor.recipes import say as verdict
from mentor.report import _panels, plot_history, write_report

pytestmark = pytest.mark.neutral

CONSISTENCY = {"recipe": "consistency", "teacher_clean_acc": 0.985, "student_clean_acc": 0.975,
               "teacher_corrupt_acc": 0.7448, "student_corrupt_acc": 0.8961}
DISTILL = {"recipe": "distill", "teacher_acc": 0.985, "student_acc": 0.969,
           "student_labels_only_acc": 0.965, "teacher_params": 72666, "student_params": 10516}
ADAMATCH = {"recipe": "adamatch", "mode": "uda", "target_acc": 0.6556,
            "source_only_target_acc": 0.2272}


def test_consistency_verdict_gives_both_differences_in_points():
    # 0.8961 − 0.7448 = 0.1513 → 15.1 points; 0.975 − 0.985 = −0.010 → loses 1.0 point
    assert verdict(CONSISTENCY) == (
        "Under corruption the student beats its teacher by 15.1 points (74.5 % → 89.6 %) and "
        "loses 1.0 point on clean images (98.5 % → 97.5 %).")
    worse = {**CONSISTENCY, "student_corrupt_acc": 0.70, "student_clean_acc": 0.99}
    assert verdict(worse).startswith("Under corruption the student trails its teacher by "
                                     "4.5 points")
    assert "gains 0.5 points on clean images" in verdict(worse)


def test_a_verdict_leads_with_what_makes_its_numbers_doubtful():
    plain = verdict(CONSISTENCY)
    leaked = verdict({**CONSISTENCY, "warning_test_in_train": 120})
    assert leaked == ("Doubtful: 120 test images are also training images, so the test numbers "
                      "overstate it. " + plain)
    both = verdict({**ADAMATCH, "warning_test_in_train": 3,
                    "warning_data_changed_on_resume": "data.train"})
    assert both.startswith("Doubtful: 3 test images") and \
        "its data (data.train) changed while it was interrupted" in both
    assert both.endswith(verdict(ADAMATCH))


def test_distill_verdict_says_above_or_below_teacher_and_labels_only():
    said = verdict(DISTILL)
    assert "(10,516 parameters, 6.9× fewer than its teacher)" in said  # 72666 / 10516 = 6.91
    assert "96.9 %" in said
    assert "1.6 points below its teacher (98.5 %)" in said
    assert "0.4 points above the same student trained on the labels alone (96.5 %)" in said
    level = verdict({**DISTILL, "student_labels_only_acc": 0.969})
    assert "level with the same student trained on the labels alone" in level
    assert "labels for" not in said  # every image labeled: nothing to say
    partial = verdict({**DISTILL, "train_images": 3600, "labeled_images": 1000})
    assert partial.endswith(", with labels for 1,000 of its 3,600 training images: the "
                            "teacher labels the rest.")


def test_adamatch_verdict_gives_the_gain_over_source_only():
    assert verdict(ADAMATCH) == (
        "On the target domain AdaMatch classifies 65.6 % correctly, against 22.7 % for the "
        "same model trained on the labeled source alone: +42.8 points.")
    ssl = verdict({**ADAMATCH, "mode": "ssl", "target_acc": 0.20})
    assert ssl.startswith("On the test images") and "labeled images alone: −2.7 points" in ssl


def test_values_are_formatted_by_kind():
    assert format_value("test_acc", 0.98549) == "98.5 %"
    assert format_value("student_teacher_agreement", 0.5) == "50.0 %"
    assert format_value("student_params", 72666) == "72,666"
    assert format_value("seconds", 84.4) == "1 min 24 s"
    assert format_value("student_teacher_kl", 0.123456) == "0.1235 nats"
    assert format_value("backend", "torch") == "torch"
    assert duration(9.46) == "9.5 s" and duration(3725) == "1 h 2 min"


def test_the_console_prints_means_per_corruption_not_every_cell(capsys):
    metrics = {**CONSISTENCY, "recipe": "consistency", "seconds": 12.0}
    names = [f"c{i}" for i in range(19)]
    for who, base in (("teacher", 0.5), ("student", 0.7)):
        for i, c in enumerate(names):
            for s in range(1, 6):
                metrics[f"{who}_corrupt_acc/{c}/{s}"] = base + 0.01 * s  # mean = base + 0.03
    print_metrics(metrics, "runs/x", verdict(metrics))
    out = capsys.readouterr().out
    assert "corrupt_acc/" not in out  # 190 cells stay in metrics.json
    table = corruption_table(metrics)
    assert len(table) == 2 + 10  # title, header, 19 corruptions two a line
    assert "c0" in table[2] and "53.0%" in table[2] and "73.0%" in table[2]
    assert verdict(metrics) in out


def test_a_report_opens_with_its_verdict_and_explains_its_metrics(tmp_path):
    terms = recipes.get("distill").glossary
    page = write_report(tmp_path / "report.html", "t", DISTILL, [], verdict=verdict(DISTILL),
                        terms=terms).read_text()
    lead = re.search(r'<p class="verdict">(.*?)</p>', page).group(1)
    assert html.unescape(lead) == verdict(DISTILL)
    for key in ("student_labels_only_acc", "student_acc", "teacher_acc"):
        assert f"<dt>{key}</dt><dd>{html.escape(terms[key])}</dd>" in page
    assert "<td>96.9 %</td>" in page  # formatted by kind in the table too


def test_a_recipe_objective_and_the_validation_cross_entropy_get_separate_axes(tmp_path):
    h = {"loss": [1], "val_loss": [1], "acc": [1], "val_acc": [1], "agreement": [1],
         "val_agreement": [1], "kl": [1], "learning_rate": [1]}
    panels = dict(_panels(h, objective="KL·T²"))
    assert panels["KL·T²"] == ["loss"] and panels["validation cross-entropy"] == ["val_loss"]
    assert panels["accuracy"] == ["acc", "val_acc"]  # not hidden under the agreement
    assert panels["agreement with the teacher"] == ["agreement", "val_agreement"]
    plain = dict(_panels({"loss": [1], "val_loss": [1]}, objective=None))
    assert plain == {"cross-entropy": ["loss", "val_loss"]}  # one kind: one axis
    csv = tmp_path / "history.csv"
    csv.write_text("epoch,loss,val_loss,acc,val_acc\n0,2.0,1.0,0.5,0.6\n1,1.5,0.8,0.7,0.8\n")
    assert plot_history(csv, tmp_path / "c.png", objective="x").stat().st_size > 1000


def test_the_demo_index_links_every_part_with_its_headline(tmp_path):
    results = {"supervised": {"recipe": "supervised", "test_acc": 0.985, "params": 72666,
                              "test_images": 1000, "steps": 855},
               "distill": DISTILL, "adamatch": ADAMATCH}
    for part in results:
        (tmp_path / part).mkdir()
    (tmp_path / "distill" / "accuracy.png").write_bytes(b"png")
    page = write_index(tmp_path, results, {"supervised": 35, "distill": 68, "adamatch": 93},
                       196).read_text()
    assert recipes.get("adamatch").headline(ADAMATCH) == \
        "target: source-only 22.7 % → AdaMatch 65.6 %"
    assert html.escape(recipes.get("distill").headline(DISTILL)) in page
    for part in results:
        assert f'href="{part}/report.html"' in page
    assert 'src="distill/accuracy.png"' in page  # figures only where the file exists
    assert 'src="adamatch/' not in page
    assert "3 parts in 3 min 16 s" in page
