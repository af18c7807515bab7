"""Manage pages under /manage/legacy/ (the only Manage paths that may say "circuit")."""

from django.urls import path

from legacy_circuit import views

urlpatterns = [
    path("", views.legacy_index, name="legacy-index"),
    path("circuits/", views.circuit_list_page, name="legacy-circuits"),
    path("alias-usage/", views.alias_usage_page, name="legacy-alias-usage"),
]
