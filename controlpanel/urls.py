from django.urls import include, path

from hosting.views.servers import home

urlpatterns = [
    path("", home, name="home"),
    path("", include("accounts.urls")),
    path("", include("hosting.urls")),
    path("", include("api.urls")),
]

# The panel's own pages for errors (controlpanel.error_pages).
handler400 = "controlpanel.error_pages.bad_request"
handler403 = "controlpanel.error_pages.permission_denied"
handler404 = "controlpanel.error_pages.page_not_found"
handler500 = "controlpanel.error_pages.server_error"
