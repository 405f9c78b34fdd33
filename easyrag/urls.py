"""URL routes of the project."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from easyrag.task_app.views import MetricsView

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("easyrag.task_app.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("dashboard/", include("easyrag.dashboard.urls")),
    path("metrics", MetricsView.as_view(), name="metrics"),
]
