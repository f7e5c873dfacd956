from datetime import timedelta

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from agentops.pagination import paginate
from agentops.teams.access import get_for_team, require_admin, require_viewer, team_queryset

from . import services
from .client import credential_for_team
from .crypto import UndecryptableKey
from .forms import ApiKeyForm, RateLimitForm, UsageFilterForm
from .models import ModelCallRecord, RateLimit, TeamCredential

DEFAULT_USAGE_DAYS = 30


def _credential_context(request):
    try:
        credential = credential_for_team(request.team)
        broken = False
    except UndecryptableKey:
        credential, broken = services.Credential(services.Source.TEAM), True
    return {
        "stored": TeamCredential.objects.filter(team=request.team).first(),
        "source": credential.source,
        "simulated": credential.simulated,
        "key_broken": broken,
        "defaults": services.default_limits(credential),
    }


def _settings_page(request, *, key_form=None, limit_form=None, status=200):
    context = {
        **_credential_context(request),
        "key_form": key_form or ApiKeyForm(),
        "limit_form": limit_form or RateLimitForm(team=request.team),
        "limits": team_queryset(request, RateLimit),
    }
    return render(request, "llm/settings.html", context, status=status)


@require_viewer
def model_settings(request):
    return _settings_page(request)


@require_admin
@require_POST
def key_save(request):
    form = ApiKeyForm(request.POST)
    if not form.is_valid():
        return _settings_page(request, key_form=form, status=400)
    row = services.api_key_save(
        team=request.team, actor=request.user, api_key=form.cleaned_data["api_key"]
    )
    messages.success(request, f"API key ending in {row.key_last4} saved. Test it below.")
    return redirect("llm:settings")


@require_admin
@require_POST
def key_remove(request):
    services.api_key_remove(team=request.team, actor=request.user)
    messages.success(request, "The team's API key was removed.")
    return redirect("llm:settings")


@require_admin
@require_POST
def key_test(request):
    services.api_key_test_start(team=request.team, actor=request.user)
    if request.htmx:
        return render(request, "llm/settings.html#key-status", _credential_context(request))
    messages.info(request, "Testing the key; the result appears below in a few seconds.")
    return redirect("llm:settings")


@require_viewer
def key_status(request):
    return render(request, "llm/settings.html#key-status", _credential_context(request))


@require_admin
@require_POST
def limit_add(request):
    form = RateLimitForm(request.POST, team=request.team)
    if not form.is_valid():
        return _settings_page(request, limit_form=form, status=400)
    services.rate_limit_save(
        team=request.team,
        actor=request.user,
        model=form.cleaned_data["model"] or "",
        rpm=form.cleaned_data["rpm"],
        itpm=form.cleaned_data["itpm"],
        otpm=form.cleaned_data["otpm"],
    )
    messages.success(request, "Rate limit saved.")
    return redirect("llm:settings")


@require_admin
def limit_edit(request, pk):
    rate_limit = get_for_team(request, RateLimit, pk=pk)
    if request.method != "POST":
        form = RateLimitForm(instance=rate_limit, team=request.team)
        return render(request, "llm/limit_edit.html", {"form": form, "rate_limit": rate_limit})
    # The form gets its own copy: a failed save must not change what the page shows.
    form = RateLimitForm(
        request.POST, instance=get_for_team(request, RateLimit, pk=pk), team=request.team
    )
    if form.is_valid():
        try:
            services.rate_limit_save(
                team=request.team,
                actor=request.user,
                rate_limit=rate_limit,
                model=form.cleaned_data["model"] or "",
                rpm=form.cleaned_data["rpm"],
                itpm=form.cleaned_data["itpm"],
                otpm=form.cleaned_data["otpm"],
            )
        except ValidationError as error:
            form.add_error(None, error)
        else:
            messages.success(request, "Rate limit saved.")
            return redirect("llm:settings")
    return render(
        request, "llm/limit_edit.html", {"form": form, "rate_limit": rate_limit}, status=400
    )


@require_admin
@require_POST
def limit_delete(request, pk):
    rate_limit = get_for_team(request, RateLimit, pk=pk)
    services.rate_limit_delete(rate_limit=rate_limit, actor=request.user)
    messages.success(request, "Rate limit removed; the default applies again.")
    return redirect("llm:settings")


@require_viewer
def usage(request):
    form = UsageFilterForm(request.GET or None, team=request.team)
    today = timezone.localdate()
    since, until = today - timedelta(days=DEFAULT_USAGE_DAYS - 1), today
    calls = team_queryset(request, ModelCallRecord)
    if form.is_valid():
        since = form.cleaned_data["since"] or since
        until = form.cleaned_data["until"] or until
        if form.cleaned_data["model"]:
            calls = calls.filter(model=form.cleaned_data["model"])
        if form.cleaned_data["agent"]:
            calls = calls.filter(agent_id=form.cleaned_data["agent"])
    calls = calls.filter(created_at__date__gte=since, created_at__date__lte=until)
    summary = services.usage_summary(calls=calls)
    series = services.daily_series(summary["by_day"], since=since, until=until)
    page = paginate(request, calls.select_related("agent"))
    models_seen = [row["model"] for row in summary["by_model"]]
    limited = list(
        team_queryset(request, RateLimit).exclude(model="").values_list("model", flat=True)
    )
    state_models = list(dict.fromkeys(models_seen + limited))[:12]
    context = {
        "form": form,
        "since": since,
        "until": until,
        "summary": summary,
        "chart": _chart(series),
        "page": page,
        "ratelimits": services.rate_limit_state(team=request.team, models=state_models),
        "limiter_shared": bool(settings.REDIS_URL),
        **_credential_context(request),
    }
    template = "llm/usage.html#calls" if request.htmx else "llm/usage.html"
    return render(request, template, context)


CHART_WIDTH, CHART_HEIGHT = 720, 160


def _chart(series):
    """Bar geometry for the cost-per-day chart, drawn as SVG in the template."""
    if not series:
        return None
    top = max((float(day["cost"]) for day in series), default=0.0)
    slot = CHART_WIDTH / len(series)
    bars = []
    for index, day in enumerate(series):
        height = (float(day["cost"]) / top * (CHART_HEIGHT - 20)) if top else 0
        bars.append(
            {
                "x": round(index * slot + slot * 0.1, 2),
                "y": round(CHART_HEIGHT - height, 2),
                "width": round(max(slot * 0.8, 1), 2),
                "height": round(height, 2),
                **day,
            }
        )
    return {
        "width": CHART_WIDTH,
        "height": CHART_HEIGHT,
        "bars": bars,
        "top": top,
        "has_data": top > 0 or any(day["calls"] for day in series),
    }
