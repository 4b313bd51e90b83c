import copy
import json
from pathlib import Path

import pytest

from tasks.text.hipho import (
    MEDAL_THRESHOLDS,
    Criterion,
    ExamFormatError,
    RuleJudge,
    answer_matches,
    grade_exam,
    grade_problem,
    load_answers,
    load_exam,
    medal_for,
    thresholds_for,
)
from vla_rl.cli import main

DATA = Path(__file__).resolve().parents[3] / "tasks" / "text" / "data"
EXAM, ANSWERS = DATA / "sample_exam.json", DATA / "sample_answers.jsonl"


@pytest.fixture(scope="module")
def exam():
    return load_exam(EXAM)


def test_load_sample_exam(exam):
    assert exam.name == "Sample_2025" and "9.81" in exam.information
    assert [p.id for p in exam.problems] == ["Sample_2025_1", "Sample_2025_2", "Sample_2025_3"]
    p1, p2, p3 = exam.problems
    assert p1.points == (1.0, 1.0, 2.0) and p1.units == (None, "s", "m") and p1.max_points == 4.0
    assert p1.references == (r"t = \sqrt{\frac{2h}{g}}", "2.02", "24.2")
    assert [c.points for c in p2.marking[0]] == [0.5, 0.5, 1.0, 0.5, 0.5]
    assert len(p3.marking) == 2 and p3.answer_types == ("Expression", "Multiple Choice")
    assert exam.max_score == 10.0


def test_grade_sample_exam(exam):
    """Expected by hand from the marking schemes and the sample outputs:
    problem 1 all correct (4); problem 2 wrong power (answer level 2, steps 0.5+0.5+1+0.5 = 2.5);
    problem 3 wrong work but right choice (answer level 1, best scheme 1+0+1 = 2)."""
    res = grade_exam(exam, load_answers(ANSWERS, exam), exam_name="IPhO 2025")
    g1, g2, g3 = res.problems
    assert (g1.answer_score, g1.step_score, g1.score) == (4.0, 4.0, 4.0)
    assert g2.sub_answers == [True, True, False] and g2.criteria == [0.5, 0.5, 1.0, 0.5, 0.0]
    assert (g2.answer_score, g2.step_score, g2.score) == (2.0, 2.5, 2.5)
    assert g3.sub_answers == [False, True] and g3.criteria == [1.0, 0.0, 1.0]
    assert (g3.answer_score, g3.step_score, g3.score) == (1.0, 2.0, 2.0)
    assert res.total == 8.5 and res.max_total == 10.0
    assert res.medal == "bronze" and res.thresholds == (19.7, 12.1, 7.2)
    assert grade_exam(exam, load_answers(ANSWERS), exam_name="F=MA 2025").medal is None  # 8.5 < 9
    own = grade_exam(exam, load_answers(ANSWERS))
    assert own.exam == "Sample_2025" and own.medal is None and own.thresholds is None


def test_missing_output_scores_zero(exam):
    res = grade_exam(exam, {"Sample_2025_1": r"\boxed{t = \sqrt{2h/g}} \boxed{2.02 s} \boxed{24.2 m}"})
    assert [g.score for g in res.problems] == [4.0, 0.0, 0.0]
    assert [g.answered for g in res.problems] == [True, False, False]


def test_a_custom_step_judge_plugs_in(exam):
    class Generous:
        def judge(self, criterion, problem, output):
            return criterion.points * 10  # clipped to the criterion's points

    g = grade_problem(exam.problems[2], "nothing useful", judge=Generous())
    assert g.answer_score == 0.0 and g.step_score == 3.0 and g.score == 3.0


def test_medal_table_is_the_official_one():
    assert MEDAL_THRESHOLDS == {
        "IPhO 2025": (19.7, 12.1, 7.2),
        "IPhO 2024": (20.8, 11.1, 3.6),
        "APhO 2025": (23.3, 18.7, 13.1),
        "EuPhO 2025": (16.5, 9.8, 5.8),
        "EuPhO 2024": (20.4, 14.2, 8.9),
        "NBPhO 2025": (28.6, 20.1, 15.2),
        "NBPhO 2024": (26.5, 19.4, 13.5),
        "PanPhO 2025": (41.5, 28.5, 14.5),
        "PanPhO 2024": (52.0, 37.5, 16.0),
        "PanMechanics 2025": (52.0, 36.0, 20.0),
        "PanMechanics 2024": (51.0, 26.0, 12.0),
        "F=MA 2025": (15.0, 11.0, 9.0),
        "F=MA 2024": (14.0, 12.0, 10.0),
    }


