"""The usage page: tokens per day per repository and per agent (SVG charts),
each agent's tokens and cost, cost per landed bead, first-try landing rate."""

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from agents import usage_report
from agents.usage import PriceTable
from corral import charts

DAYS = 14


@login_required
def usage_page(request: HttpRequest) -> HttpResponse:
    days = usage_report.last_days(DAYS)
    prices = PriceTable()  # read once for the agents and the landed beads
    usage = usage_report.overview(DAYS, prices)
    ctx = {
        "days": DAYS,
        "by_repository": charts.stacked_bars(days, usage.by_repository),
        "by_agent": charts.stacked_bars(days, usage.by_agent),
        "agents": usage.agents,
        "landed": usage_report.landed_beads(prices=prices),
        "first_try": usage_report.first_try(),
    }
    return render(request, "corral/usage.html", ctx)
