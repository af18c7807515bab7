"""Project-wide views: health, and 404/500 pages that answer JSON on the API."""

from django.db import connection
from django.http import JsonResponse
from django.shortcuts import render

from microgrid.common.api import api_404, api_500

JSON_PREFIXES = ("/api/", "/oscp/")


def healthz(request):
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def handler404(request, exception=None):
    if request.path.startswith(JSON_PREFIXES):
        return api_404(request)
    return render(request, "404.html", {"path": request.path}, status=404)


def handler500(request):
    if request.path.startswith(JSON_PREFIXES):
        return api_500(request)
    return render(request, "500.html", status=500)
