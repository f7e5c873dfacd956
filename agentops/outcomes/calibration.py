"""How far a grader can be trusted: agreement between its verdicts and scores and those of
the humans who reviewed the same outputs, per rubric version.

Only graded evaluations (verdict satisfied, max_iterations_reached or failed) with at least
one human review count, and each counts once, with its latest review. The grader's side is
the final iteration's verdict and criterion scores; the human's side is the review's
verdict and, per criterion, the override where there is one, else the grader's score.
"""

from collections import Counter
from dataclasses import dataclass, field

from django.db.models import F

from .models import (
    GRADE_VERDICTS,
    CriterionScore,
    Evaluation,
    HumanCriterionScore,
    HumanReview,
    Verdict,
)

MIN_REVIEWS = 20


def cohens_kappa(rater_a, rater_b):
    """Cohen's kappa of two raters' labels for the same items:
    (p_o - p_e) / (1 - p_e), with p_o the observed agreement and p_e the agreement expected
    by chance from each rater's label frequencies. When both raters used one and the same
    label throughout, p_e is 1 and the formula is undefined; that is complete agreement and
    we report 1.0. None for no items."""
    rater_a, rater_b = list(rater_a), list(rater_b)
    if len(rater_a) != len(rater_b):
        raise ValueError("Both raters must rate the same items.")
    n = len(rater_a)
    if n == 0:
        return None
    observed = sum(a == b for a, b in zip(rater_a, rater_b, strict=True)) / n
    count_a, count_b = Counter(rater_a), Counter(rater_b)
    expected = sum(count_a[label] * count_b[label] for label in count_a) / (n * n)
    if expected == 1:
        return 1.0
    return (observed - expected) / (1 - expected)


def confusion_matrix(rater_a, rater_b, labels):
    """Counts with rater A's label as the row and rater B's as the column."""
    index = {label: i for i, label in enumerate(labels)}
    matrix = [[0] * len(labels) for _ in labels]
    for a, b in zip(rater_a, rater_b, strict=True):
        matrix[index[a]][index[b]] += 1
    return matrix


@dataclass
class CriterionAgreement:
    criterion: object
    compared: int
    mean_abs_diff: float | None


@dataclass
class Calibration:
    version: object
    reviewed: int
    verdict_agreement: float | None = None
    kappa: float | None = None
    labels: list = field(default_factory=list)
    matrix: list = field(default_factory=list)
    criteria: list = field(default_factory=list)

    @property
    def ready(self):
        return self.reviewed >= MIN_REVIEWS

    @property
    def needed(self):
        return max(0, MIN_REVIEWS - self.reviewed)

    @property
    def trusted(self):
        """No minimum kappa is asked, or enough reviews show a kappa at or above it."""
        if self.version.min_kappa is None:
            return True
        return self.ready and self.kappa is not None and self.kappa >= float(self.version.min_kappa)

    @property
    def agreement_percent(self):
        if self.verdict_agreement is None:
            return "–"
        return f"{self.verdict_agreement * 100:.1f}%"

    @property
    def rows(self):
        """The confusion matrix for a template: (grader label, [(human label, count)])."""
        return [
            (label, list(zip(self.labels, counts, strict=True)))
            for label, counts in zip(self.labels, self.matrix, strict=True)
        ]


def _latest_reviews(evaluation_ids):
    latest = {}
    reviews = HumanReview.objects.filter(evaluation_id__in=evaluation_ids).order_by(
        "evaluation_id", "-created_at", "-id"
    )
    for review_id, evaluation_id in reviews.values_list("id", "evaluation_id"):
        latest.setdefault(evaluation_id, review_id)
    return latest


def calibration_for(rubric_version):
    """Agreement figures of one rubric version. They are computed for any number of
    reviews; `ready` says whether there are enough (MIN_REVIEWS) to show and trust them."""
    evaluations = list(
        Evaluation.objects.filter(
            rubric_version=rubric_version, review_count__gt=0, verdict__in=GRADE_VERDICTS
        ).values_list("id", "verdict", "human_verdict")
    )
    result = Calibration(version=rubric_version, reviewed=len(evaluations))
    result.labels = [Verdict(v) for v in GRADE_VERDICTS]
    if not evaluations:
        result.matrix = confusion_matrix([], [], result.labels)
        result.criteria = [CriterionAgreement(c, 0, None) for c in rubric_version.criteria.all()]
        return result

    ids = [evaluation_id for evaluation_id, _, _ in evaluations]
    grader_verdicts = [verdict for _, verdict, _ in evaluations]
    human_verdicts = [human for _, _, human in evaluations]
    agreeing = sum(g == h for g, h in zip(grader_verdicts, human_verdicts, strict=True))
    result.verdict_agreement = agreeing / len(evaluations)
    result.kappa = cohens_kappa(grader_verdicts, human_verdicts)
    result.matrix = confusion_matrix(grader_verdicts, human_verdicts, result.labels)

    grader_scores = {}
    for evaluation_id, criterion_id, score in CriterionScore.objects.filter(
        iteration__evaluation_id__in=ids,
        iteration__number=F("iteration__evaluation__iterations_count"),
    ).values_list("iteration__evaluation_id", "criterion_id", "score"):
        grader_scores[(evaluation_id, criterion_id)] = score
    latest = _latest_reviews(ids)
    review_to_evaluation = {review: evaluation for evaluation, review in latest.items()}
    human_overrides = {}
    for review_id, criterion_id, score in HumanCriterionScore.objects.filter(
        review_id__in=list(latest.values())
    ).values_list("review_id", "criterion_id", "score"):
        human_overrides[(review_to_evaluation[review_id], criterion_id)] = score

    for criterion in rubric_version.criteria.all():
        differences = [
            abs(human_overrides.get((evaluation_id, criterion.pk), score) - score)
            for (evaluation_id, criterion_id), score in grader_scores.items()
            if criterion_id == criterion.pk
        ]
        result.criteria.append(
            CriterionAgreement(
                criterion,
                len(differences),
                sum(differences) / len(differences) if differences else None,
            )
        )
    return result


def grader_trusted(rubric_version):
    """Whether the version's verdicts count without a human (see Calibration.trusted)."""
    if rubric_version.min_kappa is None:
        return True
    return calibration_for(rubric_version).trusted