@pytest.mark.parametrize(
    "score, exam_name, medal",
    [
        (19.7, "IPhO 2025", "gold"),  # >= threshold earns the medal
        (19.69, "IPhO 2025", "silver"),
        (12.1, "IPhO 2025", "silver"),
        (7.2, "IPhO 2025", "bronze"),
        (7.19, "IPhO 2025", None),
        (3.6, "IPhO_2024", "bronze"),  # HiPhO's source spelling
        (52, "panpho 2024", "gold"),
        (15, "F=MA 2025", "gold"),
        (11.9, "F=MA 2024", "bronze"),
        (9.9, "F=MA 2024", None),
        (99, "Unknown 2030", None),
    ],
)
def test_medal_for(score, exam_name, medal):
    assert medal_for(score, exam_name) == medal


def test_thresholds_lookup():
    assert thresholds_for("EuPhO_2024") == (20.4, 14.2, 8.9) and thresholds_for("CPhO 2025") is None


@pytest.mark.parametrize(
    "candidate, reference, kind, unit, ok",
    [
        ("0.777", "0.777", "Numerical Value", "s", True),
        ("T = 0.779 s", "0.777", "Numerical Value", "s", True),  # within 1 %
        ("0.80 s", "0.777", "Numerical Value", "s", False),
        ("777 ms", "0.777", "Numerical Value", "s", True),  # converted
        ("0.777 m", "0.777", "Numerical Value", "s", False),  # wrong dimension
        ("0.777 blargs", "0.777", "Numerical Value", "s", False),  # unknown unit
        ("180", "[140, 215]", "Numerical Value", "m", True),  # an interval reference
        ("0.1 km", "[140, 215]", "Numerical Value", "m", False),
        (r"\frac{7}{9}", "0.7778", "Numerical Value", None, True),
        (r"\frac{I_0 a}{2r}\sin(\theta/2)", r"\frac{I_{0}a}{2r} \sin (\theta /2)", "Expression", None, True),
        (r"R - R_{\min} = 2a\sin(\theta/2)", r"R(\theta) - R_{\min} \approx 2a \sin(\theta/2)", "Equation", None, True),
        ("2a", "a", "Expression", None, False),
        ("(C)", "C", "Multiple Choice", None, True),
        ("D", "C", "Multiple Choice", None, False),
        ("anything", "", "Open-Ended", None, False),
    ],
)
def test_answer_matches(candidate, reference, kind, unit, ok):
    assert answer_matches(candidate, reference, kind, unit) is ok


def test_each_box_answers_one_sub_answer(exam):
    p1 = exam.problems[0]
    g = grade_problem(p1, r"\boxed{2.02 s}")  # one box cannot earn both numeric sub-answers
    assert g.sub_answers == [False, True, False]
    g = grade_problem(p1, r"\boxed{24.2 m} \boxed{2.02 s} \boxed{\sqrt{2h/g}}")  # order does not matter
    assert g.sub_answers == [True, True, True] and g.answer_score == 4.0


def test_rule_judge():
    judge = RuleJudge()
    numeric = "Award 1.0 pt if the answer obtains $t = 2.02 s$. Otherwise, award 0 pt."
    assert judge.satisfied(numeric, "so t is about 2.021 seconds")
    assert not judge.satisfied(numeric, "so t is about 2.2 seconds")
    symbolic = r"Award 0.5 pt if the answer writes $h = \frac{1}{2} g t^2$. Otherwise, award 0 pt."
    assert judge.satisfied(symbolic, r"we have $h=\frac12 g t^{2}$")
    assert not judge.satisfied(symbolic, r"we have $h = g t^2$")
    quoted = "Award 1 pt if the answer mentions the 'internal energy'. Partial points: 'heat' 0.5 pt."
    assert judge.satisfied(quoted, "The Internal Energy stays fixed") and not judge.satisfied(quoted, "heat")
    words = "Award 2.0 pt if the answer shows that the equilibrium is stable. Otherwise, award 0 pt."
    assert judge.satisfied(words, "this equilibrium is stable") and not judge.satisfied(words, "it wobbles")
    assert judge.judge(Criterion(numeric, 1.0), None, "t = 2.02") == 1.0  # type: ignore[arg-type]


