from django.urls import include, path

from hosting import views as hosting_views

urlpatterns = [
    path("", hosting_views.home, name="home"),
    path("", include("accounts.urls")),
    path("", include("hosting.urls")),
]
