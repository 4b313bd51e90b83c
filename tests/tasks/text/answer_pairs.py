r"""A labelled set of answer pairs for `tasks.text.equivalence`: (reference, candidate, same?) by family.

Labels are what a careful human grader would say of the candidate as an answer to a question whose
reference answer is given, under the conventions the grader documents (math-verify's: a bare comma list
is a set of answers, ``[a, b]`` is ordered, ``x = 3`` answers with 3, a unit in ``\text{}`` is not part of
the value, ``10\%`` is 0.1, a float is right to 6 decimals). Tasks whose order matters (sorting) check
it themselves; their pairs here use the bracketed, ordered form where order is at stake. Every family
has pairs labelled different; each departure of ours from math-verify has at least one pair.
"""

from __future__ import annotations

from typing import NamedTuple


class Pair(NamedTuple):
    ref: str
    pred: str
    same: bool
    family: str


_T, _F = True, False

_BY_FAMILY: dict[str, list[tuple[str, str, bool]]] = {
    "arithmetic": [
        ("-7", "-7", _T), ("-7", "7", _F), ("430", "430.0", _T), ("430", "+430", _T), ("430", "4.3e2", _T),
        ("-1232", r"-1{,}232", _T), ("-1232", "-1,232", _T), ("-1232", "-1223", _F), ("0", "-0", _T),
        ("12", "$12$", _T), ("12", "(12)", _T), ("12", r"\boxed{12}", _T), ("12", "12.5", _F), ("100", "1e2", _T),
        ("1000000", "10^6", _T), ("1000000", "10^{6}", _T), ("1000000", "10^5", _F), ("56", "7 \\times 8", _T),
        ("56", "7 \\cdot 9", _F), ("-3", "−3", _T),
    ],
    "countdown": [
        ("15", "(3 * 10) / 2", _T), ("15", "(3 * 10) / 3", _F), ("38", "((75 - 17) - 17) - 3", _T),
        ("38", "75 - 17 - 17 - 4", _F), ("263", "(((15 + 1) * 16) + 7)", _T), ("263", "(((15 + 1) * 16) + 8)", _F),
        ("263", "263", _T),
        ("120", r"5 \times 4 \times 3 \times 2", _T), ("120", "5!", _T), ("24", "4!", _T), ("24", "3!", _F),
    ],
    "game24": [
        ("24", "(1 + 2) * (3 + 5)", _T), ("24", "(4 * 6) * (9 - 8)", _T), ("24", "8 + (8 * (1 * 2))", _T),
        ("24", "8 + 8 * 1 + 2", _F), ("24", r"\frac{8}{3 - \frac{8}{3}}", _T), ("24", "8/(3-8/3)", _T),
        ("24", "(8 / 3) * 3", _F), ("24", "23.9999", _F), ("24", "24.0000001", _F), ("24", "24.0", _T),
        ("24", "6 * 4.5", _F),
    ],
    "sorting": [
        ("[9, 4, 2, 1, 1]", "[9, 4, 2, 1, 1]", _T), ("[9, 4, 2, 1, 1]", "[1, 1, 2, 4, 9]", _F),
        ("[53, 48, 37]", "[53,48,37]", _T), ("[53, 48, 37]", "[53, 37, 48]", _F), ("(1, 2, 3)", "(1, 2, 3)", _T),
        ("(1, 2, 3)", "(3, 2, 1)", _F), ("1, 2, 3", "3, 2, 1", _T), ("1, 2, 3", "1, 2", _F),
        ("-34, 2, 13", "2, 13, -34", _T), ("-34, 2, 13", "-34, 2, 14", _F), ("[-1, -13]", "[-1, -13]", _T),
        ("[-1, -13]", "[-1, 13]", _F),
    ],
    "linear_equation": [
        ("-3", "x = -3", _T), ("-3", "x=-3", _T), ("-3", "x = 3", _F), ("7/3", r"\frac{7}{3}", _T),
        ("7/3", r"\dfrac{7}{3}", _T), ("7/3", "2.333333", _T), ("7/3", "2.33", _F), ("7/3", r"2\frac{1}{3}", _T),
        ("7/3", "14/6", _T), ("7/3", "3/7", _F), ("-5/2", "-2.5", _T), ("-5/2", r"-\frac{5}{2}", _T),
        ("-5/2", r"\frac{-5}{2}", _T), ("-5/2", r"\frac{5}{-2}", _T), ("-5/2", "5/2", _F), ("0", "x = 0", _T),
        ("0", "0.0", _T), ("0", "0.000001", _F), ("4/5", "0.8", _T), ("4/5", "0.80", _T), ("4/5", "8/10", _T),
        ("4/5", "0.8001", _F), ("x = 4", "4", _T), ("x = 4", "x = 5", _F), ("-1/3", "-0.333333", _T),
        ("-1/3", "-0.3333", _F),
    ],
    "modular_arithmetic": [
        ("4", "4", _T), ("4", "9", _F), ("16", "16 \\pmod{17}", _F), ("11", "11.0", _T), ("11", "011", _T),
        ("3", "-14", _F), ("0", "0", _T), ("0", "17", _F), ("5", "x = 5", _T), ("5", "x \\equiv 5", _T),
        ("5", "x \\equiv 6", _F),
    ],
    "sudoku4": [
        ("1432 2341 4123 3214", "1432 2341 4123 3214", _T), ("1432 2341 4123 3214", "1432 2341 4123 3241", _F),
        ("2143 4321 3412 1234", "2143 4321 3412 1234", _T), ("2143 4321 3412 1234", "2143 4321 3421 1234", _F),
    ],
    "knights_knaves": [
        ("A: knight, B: knave", "A: knight, B: knave", _T), ("A: knight, B: knave", "B: knave, A: knight", _T),
        ("A: knight, B: knave", "A: knave, B: knight", _F), ("A: knight, B: knave", "a: Knight, b: Knave", _T),
        ("A: knight, B: knight, C: knave", "A: knight, B: knight", _F), ("knight", "knight", _T),
        ("knight", "Knight", _T), ("knight", "knave", _F),
    ],
    "shortest_path": [
        ("4", "4", _T), ("4", "5", _F), ("9", "9.0", _T), ("9", "nine", _F), ("6", "6 steps", _T),
        ("6", r"6 \text{ steps}", _T), ("6", "7 steps", _F), ("12", "12", _T),
    ],
    "string_manipulation": [
        ("ycesz", "ycesz", _T), ("ycesz", "zsecy", _F), ("mkhdngpc", "mkhdngpc", _T), ("mkhdngpc", "mkhdnpgc", _F),
        ("hello world", "hello  world", _T), ("hello world", "world hello", _F),
    ],
    "unit_conversion": [
        ("330", r"330 \text{ cm}", _T), ("330", r"330\,\mathrm{cm}", _T), ("330", "3.3 \\times 10^{2}", _T),
        ("330", "3.3e2", _T), ("330", "331", _F), ("6.084", "6.084", _T), ("6.084", "6.0840", _T),
        ("6.084", "6.08", _F), ("6.084", r"6.084 \text{ J}", _T), ("1252", "1252", _T), ("1252", "1.252e3", _T),
        ("1252", "1.252 \\times 10^3", _T), ("1252", "1.25 \\times 10^3", _F), ("0.0025", "2.5e-3", _T),
        ("0.0025", "2.5 \\times 10^{-3}", _T), ("0.0025", "0.025", _F), ("0.0025", "2.5E-3", _T),
        ("1.5e-8", "1.5 \\times 10^{-8}", _T), ("1.5e-8", "2.5e-8", _F), ("3.6", "3.60", _T),
        ("3.6", "3.5999999", _T), ("3.6", "3.59", _F), ("1609.344", "1609.344", _T), ("1609.344", "1609.34", _F),
        ("0.44704", "0.447040", _T), ("101325", "101,325", _T), ("101325", "1.01325 \\times 10^{5}", _T),
        ("101325", "1.013 \\times 10^{5}", _F),
    ],
    "multiple_choice": [
        ("C", "C", _T), ("C", "(C)", _T), ("C", r"\text{C}", _T), ("C", r"\text{(C)}", _T), ("C", "c", _T),
        ("C", "D", _F), ("C", "(D)", _F), ("A", r"\mathrm{A}", _T), ("A", "B", _F), ("E", "E", _T),
        ("B, D", "D, B", _T), ("B, D", "B", _F),
    ],
    "hipho": [
        (r"t = \sqrt{\frac{2h}{g}}", r"\sqrt{\frac{2h}{g}}", _T), (r"t = \sqrt{\frac{2h}{g}}", r"\sqrt{2h/g}", _T),
        (r"t = \sqrt{\frac{2h}{g}}", r"\sqrt{\frac{h}{2g}}", _F), (r"t = \sqrt{\frac{2h}{g}}", r"\frac{2h}{g}", _F),
        (r"W = n R T \ln 2", r"nRT\ln 2", _T), (r"W = n R T \ln 2", r"nRT \ln(2)", _T),
        (r"W = n R T \ln 2", r"nRT\log 2", _F), (r"W = n R T \ln 2", r"2nRT", _F),
        (r"\frac{I_{0}a}{2r} \sin (\theta /2)", r"\frac{I_0 a}{2r}\sin(\theta/2)", _T),
        (r"\frac{I_{0}a}{2r} \sin (\theta /2)", r"\frac{I_0 a \sin(\theta/2)}{2r}", _T),
        (r"\frac{I_{0}a}{2r} \sin (\theta /2)", r"\frac{I_0 a}{2r}\sin\theta", _F),
        (r"T = 2\pi\sqrt{\frac{3a}{2g}}", r"2\pi\sqrt{1.5 a/g}", _T),
        (r"T = 2\pi\sqrt{\frac{3a}{2g}}", r"2\pi\sqrt{a/g}", _F),
        (r"d = r/\sqrt{10}", r"\frac{r\sqrt{10}}{10}", _T), (r"d = r/\sqrt{10}", r"\frac{r}{10}", _F),
        (r"v = \sqrt{2gh}", r"\sqrt{2 g h}", _T), (r"v = \sqrt{2gh}", r"(2gh)^{1/2}", _T),
        (r"v = \sqrt{2gh}", r"2gh", _F),
        (r"E = mc^2", r"mc^2", _T), (r"E = mc^2", r"m c^{2}", _T), (r"E = mc^2", r"mc", _F),
        (r"F = \frac{k q_1 q_2}{r^2}", r"k q_1 q_2 / r^2", _T),
        (r"F = \frac{k q_1 q_2}{r^2}", r"\frac{k q_1 q_2}{r}", _F),
        (r"\omega = \sqrt{\frac{k}{m}}", r"\sqrt{k/m}", _T), (r"\omega = \sqrt{\frac{k}{m}}", r"\sqrt{m/k}", _F),
        (r"\lambda = \frac{h}{p}", r"h/p", _T), (r"\lambda = \frac{h}{p}", r"p/h", _F),
        (r"P = \frac{V^2}{R}", r"V^2/R", _T), (r"P = \frac{V^2}{R}", r"I^2 R", _F),
        (r"a = g\sin\alpha", r"g \sin(\alpha)", _T), (r"a = g\sin\alpha", r"g \cos\alpha", _F),
        (r"\frac{mg}{k}", r"mg/k", _T), (r"\frac{mg}{k}", r"\frac{m g}{2k}", _F),
        (r"\frac{\mu_0 I}{2\pi r}", r"\frac{\mu_0 I}{2 \pi r}", _T),
        (r"\frac{\mu_0 I}{2\pi r}", r"\frac{\mu_0 I}{2 r}", _F),
        (r"\frac{1}{2} m v^2", r"0.5 m v^2", _T), (r"\frac{1}{2} m v^2", r"m v^2", _F),
        (r"2.02", r"2.02", _T), (r"2.02", r"2.020", _T), (r"2.02", r"2.03", _F), (r"24.2", r"24.2", _T),
        (r"24.2", r"24.20", _T), (r"24.2", r"24", _F), (r"3.0", r"3", _T), (r"3.0", r"3.1", _F),
        (r"9.0", r"9", _T), (r"9.0", r"8.9", _F), (r"2.0", r"2.0", _T), (r"2.0", r"-2.0", _F),
        (r"9.8", r"9.8\,\mathrm{m/s^2}", _T), (r"9.8", r"9.8 \text{ m/s}^2", _T),
        (r"1.6 \times 10^{-19}", r"1.6e-19", _T), (r"1.6 \times 10^{-19}", r"1.6 \times 10^{-18}", _F),
        (r"6.67 \times 10^{-11}", r"6.67\times10^{-11}", _T), (r"3 \times 10^{8}", r"3e8", _T),
        (r"3 \times 10^{8}", r"3 \times 10^{9}", _F), (r"x = v_0 t + \frac{1}{2} a t^2", r"v_0 t + a t^2/2", _T),
        (r"x = v_0 t + \frac{1}{2} a t^2", r"v_0 t + a t^2", _F),
        (r"\frac{q}{4\pi\varepsilon_0 r^2}", r"\frac{q}{4 \pi \epsilon_0 r^2}", _T),
        (r"\frac{q}{4\pi\varepsilon_0 r^2}", r"\frac{q}{4\pi\varepsilon_0 r}", _F),
        (r"\frac{3}{2} k_B T", r"1.5 k_B T", _T), (r"\frac{3}{2} k_B T", r"\frac{5}{2} k_B T", _F),
        (r"R = \frac{v^2 \sin 2\theta}{g}", r"\frac{2 v^2 \sin\theta \cos\theta}{g}", _T),
        (r"R = \frac{v^2 \sin 2\theta}{g}", r"\frac{v^2 \sin\theta}{g}", _F),
        (r"\Delta S = n R \ln\frac{V_2}{V_1}", r"nR\ln(V_2/V_1)", _T),
        (r"\Delta S = n R \ln\frac{V_2}{V_1}", r"nR\ln(V_1/V_2)", _F),
        (r"\eta = 1 - \frac{T_c}{T_h}", r"\frac{T_h - T_c}{T_h}", _T),
        (r"\eta = 1 - \frac{T_c}{T_h}", r"\frac{T_c}{T_h}", _F),
        (r"f = \frac{1}{2L}\sqrt{\frac{T}{\mu}}", r"\frac{\sqrt{T/\mu}}{2L}", _T),
        (r"f = \frac{1}{2L}\sqrt{\frac{T}{\mu}}", r"\frac{\sqrt{T/\mu}}{L}", _F),
        (r"\frac{m_1 m_2}{m_1 + m_2}", r"\frac{m_2 m_1}{m_2 + m_1}", _T),
        (r"\frac{m_1 m_2}{m_1 + m_2}", r"m_1 m_2", _F),
        (r"0.777", r"0.777", _T), (r"0.777", r"0.7770", _T), (r"0.777", r"0.778", _F),
        (r"1.2 \times 10^{3}", r"1200", _T), (r"1.2 \times 10^{3}", r"1.2E3", _T), (r"1.2 \times 10^{3}", r"120", _F),
    ],
    "math": [
        (r"\frac{1}{2}", "0.5", _T), (r"\frac{1}{2}", r"\frac{2}{4}", _T), (r"\frac{1}{2}", r"\frac12", _T),
        (r"\frac{1}{2}", r"\frac{1}{3}", _F), (r"\frac{1}{3}", "0.333333", _T), (r"\frac{1}{3}", "0.33", _F),
        (r"\frac{2}{3}", "0.666667", _T), (r"\frac{2}{3}", "0.6667", _F), (r"\sqrt{2}", r"\sqrt{2}", _T),
        (r"\sqrt{8}", r"2\sqrt{2}", _T), (r"\sqrt{8}", r"2\sqrt{3}", _F), (r"\sqrt{2}", "1.414214", _T),
        (r"\sqrt{2}", "1.41", _F), (r"\frac{\sqrt{3}}{2}", r"\frac{1}{2}\sqrt{3}", _T),
        (r"\frac{\sqrt{3}}{2}", r"\frac{\sqrt{2}}{2}", _F), (r"\frac{1}{\sqrt{2}}", r"\frac{\sqrt{2}}{2}", _T),
        (r"\pi", r"\pi", _T), (r"2\pi", r"\pi \cdot 2", _T), (r"\pi", "3.141593", _T), (r"\pi", "3.14", _F),
        (r"\frac{\pi}{2}", r"\frac{1}{2}\pi", _T), (r"\frac{\pi}{2}", r"\frac{\pi}{3}", _F), (r"e", r"e^{1}", _T),
        (r"e^2", r"\exp(2)", _T), (r"\ln(e^2)", "2", _T), (r"\ln(e^2)", "e", _F), (r"\ln 8", r"3\ln 2", _T),
        (r"\ln 8", r"2\ln 3", _F), (r"\log_2 8", "3", _T), (r"\log_2 8", "4", _F), (r"\log_{10} 1000", "3", _T),
        (r"\sin^2 x + \cos^2 x", "1", _T), (r"\sin^2 x + \cos^2 x", "2", _F), (r"\sin 2x", r"2\sin x \cos x", _T),
        (r"\sin 2x", r"2\sin x", _F), (r"\cos(\pi)", "-1", _T), (r"\sin(\pi/6)", r"\frac{1}{2}", _T),
        (r"\tan(\pi/4)", "1", _T), (r"\tan(\pi/4)", "0", _F), (r"10\%", "0.1", _T), (r"10\%", "10", _T),
        (r"50\%", r"\frac{1}{2}", _T), (r"50\%", "0.05", _F), (r"25\%", "0.25", _T), (r"25\%", r"35\%", _F),
        ("x^2 + 2x + 1", "(x+1)^2", _T), ("x^2 + 2x + 1", "(x-1)^2", _F), ("x^2-1", "(x-1)(x+1)", _T),
        ("x^2-1", "(x-1)^2", _F), ("2x+3", "3+2x", _T), ("2x+3", "2x-3", _F), ("a+b", "b+a", _T),
        ("a+b", "a-b", _F), (r"\frac{x}{2}", "0.5x", _T), (r"\frac{x}{2}", "2x", _F), ("x^3", "x \\cdot x^2", _T),
        ("x = 2", "2", _T), ("x = 2", "x=3", _F), ("y = 2x + 1", "2x+1", _T), ("y = 2x+1", "y - 1 = 2x", _T),
        ("y = 2x+1", "y = 2x - 1", _F), (r"x \in \{1, 2\}", r"\{1, 2\}", _T),
        (r"\{1, 2, 3\}", r"\{3, 2, 1\}", _T), (r"\{1, 2, 3\}", r"\{1, 2\}", _F), ("1, 2", "2, 1", _T),
        ("-2, 3", "3, -2", _T), ("-2, 3", "2, -3", _F), ("x = -2, 3", "-2, 3", _T),
        ("(1, 2)", "(1, 2)", _T), ("(1, 2)", "(2, 1)", _F), ("(2, 5)", "(2,5)", _T), ("[1, 2]", "[1, 2)", _F),
        ("[1, 2]", r"\left[1, 2\right]", _T), (r"(-\infty, 3]", r"(-\infty, 3]", _T),
        (r"(-\infty, 3]", r"(-\infty, 3)", _F),
        (r"(3, \infty)", r"x > 3", _T), (r"(3, \infty)", r"x \geq 3", _F), (r"[0, 1]", r"[0,1]", _T),
        (r"(0, 1) \cup (2, 3)", r"(0,1)\cup(2,3)", _T), (r"(0, 1) \cup (2, 3)", r"(0,3)", _F),
        ("x > 3", "3 < x", _T), ("x > 3", "x < 3", _F), (r"x \le 5", r"x \leq 5", _T),
        (r"90^\circ", "90", _T), (r"90^\circ", "80", _F), (r"45^{\circ}", "45", _T),
        ("1+2i", "2i+1", _T), ("1+2i", "1-2i", _F), ("i^2", "-1", _T), (r"\sqrt{-4}", "2i", _T),
        (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix}1\\2\end{pmatrix}", _T),
        (r"\begin{pmatrix} 1 \\ 2 \end{pmatrix}", r"\begin{pmatrix} 2 \\ 1 \end{pmatrix}", _F),
        (r"\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}", r"\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}", _T),
        (r"\begin{pmatrix} 1 & 0 \\ 0 & 1 \end{pmatrix}", r"\begin{pmatrix} 0 & 1 \\ 1 & 0 \end{pmatrix}", _F),
        (r"\binom{5}{2}", "10", _T), (r"\binom{5}{2}", "20", _F), ("5!", "120", _T), (r"\dfrac{5!}{3!}", "20", _T),
        (r"2^{10}", "1024", _T), (r"2^{10}", "1000", _F), (r"\$5", "5", _T), (r"\$5.50", "5.5", _T),
        (r"\$5.50", "5.05", _F), (r"\frac{3}{4}", r"\frac{6}{8}", _T), (r"-\frac{3}{4}", "-0.75", _T),
        (r"-\frac{3}{4}", "0.75", _F), (r"\text{(A)}", "A", _T), ("1e-8", "2e-8", _F), ("1e-8", "1.0e-8", _T),
        ("0.0000001", "0", _F), (r"|{-3}|", "3", _T), (r"\left| -3 \right|", "3", _T),
        (r"\lfloor 2.7 \rfloor", "2", _T),
        (r"\lceil 2.1 \rceil", "3", _T), (r"\lceil 2.1 \rceil", "2", _F), (r"\frac{a}{b}", r"a/b", _T),
        (r"\frac{a}{b}", r"b/a", _F), (r"\sqrt[3]{27}", "3", _T), (r"\sqrt[3]{8}", "3", _F), (r"27^{1/3}", "3", _T),
        (r"\frac{7}{2}", "3.5", _T), (r"\frac{7}{2}", r"3\frac{1}{2}", _T), (r"\frac{7}{2}", "3.4", _F),
        (r"\sqrt{12}", r"2\sqrt{3}", _T), (r"\sqrt{12}", r"3\sqrt{2}", _F),
        (r"\frac{\sqrt{6}}{3}", r"\sqrt{\frac{2}{3}}", _T),
        (r"\frac{\sqrt{6}}{3}", r"\sqrt{\frac{3}{2}}", _F), (r"3\sqrt{5}", r"\sqrt{45}", _T),
        (r"3\sqrt{5}", r"\sqrt{15}", _F),
        (r"\frac{1+\sqrt{5}}{2}", r"\frac{\sqrt{5}+1}{2}", _T), (r"\frac{1+\sqrt{5}}{2}", r"\frac{1-\sqrt{5}}{2}", _F),
        ("-1", r"-1", _T), ("1", "-1", _F), (r"\frac{4}{3}\pi r^3", r"\frac{4\pi r^3}{3}", _T),
        (r"\frac{4}{3}\pi r^3", r"4\pi r^2", _F), (r"(x-2)(x+3)", r"x^2 + x - 6", _T),
        (r"(x-2)(x+3)", r"x^2 - x - 6", _F),
        (r"\frac{x^2-1}{x-1}", r"x+1", _T), (r"\frac{1}{x} + \frac{1}{y}", r"\frac{x+y}{xy}", _T),
        (r"\frac{1}{x} + \frac{1}{y}", r"\frac{2}{x+y}", _F), (r"2^{x+1}", r"2 \cdot 2^x", _T),
        (r"2^{x+1}", r"2^x + 1", _F),
        (r"e^{i\pi}", "-1", _T), (r"\cos^2\theta - \sin^2\theta", r"\cos 2\theta", _T),
        (r"\cos^2\theta - \sin^2\theta", r"\sin 2\theta", _F), ("1000", "1{,}000", _T), ("1000", "1,000", _T),
        ("1000", "100", _F), (r"\frac{5}{12}", r"\frac{10}{24}", _T), (r"\frac{5}{12}", "0.416667", _T),
        (r"\frac{5}{12}", "0.42", _F), ("3:4", "3:4", _T), (r"\text{odd}", r"\text{odd}", _T),
        (r"\infty", r"\infty", _T), (r"\infty", r"-\infty", _F), (r"\emptyset", r"\varnothing", _T),
    ],
}

PAIRS: list[Pair] = [Pair(ref, pred, same, family) for family, rows in _BY_FAMILY.items() for ref, pred, same in rows]