def _write_exam(tmp_path, mutate=None, name="exam.json"):
    data = json.loads(EXAM.read_text())
    if mutate:
        mutate(data)
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize(
    "mutate, message",
    [
        (lambda d: d[2].pop("answer"), "exam.json problem 2: missing 'answer'"),
        (lambda d: d[1].pop("points"), "exam.json problem 1: missing 'points'"),
        (lambda d: d[3]["unit"].append("m"), "exam.json problem 3: 'answer', 'answer_type', 'unit' and 'points'"),
        (lambda d: d[1]["answer_type"].__setitem__(0, "Essay"), "exam.json problem 1: unknown answer_type 'Essay'"),
        (lambda d: d[2].__setitem__("points", [1, -1, 1]), "exam.json problem 2: every 'points' must be"),
        (lambda d: d[3].__setitem__("marking", "Award 1 pt"), "exam.json problem 3: 'marking' must be a list"),
        (lambda d: d[3].__setitem__("marking", [[1.0]]), "exam.json problem 3: marking scheme 1"),
        (lambda d: d[2].__setitem__("id", d[1]["id"]), "exam.json problem 2: duplicate id 'Sample_2025_1'"),
        (lambda d: d.pop(0), "exam.json: the first element must hold the exam information"),
        (lambda d: d.__setitem__(1, "not a problem"), "exam.json problem 1: must be a JSON object"),
        (lambda d: d[:] and d.__setitem__(slice(1, None), []), "exam.json: expected a JSON list"),
    ],
)
def test_exam_errors_name_file_and_problem(tmp_path, mutate, message):
    with pytest.raises(ExamFormatError) as e:
        load_exam(_write_exam(tmp_path, mutate))
    assert message in str(e.value)


def test_exam_file_errors(tmp_path):
    bad = tmp_path / "broken.json"
    bad.write_text("[{")
    with pytest.raises(ExamFormatError, match="broken.json: not valid JSON"):
        load_exam(bad)
    with pytest.raises(ExamFormatError, match="missing.json: cannot read"):
        load_exam(tmp_path / "missing.json")


def test_hipho_variants_are_accepted(tmp_path):
    def variants(d):
        d[1]["point"] = d[1].pop("points")  # HiPhO's F=MA files say "point"
        d[2]["marking"] = ["Award 1 pt if the answer uses $P = VI$.", "Check the units."]  # flat: one scheme
        d[3].pop("marking")  # answer level only

    exam = load_exam(_write_exam(tmp_path, variants))
    p1, p2, p3 = exam.problems
    assert p1.points == (1.0, 1.0, 2.0)
    assert p2.marking == ((Criterion(p2.marking[0][0].text, 1.0), Criterion("Check the units.", 2.0)),)
    assert p3.marking == ()
    assert grade_problem(p3, r"\boxed{C}").score == 1.0


def test_answers_file_errors(tmp_path, exam):
    path = tmp_path / "answers.jsonl"
    rows = ['{"id": "Sample_2025_1", "output": "x"}', "{nope", '{"id": "Sample_2025_1"}']
    for line_no, (content, message) in enumerate(
        [
            (rows[:2], "answers.jsonl line 2: not valid JSON"),
            ([rows[0], rows[2]], "answers.jsonl line 2: expected"),
            ([rows[0], rows[0]], "answers.jsonl line 2: duplicate answer for 'Sample_2025_1'"),
            (['{"id": "P9", "output": ""}'], "answers.jsonl line 1: unknown problem id 'P9'"),
        ]
    ):
        path.write_text("\n".join(content) + "\n")
        with pytest.raises(ExamFormatError) as e:
            load_answers(path, exam)
        assert message in str(e.value), line_no


def test_cli_grade_exam(capsys):
    assert main(["grade-exam", str(EXAM), str(ANSWERS), "--exam-name", "IPhO 2025"]) == 0
    out = capsys.readouterr().out
    assert "Sample_2025_2" in out and "2.50" in out
    assert "total: 8.50 / 10.00" in out and "medal: bronze" in out
    assert main(["grade-exam", str(EXAM), str(ANSWERS)]) == 0
    assert "medal: n/a" in capsys.readouterr().out


def test_cli_grade_exam_usage():
    with pytest.raises(SystemExit) as e:
        main(["grade-exam", str(EXAM)])  # answers file missing: argparse usage error
    assert e.value.code == 2


def test_cli_grade_exam_bad_files(tmp_path, capsys):
    assert main(["grade-exam", str(tmp_path / "nope.json"), str(ANSWERS)]) == 2
    assert "nope.json: cannot read" in capsys.readouterr().err
    broken = copy.deepcopy(json.loads(EXAM.read_text()))
    del broken[2]["answer"]
    (tmp_path / "exam.json").write_text(json.dumps(broken))
    assert main(["grade-exam", str(tmp_path / "exam.json"), str(ANSWERS)]) == 2
    assert "exam.json problem 2: missing 'answer'" in capsys.readouterr().err
