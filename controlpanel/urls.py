from django.urls import include, path

from hosting.views.servers import home

urlpatterns = [
    path("", home, name="home"),
    path("", include("accounts.urls")),
    path("", include("hosting.urls")),
]
