"""Evaluations with their reviews, as CSV (one row per evaluation, its latest review) and
JSON Lines (one object per evaluation, every iteration and every review). Both stream."""

import csv
import json

from django.db.models import Prefetch

from agentops.outcomes.models import CriterionScore, HumanReview, Iteration

CSV_COLUMNS = [
    "evaluation_id",
    "created_at",
    "finished_at",
    "rubric",
    "rubric_version",
    "agent",
    "agent_version",
    "status",
    "grader_verdict",
    "weighted_score",
    "iterations",
    "grader_scores",
    "assigned_to",
    "reviews",
    "reviewer",
    "reviewed_at",
    "human_verdict",
    "agreed",
    "human_scores",
    "review_note",
    "effective_verdict",
    "task",
    "final_output",
]

# A spreadsheet runs a cell that starts with one of these as a formula. The CSV neutralises
# them with a leading apostrophe; the JSON Lines export keeps every text exactly.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def export_queryset(queryset):
    return queryset.select_related(
        "rubric_version__rubric", "agent", "agent_version", "assigned_to"
    ).prefetch_related(
        Prefetch(
            "iterations",
            queryset=Iteration.objects.order_by("number").prefetch_related(
                Prefetch("scores", queryset=CriterionScore.objects.select_related("criterion"))
            ),
        ),
        Prefetch(
            "reviews",
            queryset=HumanReview.objects.select_related("reviewer").prefetch_related(
                "overrides__criterion"
            ),
        ),
    )


def _iso(value):
    return value.isoformat() if value else None


def _record(evaluation):
    iterations = list(evaluation.iterations.all())
    final = iterations[-1] if iterations else None
    grader_scores = {s.criterion.key: s.score for s in final.scores.all()} if final else {}
    reviews = []
    for review in evaluation.reviews.all():  # newest first
        overrides = {o.criterion.key: o.score for o in review.overrides.all()}
        reviews.append(
            {
                "reviewer": review.reviewer.get_username() if review.reviewer else None,
                "created_at": _iso(review.created_at),
                "agreed": review.agreed,
                "grader_verdict": review.grader_verdict,
                "verdict": review.verdict,
                "overrides": overrides,
                "scores": {key: overrides.get(key, score) for key, score in grader_scores.items()},
                "note": review.note,
            }
        )
    version = evaluation.rubric_version
    return {
        "evaluation_id": evaluation.pk,
        "created_at": _iso(evaluation.created_at),
        "finished_at": _iso(evaluation.finished_at),
        "rubric": version.rubric.name,
        "rubric_version": version.number,
        "agent": evaluation.agent.name if evaluation.agent else None,
        "agent_version": evaluation.agent_version.number if evaluation.agent_version else None,
        "status": evaluation.status,
        "grader_verdict": evaluation.verdict,
        "weighted_score": str(evaluation.weighted_score)
        if evaluation.weighted_score is not None
        else None,
        "iterations": evaluation.iterations_count,
        "grader_scores": grader_scores,
        "assigned_to": evaluation.assigned_to.get_username() if evaluation.assigned_to else None,
        "effective_verdict": evaluation.effective_verdict,
        "task": evaluation.task,
        "final_output": final.output if final else "",
        "error": evaluation.error,
        "reviews": reviews,
        "iteration_log": [
            {
                "number": it.number,
                "verdict": it.verdict,
                "weighted_score": str(it.weighted_score) if it.weighted_score is not None else None,
                "applies": it.applies,
                "feedback": it.feedback,
                "grader_error": it.grader_error,
                "grader_attempts": it.grader_attempts,
                "scores": {
                    s.criterion.key: {"score": s.score, "rationale": s.rationale}
                    for s in it.scores.all()
                },
                "output": it.output,
                "usage": {
                    "worker": {
                        "input_tokens": it.worker_input_tokens,
                        "output_tokens": it.worker_output_tokens,
                        "cost_usd": str(it.worker_cost_usd),
                    },
                    "grader": {
                        "input_tokens": it.grader_input_tokens,
                        "output_tokens": it.grader_output_tokens,
                        "cost_usd": str(it.grader_cost_usd),
                    },
                },
            }
            for it in iterations
        ],
    }


def jsonl_lines(queryset):
    for evaluation in export_queryset(queryset).iterator(chunk_size=200):
        yield json.dumps(_record(evaluation), ensure_ascii=False) + "\n"


class _Echo:
    def write(self, value):
        return value


def _cell(value):
    if value is None:
        return ""
    if isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_lines(queryset):
    writer = csv.writer(_Echo())
    yield writer.writerow(CSV_COLUMNS)
    for evaluation in export_queryset(queryset).iterator(chunk_size=200):
        record = _record(evaluation)
        latest = record["reviews"][0] if record["reviews"] else {}
        row = {
            **record,
            "reviews": len(record["reviews"]),
            "reviewer": latest.get("reviewer"),
            "reviewed_at": latest.get("created_at"),
            "human_verdict": latest.get("verdict"),
            "agreed": latest.get("agreed"),
            "human_scores": latest.get("scores"),
            "review_note": latest.get("note"),
        }
        yield writer.writerow([_cell(row[column]) for column in CSV_COLUMNS])
