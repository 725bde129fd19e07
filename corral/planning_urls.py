"""The pages to plan and steer work: beads (page, form, list) and plans."""

from django.urls import path

from corral import bead_forms, bead_list, bead_pages, plan_pages

urlpatterns = [
    path("beads/", bead_list.bead_list, name="bead-list"),
    path("beads/bulk", bead_list.bulk_action, name="bead-bulk"),
    path("beads/new", bead_forms.file_bead, name="bead-new"),
    path("beads/scope-check", bead_forms.check_scope, name="bead-scope-check"),
    path("beads/<str:bead_id>/", bead_pages.bead_page, name="bead"),
    path("beads/<str:bead_id>/edit", bead_forms.edit_bead, name="bead-edit"),
    path("beads/<str:bead_id>/comment", bead_pages.add_comment, name="bead-comment"),
    path("plans/", plan_pages.plan_index, name="plans"),
    path("plans/new", plan_pages.plan_start, name="plan-start"),
    path("plans/<int:pk>/", plan_pages.plan_page, name="plan"),
    path("plans/<int:pk>/edit/<slug:op>", plan_pages.plan_edit, name="plan-edit"),
    path("plans/<int:pk>/prepare", plan_pages.plan_prepare, name="plan-prepare"),
    path("plans/<int:pk>/activate", plan_pages.plan_activate, name="plan-activate"),
    path(
        "plans/<int:pk>/waves/<int:number>/changeset",
        plan_pages.plan_wave_changeset,
        name="plan-wave-changeset",
    ),
]
