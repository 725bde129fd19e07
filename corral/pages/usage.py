"""The usage page: tokens per day per repository and per agent (SVG charts),
each agent's tokens and cost, cost per landed bead, first-try landing rate."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from agents.models.usage import PriceTable
from agents.reports import usage
from corral.pages import charts

DAYS = 14


@login_required
def usage_page(request: HttpRequest) -> HttpResponse:
    days = usage.last_days(DAYS)
    prices = PriceTable()  # read once for the agents and the landed beads
    seen = usage.overview(DAYS, prices)
    ctx = {
        "days": DAYS,
        "by_repository": charts.stacked_bars(days, seen.by_repository),
        "by_agent": charts.stacked_bars(days, seen.by_agent),
        "agents": seen.agents,
        "landed": usage.landed_beads(prices=prices),
        "first_try": usage.first_try(),
    }
    return render(request, "corral/usage.html", ctx)
